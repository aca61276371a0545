//! The cache tier: result packets served without a backend, never older
//! than the client's token.
//!
//! Owns the store (a `moka` cache weighed in bytes of result packets, with
//! TinyLFU admission, LRU eviction and a per-entry TTL from the rule), the
//! index of entries by table (invalidated entries are freed eagerly, when
//! the write is reported, not on their next lookup), the freshness state
//! ([`fresh::Fresh`], behind one `RwLock`), the binlog reader's status (the
//! reader itself is `crate::binlog`), the optional shared level ([`shared`],
//! Redis; its values are checked against this instance's freshness state
//! like local entries), per-rule counters and the metrics. The session side
//! (key building, lookup before routing, capture after a miss, invalidation
//! after writes) is `crate::frontend::cached`.

pub mod admin;
pub mod fresh;
mod index;
pub mod key;
mod second;
pub mod shared;
pub mod wire;

use causeway_gtid::GtidSet;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

pub use fresh::{Fresh, Ticket};
use index::{unindex, Index};
pub use key::Key;

/// Counter: cache requests by `rule` and `result` (hit, miss, bypass).
pub const REQUESTS: &str = crate::metrics::CACHE_REQUESTS;
/// Counter: cache hits by `rule` and `level` (local, shared).
pub const HITS: &str = crate::metrics::CACHE_HITS;
/// Gauge: bytes of result packets held.
pub const BYTES: &str = crate::metrics::CACHE_BYTES;
/// Counter: invalidations by `reason` (binlog_rows, binlog_ddl, write,
/// write_unknown, restart).
pub const INVALIDATIONS: &str = crate::metrics::CACHE_INVALIDATIONS;
/// Gauge: seconds since the binlog reader last had everything the monitor
/// saw executed on the primary (0 when caught up; absent in ttl mode).
pub const READER_LAG_SECONDS: &str = crate::metrics::CACHE_READER_LAG_SECONDS;

/// The reply of a miss, offered to [`Cache::insert`].
pub struct Offer {
    /// The statement's cache key.
    pub key: Key,
    /// The rule that made it cacheable.
    pub rule: Arc<str>,
    /// The ticket its lookup returned.
    pub ticket: Ticket,
    /// What the monitor knew the serving backend had executed when the read
    /// ended.
    pub bound: Bound,
    /// The reply packets exactly as relayed.
    pub bytes: Vec<u8>,
    /// How long it may live.
    pub ttl: Duration,
}

/// One cached answer.
#[derive(Debug)]
pub struct Entry {
    /// The reply packets exactly as relayed to the client that missed.
    pub bytes: Vec<u8>,
    /// The rule that made it cacheable.
    pub rule: Arc<str>,
    /// Generations its read ran under.
    pub ticket: Ticket,
    /// How long it lives.
    pub ttl: Duration,
    /// A superset of what the answer reflects (monotonic reads after a
    /// hit).
    pub bound: Bound,
}

/// What bounds an entry's content.
#[derive(Debug, Clone)]
pub enum Bound {
    /// The serving backend's executed set when the read ended (from its OK).
    Known(Arc<GtidSet>),
    /// The serving backend and when the read ended: any set the monitor
    /// read there with a probe sent later contains the content.
    Source(Arc<crate::topology::BackendState>, Instant),
}

impl Bound {
    /// The bounding set, when known by now.
    pub fn resolve(&self) -> Option<Arc<GtidSet>> {
        match self {
            Bound::Known(s) => Some(Arc::clone(s)),
            Bound::Source(state, at) => state
                .confirmed_since(*at)
                .then(|| Arc::clone(&state.view.load().gtid_executed)),
        }
    }
}

struct PerEntryTtl;

impl moka::Expiry<Key, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _k: &Key, v: &Arc<Entry>, _at: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Per-rule request counts (SHOW CAUSEWAY CACHE) and metric handles.
#[derive(Debug, Default)]
pub struct RuleStats {
    /// Served from the cache (either level).
    pub hits: AtomicU64,
    /// Ran on a backend, result offered to the cache.
    pub misses: AtomicU64,
    /// Ran on a backend without the cache (not cacheable now).
    pub bypasses: AtomicU64,
    /// Hits served by the shared level (included in `hits`).
    pub shared_hits: AtomicU64,
    /// `REQUESTS{rule, result}` handles (hit, miss, bypass), then
    /// `HITS{rule, level}` (local, shared).
    counters: std::sync::OnceLock<[metrics::Counter; 5]>,
}

/// What [`RuleStats::count`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    LocalHit,
    Miss,
    Bypass,
    SharedHit,
}

