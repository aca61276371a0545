//! Eager freeing: an index of the cache's keys by table, so the entries of
//! a table are dropped when a write to it is reported (by the binlog
//! reader, or at once in ttl mode), not on their next lookup. The index is
//! kept by [`Cache::store_entry`] and by the store's eviction listener
//! ([`unindex`]); it may briefly name a key already gone (harmless: freeing
//! it again is a no-op), and an entry missing from it is still refused by
//! its generations on lookup.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Cache, Entry, Key, Ticket, BYTES};

/// Keys of the entries reading each table.
pub(crate) type Index = Arc<Mutex<HashMap<String, HashSet<Key>>>>;

impl Cache {
    /// Puts `entry` in memory and in the index (the caller holds the
    /// freshness read lock, so no invalidation passes in between).
    pub(crate) fn store_entry(&self, key: Key, entry: Arc<Entry>) {
        if let Ok(mut ix) = self.index.lock() {
            for (t, _) in &entry.ticket.tables {
                ix.entry(t.clone()).or_default().insert(key.clone());
            }
        }
        self.store.insert(key, entry);
        metrics::gauge!(BYTES).set(self.store.weighted_size() as f64);
    }

    /// Frees the entries of `tables` (every entry when `all`) at once.
    pub(crate) fn free(&self, all: bool, tables: Vec<String>) {
        if all {
            if let Ok(mut ix) = self.index.lock() {
                ix.clear();
            }
            self.store.invalidate_all();
            self.store.run_pending_tasks();
        } else if !tables.is_empty() {
            let mut keys = Vec::new();
            if let Ok(mut ix) = self.index.lock() {
                for t in &tables {
                    if let Some(set) = ix.remove(t) {
                        keys.extend(set);
                    }
                }
            }
            for k in &keys {
                self.store.invalidate(k);
            }
        } else {
            return;
        }
        metrics::gauge!(BYTES).set(self.store.weighted_size() as f64);
    }
}

/// Removes `key` from the index entries of `ticket`'s tables.
pub(crate) fn unindex(index: &Index, key: &Key, ticket: &Ticket) {
    if let Ok(mut ix) = index.lock() {
        for (t, _) in &ticket.tables {
            if let Some(set) = ix.get_mut(t) {
                set.remove(key);
                if set.is_empty() {
                    ix.remove(t);
                }
            }
        }
    }
}
