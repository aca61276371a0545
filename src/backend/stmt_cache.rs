//! The prepared statements living on one backend connection, keyed by
//! their SQL text (the COM_STMT_PREPARE payload), so a statement is
//! prepared once per connection however many clients run it there.
//!
//! Bounded: inserting beyond the bound evicts the least recently used
//! entry, and the caller closes the evicted statement on the server. A
//! reset connection (COM_RESET_CONNECTION closes every statement) starts
//! with an empty cache.

use std::collections::HashMap;

/// Most statements kept per connection in `transaction` pool mode.
pub const STMT_CACHE_MAX: usize = 256;

/// One statement prepared on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedStmt {
    /// The server's statement id.
    pub id: u32,
    /// When it was last used (cache clock).
    used: u64,
}

/// SQL text → statement prepared on this connection.
#[derive(Debug, Default)]
pub struct StmtCache {
    map: HashMap<Vec<u8>, CachedStmt>,
    clock: u64,
}

impl StmtCache {
    /// The server id of the statement prepared from `prepare`, marking it
    /// used.
    pub fn get(&mut self, prepare: &[u8]) -> Option<u32> {
        self.clock = self.clock.wrapping_add(1);
        let now = self.clock;
        self.map.get_mut(prepare).map(|c| {
            c.used = now;
            c.id
        })
    }

    /// Records `prepare` as prepared with server id `id`, keeping at most
    /// `max` entries. Returns the server ids the caller must close: a
    /// statement of the same text it replaces, and evicted ones.
    pub fn insert(&mut self, prepare: &[u8], id: u32, max: usize) -> Vec<u32> {
        self.clock = self.clock.wrapping_add(1);
        let entry = CachedStmt {
            id,
            used: self.clock,
        };
        let mut close = Vec::new();
        if let Some(old) = self.map.insert(prepare.to_vec(), entry) {
            if old.id != id {
                close.push(old.id);
            }
        }
        while self.map.len() > max.max(1) {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(c) = self.map.remove(&oldest) {
                close.push(c.id);
            }
        }
        close
    }

    /// Forgets the statement of `prepare`; its server id, to close.
    pub fn remove(&mut self, prepare: &[u8]) -> Option<u32> {
        self.map.remove(prepare).map(|c| c.id)
    }

    /// Forgets everything (the server closed every statement).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Statements kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_text_is_one_entry_and_lru_is_evicted() {
        let mut c = StmtCache::default();
        assert!(c.insert(b"a", 1, 2).is_empty());
        assert!(c.insert(b"b", 2, 2).is_empty());
        assert_eq!(c.get(b"a"), Some(1));
        // b is the least recently used
        assert_eq!(c.insert(b"c", 3, 2), vec![2]);
        assert_eq!(c.get(b"b"), None);
        // the same text prepared again replaces (and closes) the old id
        assert_eq!(c.insert(b"a", 4, 2), vec![1]);
        assert_eq!(c.get(b"a"), Some(4));
        assert_eq!(c.remove(b"c"), Some(3));
        c.clear();
        assert!(c.is_empty());
    }

    proptest! {
        #[test]
        fn never_exceeds_its_bound_and_closes_what_it_drops(
            ops in proptest::collection::vec((0u8..20, 1usize..5), 0..200)
        ) {
            let mut c = StmtCache::default();
            let mut live = std::collections::HashSet::new();
            for (i, (text, max)) in ops.into_iter().enumerate() {
                let id = i as u32;
                live.insert(id);
                for closed in c.insert(&[text], id, max) {
                    prop_assert!(live.remove(&closed));
                }
                prop_assert!(c.len() <= max);
                prop_assert_eq!(c.len(), live.len());
            }
        }
    }
}