impl RuleStats {
    fn count(&self, rule: &str, what: Count) {
        let c = self.counters.get_or_init(|| {
            let r = |result: &'static str| {
                metrics::counter!(REQUESTS, "rule" => rule.to_string(), "result" => result)
            };
            let h = |level: &'static str| {
                metrics::counter!(HITS, "rule" => rule.to_string(), "level" => level)
            };
            [
                r(crate::metrics::cache_result::HIT),
                r(crate::metrics::cache_result::MISS),
                r(crate::metrics::cache_result::BYPASS),
                h("local"),
                h("shared"),
            ]
        });
        let (n, handles): (&AtomicU64, &[usize]) = match what {
            Count::LocalHit => (&self.hits, &[0, 3]),
            Count::Miss => (&self.misses, &[1]),
            Count::Bypass => (&self.bypasses, &[2]),
            Count::SharedHit => {
                self.shared_hits.fetch_add(1, Ordering::Relaxed);
                (&self.hits, &[0, 4])
            }
        };
        n.fetch_add(1, Ordering::Relaxed);
        for i in handles {
            if let Some(h) = c.get(*i) {
                h.increment(1);
            }
        }
    }
}

/// What the binlog reader is doing, for SHOW CAUSEWAY CACHE.
#[derive(Debug, Clone)]
pub struct ReaderStatus {
    /// `off` (ttl mode), `connecting`, `following`, `disconnected`.
    pub state: &'static str,
    /// Last error, if any.
    pub error: Option<String>,
    /// Binlog file and position of the last event.
    pub position: String,
    /// When P last contained the primary's executed set (monitor's view).
    pub caught_up_at: Option<Instant>,
    /// Transactions processed since start.
    pub transactions: u64,
}

/// Result of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// Serve these bytes.
    Hit(Arc<Entry>),
    /// Not in memory: ask the shared level ([`Cache::lookup_shared`]),
    /// else run the statement and offer its result with this ticket.
    Miss(Ticket),
    /// Run the statement without the cache, for this reason.
    Bypass(&'static str),
}

/// The cache of one proxy instance.
pub struct Cache {
    store: moka::sync::Cache<Key, Arc<Entry>>,
    index: Index,
    shared: Option<Arc<shared::SharedStore>>,
    fresh: RwLock<Fresh>,
    reader: Mutex<ReaderStatus>,
    rules: DashMap<Arc<str>, Arc<RuleStats>>,
    config: causeway_config::Cache,
    /// Longest reply captured for the cache (larger ones are not cached).
    pub max_entry_bytes: usize,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.store.entry_count())
            .field("bytes", &self.store.weighted_size())
            .finish()
    }
}

