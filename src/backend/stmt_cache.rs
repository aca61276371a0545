//! The prepared statements living on one backend connection, keyed by
//! their SQL text (the COM_STMT_PREPARE payload) and by the session state
//! they were prepared under (default schema, replayed `SET`s: table names
//! and parsing depend on them), so a statement is prepared once per
//! connection and state however many clients run it there.
//!
//! Bounded: inserting beyond the bound evicts the least recently used
//! entry, and the caller closes the evicted statement on the server. A
//! reset connection (COM_RESET_CONNECTION closes every statement) starts
//! with an empty cache.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Most statements kept per connection in `transaction` pool mode.
pub const STMT_CACHE_MAX: usize = 256;

/// The session state a statement was prepared under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepState<'a> {
    /// Default schema.
    pub db: Option<&'a str>,
    /// Fingerprint of the replayed `SET`s (see [`sets_fingerprint`]).
    pub sets: u64,
}

/// A fingerprint of a list of replayed `SET` statements.
pub fn sets_fingerprint(sets: &[String]) -> u64 {
    if sets.is_empty() {
        return 0;
    }
    let mut h = DefaultHasher::new();
    sets.hash(&mut h);
    h.finish() | 1
}

/// One statement prepared on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CachedStmt {
    db: Option<String>,
    sets: u64,
    /// The server's statement id.
    id: u32,
    /// When it was last used (cache clock).
    used: u64,
}

impl CachedStmt {
    fn matches(&self, state: PrepState<'_>) -> bool {
        self.sets == state.sets && self.db.as_deref() == state.db
    }
}

/// SQL text and state → statement prepared on this connection.
#[derive(Debug, Default)]
pub struct StmtCache {
    map: HashMap<Vec<u8>, Vec<CachedStmt>>,
    len: usize,
    clock: u64,
}

impl StmtCache {
    /// The server id of the statement prepared from `prepare` under
    /// `state`, marking it used.
    pub fn get(&mut self, prepare: &[u8], state: PrepState<'_>) -> Option<u32> {
        self.clock = self.clock.wrapping_add(1);
        let now = self.clock;
        let c = self
            .map
            .get_mut(prepare)?
            .iter_mut()
            .find(|c| c.matches(state))?;
        c.used = now;
        Some(c.id)
    }

    /// Records `prepare` as prepared under `state` with server id `id`,
    /// keeping at most `max` entries. Returns the server ids the caller
    /// must close: a statement it replaces, and evicted ones.
    pub fn insert(
        &mut self,
        prepare: &[u8],
        state: PrepState<'_>,
        id: u32,
        max: usize,
    ) -> Vec<u32> {
        self.clock = self.clock.wrapping_add(1);
        let entry = CachedStmt {
            db: state.db.map(str::to_string),
            sets: state.sets,
            id,
            used: self.clock,
        };
        let mut close = Vec::new();
        let list = self.map.entry(prepare.to_vec()).or_default();
        match list.iter_mut().find(|c| c.matches(state)) {
            Some(old) => {
                if old.id != id {
                    close.push(old.id);
                }
                *old = entry;
            }
            None => {
                list.push(entry);
                self.len += 1;
            }
        }
        while self.len > max.max(1) {
            match self.evict_oldest() {
                Some(id) => close.push(id),
                None => break,
            }
        }
        close
    }

    fn evict_oldest(&mut self) -> Option<u32> {
        let (key, pos) = self
            .map
            .iter()
            .flat_map(|(k, list)| list.iter().enumerate().map(move |(i, c)| (k, i, c.used)))
            .min_by_key(|(_, _, used)| *used)
            .map(|(k, i, _)| (k.clone(), i))?;
        let list = self.map.get_mut(&key)?;
        let gone = (pos < list.len()).then(|| list.swap_remove(pos))?;
        if list.is_empty() {
            self.map.remove(&key);
        }
        self.len -= 1;
        Some(gone.id)
    }

    /// Forgets every statement of `prepare`; their server ids, to close.
    pub fn remove(&mut self, prepare: &[u8]) -> Vec<u32> {
        let gone = self.map.remove(prepare).unwrap_or_default();
        self.len -= gone.len();
        gone.into_iter().map(|c| c.id).collect()
    }

    /// Forgets everything (the server closed every statement).
    pub fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
    }

    /// Statements kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONE: PrepState<'static> = PrepState { db: None, sets: 0 };

    #[test]
    fn same_text_and_state_is_one_entry_and_lru_is_evicted() {
        let mut c = StmtCache::default();
        assert!(c.insert(b"a", NONE, 1, 2).is_empty());
        assert!(c.insert(b"b", NONE, 2, 2).is_empty());
        assert_eq!(c.get(b"a", NONE), Some(1));
        // b is the least recently used
        assert_eq!(c.insert(b"c", NONE, 3, 2), vec![2]);
        assert_eq!(c.get(b"b", NONE), None);
        // the same text prepared again replaces (and closes) the old id
        assert_eq!(c.insert(b"a", NONE, 4, 2), vec![1]);
        assert_eq!(c.get(b"a", NONE), Some(4));
        assert_eq!(c.remove(b"c"), vec![3]);
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn another_schema_or_set_list_is_another_statement() {
        let mut c = StmtCache::default();
        let db1 = PrepState {
            db: Some("db1"),
            sets: 0,
        };
        let db2 = PrepState {
            db: Some("db2"),
            sets: 0,
        };
        let ansi = PrepState {
            db: Some("db1"),
            sets: sets_fingerprint(&["SET sql_mode = 'ANSI_QUOTES'".to_string()]),
        };
        c.insert(b"SELECT * FROM t", db1, 1, 10);
        assert_eq!(c.get(b"SELECT * FROM t", db2), None);
        assert_eq!(c.get(b"SELECT * FROM t", ansi), None);
        assert_eq!(c.get(b"SELECT * FROM t", NONE), None);
        c.insert(b"SELECT * FROM t", db2, 2, 10);
        assert_eq!(c.get(b"SELECT * FROM t", db1), Some(1));
        assert_eq!(c.get(b"SELECT * FROM t", db2), Some(2));
        assert_eq!(c.len(), 2);
        let mut gone = c.remove(b"SELECT * FROM t");
        gone.sort_unstable();
        assert_eq!(gone, vec![1, 2]);
        assert!(c.is_empty());
        assert_eq!(sets_fingerprint(&[]), 0);
    }

    proptest! {
        #[test]
        fn never_exceeds_its_bound_and_closes_what_it_drops(
            ops in proptest::collection::vec((0u8..20, 0u8..3, 1usize..5), 0..200)
        ) {
            let mut c = StmtCache::default();
            let dbs = [None, Some("a"), Some("b")];
            let mut live = std::collections::HashSet::new();
            for (i, (text, db, max)) in ops.into_iter().enumerate() {
                let id = i as u32;
                live.insert(id);
                let state = PrepState { db: dbs[usize::from(db)], sets: 0 };
                for closed in c.insert(&[text], state, id, max) {
                    prop_assert!(live.remove(&closed));
                }
                prop_assert!(c.len() <= max);
                prop_assert_eq!(c.len(), live.len());
                prop_assert_eq!(c.get(&[text], state), Some(id));
            }
        }
    }
}
