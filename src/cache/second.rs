//! The cache's side of its shared level: the lookup after a local miss
//! (a value is served only when this instance's own binlog reader proves it
//! fresh, with the rules of local entries, and is then kept in memory too),
//! and the offer of each stored entry to the shared level. The Redis side
//! (connection, timeout, breaker, bounded writes) is [`super::shared`], the
//! format [`super::wire`].

use causeway_gtid::GtidSet;
use std::sync::Arc;
use std::time::Duration;

use super::{unix_ms, wire, Bound, Cache, Count, Entry, Key, Ticket};

impl Cache {
    /// After a [`Lookup::Miss`] with `ticket`: the shared level's entry
    /// for `key`, when this instance's reader proves it fresh (no table
    /// of `tables` written since the ticket, and every last write this
    /// reader knows of for them within what the entry is valid as of).
    /// A served entry is also kept in memory. Counts the hit or the miss.
    pub async fn lookup_shared(
        &self,
        key: &Key,
        rule: &Arc<str>,
        tables: &[String],
        ticket: &Ticket,
        ttl: Duration,
    ) -> Option<Arc<Entry>> {
        let store = self.shared.as_ref()?;
        let stats = self.rule_stats(rule);
        let got = match store.get(&wire::redis_key(key)).await {
            Some(raw) => self.admit_shared(&raw, key, rule, tables, ticket, ttl),
            None => None,
        };
        match &got {
            Some(_) => {
                store.served();
                stats.count(rule, Count::SharedHit);
            }
            None => stats.count(rule, Count::Miss),
        }
        got
    }

    /// Decodes and checks a shared value; stores it in memory if it
    /// passes.
    fn admit_shared(
        &self,
        raw: &[u8],
        key: &Key,
        rule: &Arc<str>,
        tables: &[String],
        ticket: &Ticket,
        ttl: Duration,
    ) -> Option<Arc<Entry>> {
        let store = self.shared.as_ref()?;
        let refuse = || {
            store.refused();
            None
        };
        let Ok(e) = wire::decode(raw) else {
            return refuse();
        };
        let now = unix_ms();
        let same_tables =
            e.tables.len() == tables.len() && tables.iter().all(|t| e.tables.contains(t));
        if e.key != key.bytes()
            || e.bytes.len() > self.max_entry_bytes
            || !same_tables
            || e.expires_at_ms <= now
        {
            return refuse();
        }
        let left = Duration::from_millis(e.expires_at_ms - now).min(ttl);
        let Ok(fresh) = self.fresh.read() else {
            return refuse();
        };
        if !fresh.may_insert(ticket, &e.valid_as_of) {
            return refuse();
        }
        let entry = Arc::new(Entry {
            bytes: e.bytes,
            rule: Arc::clone(rule),
            ticket: ticket.clone(),
            ttl: left,
            bound: Bound::Known(Arc::new(e.bound)),
        });
        self.store_entry(key.clone(), Arc::clone(&entry));
        drop(fresh);
        Some(entry)
    }

    /// Offers a stored entry to the shared level, off the client's path
    /// (encoded and written in a spawned task). Only entries whose upper
    /// bound is known are shared (a hit elsewhere must raise that
    /// session's monotonic floor).
    pub(super) fn share(&self, key: Key, entry: Arc<Entry>, executed: &GtidSet) {
        let (Some(store), Bound::Known(bound)) = (&self.shared, &entry.bound) else {
            return;
        };
        let bound = Arc::clone(bound);
        let valid_as_of = executed.clone();
        let ttl = entry.ttl;
        let rkey = wire::redis_key(&key);
        store.put(rkey, ttl, move || {
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            wire::encode(&wire::SharedEntry {
                expires_at_ms: unix_ms().saturating_add(ttl_ms),
                key: key.bytes().to_vec(),
                valid_as_of,
                bound: (*bound).clone(),
                tables: entry.ticket.tables.iter().map(|(t, _)| t.clone()).collect(),
                bytes: entry.bytes.clone(),
            })
        });
    }
}