impl Cache {
    /// A cache for `config` (the reader is started by `crate::binlog::reader::spawn`).
    pub fn new(config: &causeway_config::Cache) -> Cache {
        let max = config.max_bytes();
        let index: Index = Arc::default();
        let on_removal = Arc::clone(&index);
        let store = moka::sync::Cache::builder()
            .max_capacity(max)
            .weigher(|k: &Key, v: &Arc<Entry>| {
                u32::try_from(k.len().saturating_add(v.bytes.len()).saturating_add(128))
                    .unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .eviction_listener(move |k: Arc<Key>, v: Arc<Entry>, cause| {
                // a replaced entry's key now names its successor
                if cause != moka::notification::RemovalCause::Replaced {
                    unindex(&on_removal, &k, &v.ticket);
                }
            })
            .build();
        let shared = if config.redis_url.is_empty() {
            None
        } else {
            match shared::SharedStore::new(config) {
                Ok(s) => {
                    let s = Arc::new(s);
                    // connect now (in the background) when a runtime runs
                    s.warm();
                    Some(s)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cache: the shared level is off");
                    None
                }
            }
        };
        let state = match config.invalidation {
            causeway_config::Invalidation::Binlog => "connecting",
            causeway_config::Invalidation::Ttl => "off",
        };
        Cache {
            store,
            index,
            shared,
            fresh: RwLock::new(Fresh::new()),
            reader: Mutex::new(ReaderStatus {
                state,
                error: None,
                position: String::new(),
                caught_up_at: None,
                transactions: 0,
            }),
            rules: DashMap::new(),
            config: config.clone(),
            // one entry may take at most 1/8 of the budget, and 16 MiB
            max_entry_bytes: usize::try_from((max / 8).min(16 << 20)).unwrap_or(16 << 20),
        }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &causeway_config::Cache {
        &self.config
    }

    /// The counters of `rule`.
    pub fn rule_stats(&self, rule: &Arc<str>) -> Arc<RuleStats> {
        if let Some(s) = self.rules.get(rule) {
            return Arc::clone(&s);
        }
        Arc::clone(&self.rules.entry(Arc::clone(rule)).or_default())
    }

    /// Counts a bypass of `rule`.
    pub fn count_bypass(&self, rule: &Arc<str>) {
        self.rule_stats(rule).count(rule, Count::Bypass);
    }

    /// The shared level, when configured.
    pub fn shared(&self) -> Option<&Arc<shared::SharedStore>> {
        self.shared.as_ref()
    }

    /// Looks `key` up for a read of `tables` under `rule`. `causal` carries
    /// the token and the monotonic floor of a causal read (None: eventual).
    pub fn lookup(
        &self,
        key: &Key,
        rule: &Arc<str>,
        tables: &[String],
        causal: Option<(&GtidSet, Option<&GtidSet>)>,
    ) -> Lookup {
        let stats = self.rule_stats(rule);
        let Ok(fresh) = self.fresh.read() else {
            return Lookup::Bypass("cache state poisoned");
        };
        if let Some((token, floor)) = causal {
            if !fresh.serves_causal(token, floor) {
                let why = if !fresh.live {
                    "binlog reader not following"
                } else {
                    "binlog reader behind the token"
                };
                drop(fresh);
                stats.count(rule, Count::Bypass);
                return Lookup::Bypass(why);
            }
        }
        if let Some(e) = self.store.get(key) {
            if fresh.valid(&e.ticket) {
                drop(fresh);
                stats.count(rule, Count::LocalHit);
                return Lookup::Hit(e);
            }
            self.store.invalidate(key);
        }
        let ticket = fresh.ticket(tables);
        drop(fresh);
        if self.shared.is_none() {
            stats.count(rule, Count::Miss);
        }
        Lookup::Miss(ticket)
    }

    /// Offers the reply of a miss. `executed` is what the monitor knew the
    /// serving backend had executed before the read. Returns whether it was
    /// stored.
    pub fn insert(&self, offer: Offer, executed: &GtidSet) -> bool {
        let Offer {
            key,
            rule,
            ticket,
            bound,
            bytes,
            ttl,
        } = offer;
        if bytes.len() > self.max_entry_bytes {
            return false;
        }
        let fresh = match self.fresh.read() {
            Ok(f) if f.may_insert(&ticket, executed) => f,
            _ => return false,
        };
        let entry = Arc::new(Entry {
            bytes,
            rule,
            ticket,
            ttl,
            bound,
        });
        self.store_entry(key.clone(), Arc::clone(&entry));
        drop(fresh);
        self.share(key, entry, executed);
        true
    }

    /// A write through causeway to `tables` (None: not known, every entry
    /// dies), with the GTIDs its session knows. Their entries are freed
    /// when the binlog reader reports the write (at once in ttl mode).
    pub fn invalidate(&self, tables: Option<&[String]>, gtids: Option<&GtidSet>) {
        let dropped = self.fresh.write().ok().map(|mut f| {
            match tables {
                Some(t) => {
                    f.invalidate(t, gtids);
                    metrics::counter!(INVALIDATIONS, "reason" => "write").increment(1);
                }
                None => {
                    f.invalidate_all(gtids);
                    metrics::counter!(INVALIDATIONS, "reason" => "write_unknown").increment(1);
                }
            }
            // with a reader, its report of the same write frees the
            // entries (off this session's path); without one, now
            (self.config.invalidation == causeway_config::Invalidation::Ttl)
                .then(|| f.take_dropped())
        });
        if let Some(Some((all, tables))) = dropped {
            self.free(all, tables);
        }
    }

    /// Runs `f` on the freshness state (the reader's updates); the entries
    /// of the tables it invalidated are freed right after.
    pub fn with_fresh<R>(&self, f: impl FnOnce(&mut Fresh) -> R) -> Option<R> {
        let (r, (all, tables)) = self.fresh.write().ok().map(|mut g| {
            let r = f(&mut g);
            (r, g.take_dropped())
        })?;
        self.free(all, tables);
        Some(r)
    }

    /// Entries held now (after pending maintenance).
    pub fn entry_count(&self) -> u64 {
        self.store.run_pending_tasks();
        self.store.entry_count()
    }

    /// P, and whether the reader follows the primary.
    pub fn processed(&self) -> (GtidSet, bool) {
        match self.fresh.read() {
            Ok(f) => (f.processed().clone(), f.live),
            Err(_) => (GtidSet::new(), false),
        }
    }

    /// Updates the reader status.
    pub fn set_reader(&self, f: impl FnOnce(&mut ReaderStatus)) {
        f(&mut self.reader.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The reader status.
    pub fn reader(&self) -> Option<ReaderStatus> {
        Some(
            self.reader
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Entries and bytes per rule (walks the store: admin use only).
    pub fn per_rule(&self) -> Vec<(Arc<str>, u64, u64, Arc<RuleStats>)> {
        let mut by: std::collections::BTreeMap<Arc<str>, (u64, u64)> = Default::default();
        for (_, e) in self.store.iter() {
            let slot = by.entry(Arc::clone(&e.rule)).or_default();
            slot.0 += 1;
            slot.1 += e.bytes.len() as u64;
        }
        for r in self.rules.iter() {
            by.entry(Arc::clone(r.key())).or_default();
        }
        by.into_iter()
            .map(|(rule, (n, b))| {
                let stats = self.rule_stats(&rule);
                (rule, n, b, stats)
            })
            .collect()
    }

    /// Bytes held (weighted, including key and overhead).
    pub fn bytes(&self) -> u64 {
        self.store.run_pending_tasks();
        self.store.weighted_size()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `bytes` (reply packets) with sequence ids renumbered from `first`, as a
/// client expects after its one-packet command.
pub fn resequence(bytes: &[u8], first: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut pos = 0usize;
    let mut seq = first;
    while let Some(h) = out.get(pos..pos + 4) {
        let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        if let Some(b) = out.get_mut(pos + 3) {
            *b = seq;
        }
        seq = seq.wrapping_add(1);
        pos = pos.saturating_add(4).saturating_add(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resequence_renumbers_every_packet() {
        let bytes = [1, 0, 0, 7, 0xAA, 2, 0, 0, 9, 1, 2, 0, 0, 0, 3];
        let out = resequence(&bytes, 1);
        assert_eq!(out, vec![1, 0, 0, 1, 0xAA, 2, 0, 0, 2, 1, 2, 0, 0, 0, 3]);
        // truncated input is left as is past its last header
        assert_eq!(resequence(&[5, 0], 1), vec![5, 0]);
    }

    fn cfg() -> causeway_config::Cache {
        causeway_config::Cache {
            enabled: true,
            max_memory_mb: 1,
            ..Default::default()
        }
    }

    /// The key of a text-protocol statement of `app`, no schema, no SETs.
    fn text_key(sql: &[u8]) -> Key {
        let ctx = key::Context {
            caps: 0,
            collation: 255,
            backend_user: "app",
            db: None,
            sets: &[],
        };
        key::build(&ctx, key::Protocol::Text, sql, &[])
    }

    #[test]
    fn miss_insert_hit_invalidate() {
        let c = Cache::new(&cfg());
        let k = text_key(b"SELECT 1 FROM d.t");
        let rule: Arc<str> = Arc::from("r");
        let tables = vec!["d.t".to_string()];
        let Lookup::Miss(t) = c.lookup(&k, &rule, &tables, None) else {
            panic!("expected a miss");
        };
        assert!(c.insert(
            Offer {
                key: k.clone(),
                rule: Arc::clone(&rule),
                ticket: t,
                bound: Bound::Known(Arc::new(GtidSet::new())),
                bytes: vec![1, 0, 0, 1, 0],
                ttl: Duration::from_secs(60),
            },
            &GtidSet::new(),
        ));
        assert!(matches!(c.lookup(&k, &rule, &tables, None), Lookup::Hit(_)));
        // causal reads bypass while no reader follows
        assert!(matches!(
            c.lookup(&k, &rule, &tables, Some((&GtidSet::new(), None))),
            Lookup::Bypass(_)
        ));
        c.invalidate(Some(&tables), None);
        assert!(matches!(
            c.lookup(&k, &rule, &tables, None),
            Lookup::Miss(_)
        ));
        let stats = c.rule_stats(&rule);
        assert_eq!(stats.hits.load(Ordering::Relaxed), 1);
        assert_eq!(stats.misses.load(Ordering::Relaxed), 2);
        assert_eq!(stats.bypasses.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn oversized_replies_are_not_stored() {
        let c = Cache::new(&cfg());
        let k = text_key(b"SELECT 1");
        let rule: Arc<str> = Arc::from("r");
        let Lookup::Miss(t) = c.lookup(&k, &rule, &[], None) else {
            panic!()
        };
        assert!(!c.insert(
            Offer {
                key: k,
                rule,
                ticket: t,
                bound: Bound::Known(Arc::new(GtidSet::new())),
                bytes: vec![0; c.max_entry_bytes + 1],
                ttl: Duration::from_secs(1),
            },
            &GtidSet::new(),
        ));
    }
}
