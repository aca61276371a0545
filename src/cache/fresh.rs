//! Freshness bookkeeping of the cache, pure logic: what the binlog reader
//! has processed (P), one generation and one "last write" set per table,
//! and the checks that decide whether an entry may be inserted or served.
//!
//! * Every invalidation of a table bumps its generation. An entry records
//!   the generations of its tables (and the global one) taken *before* its
//!   read ran; it is served only while they are unchanged, so a write seen
//!   during or after the read kills it, with no race between insert and
//!   invalidation.
//! * A table's last write is P as it stood after the last transaction that
//!   wrote the table (plus the GTIDs of writes through causeway). An entry
//!   is inserted only if the executed set the monitor knew the serving
//!   backend had before the read contains the last writes of all its tables
//!   (and `base`, P at the reader's (re)start): it then reflects every write
//!   to its tables the reader had seen.
//! * A causal read with token T is served from the cache only while the
//!   reader follows the primary and T ⊆ P: every write in T then either was
//!   in the entry or has bumped a generation it recorded.

use causeway_gtid::GtidSet;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default)]
struct TableState {
    generation: u64,
    last_write: Arc<GtidSet>,
}

/// What an entry recorded before its read: generations, and the set the
/// serving backend must have had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Global generation (bumped by DDL, reconnects, unknown tables).
    pub global: u64,
    /// `(table, generation)` for each table read.
    pub tables: Vec<(String, u64)>,
    /// The union of the tables' last writes and `base`.
    pub need: GtidSet,
}

/// The freshness state (behind one lock in [`crate::cache::Cache`]).
#[derive(Debug, Default)]
pub struct Fresh {
    processed: GtidSet,
    base: GtidSet,
    global: u64,
    tables: HashMap<String, TableState>,
    /// The reader follows the primary (connected, stream open).
    pub live: bool,
    /// Tables invalidated since [`Fresh::take_dropped`] last ran (their
    /// entries are freed then), and whether every entry was.
    dropped: Vec<String>,
    dropped_all: bool,
}

impl Fresh {
    /// A state where the reader has not started.
    pub fn new() -> Fresh {
        Fresh::default()
    }

    /// P: the GTIDs the reader has processed.
    pub fn processed(&self) -> &GtidSet {
        &self.processed
    }

    /// The reader (re)started at the primary's executed set `start`: every
    /// entry made before is dropped (writes may have been missed), and new
    /// entries must come from backends that have `start`.
    pub fn restart(&mut self, start: GtidSet) {
        self.global = self.global.wrapping_add(1);
        self.tables.clear();
        self.base = start.clone();
        self.processed = start;
        self.live = true;
        self.dropped_all = true;
    }

    /// The tables invalidated since the last call (true: every entry), for
    /// the cache to free their entries at once.
    pub fn take_dropped(&mut self) -> (bool, Vec<String>) {
        let all = std::mem::take(&mut self.dropped_all);
        let tables = std::mem::take(&mut self.dropped);
        if all {
            (true, Vec::new())
        } else {
            (false, tables)
        }
    }

    fn note_dropped(&mut self, table: &str) {
        if !self.dropped_all && !self.dropped.iter().any(|t| t == table) {
            self.dropped.push(table.to_string());
        }
    }

    /// The reader lost the primary.
    pub fn stop(&mut self) {
        self.live = false;
    }

    /// The generations and required set for an entry reading `tables`.
    pub fn ticket(&self, tables: &[String]) -> Ticket {
        let mut need = self.base.clone();
        let tables = tables
            .iter()
            .map(|t| match self.tables.get(t) {
                Some(s) => {
                    need.union(&s.last_write);
                    (t.clone(), s.generation)
                }
                None => (t.clone(), 0),
            })
            .collect();
        Ticket {
            global: self.global,
            tables,
            need,
        }
    }

    /// Whether no table of `t` was invalidated since the ticket was taken.
    pub fn valid(&self, t: &Ticket) -> bool {
        t.global == self.global
            && t.tables
                .iter()
                .all(|(name, g)| self.tables.get(name).map(|s| s.generation).unwrap_or(0) == *g)
    }

    /// Whether an entry read under `t` on a backend known (before the read)
    /// to have executed `executed` may be inserted.
    pub fn may_insert(&self, t: &Ticket, executed: &GtidSet) -> bool {
        self.valid(t) && executed.contains(&t.need)
    }

    /// Whether a causal read carrying `token` (and a monotonic floor) may
    /// be served from the cache.
    pub fn serves_causal(&self, token: &GtidSet, floor: Option<&GtidSet>) -> bool {
        let floor_ok = match floor {
            Some(f) => self.processed.contains(f),
            None => true,
        };
        self.live && floor_ok && self.processed.contains(token)
    }

    /// The reader processed a transaction `gtid` (None: anonymous or not
    /// understood) that wrote `tables`: their entries die and their last
    /// write becomes P.
    pub fn commit(&mut self, gtid: Option<&GtidSet>, tables: &[String]) {
        if let Some(g) = gtid {
            self.processed.union(g);
        }
        if tables.is_empty() {
            return;
        }
        let p = Arc::new(self.processed.clone());
        for t in tables {
            let s = self.tables.entry(t.clone()).or_default();
            s.generation = s.generation.wrapping_add(1);
            s.last_write = Arc::clone(&p);
            self.note_dropped(t);
        }
    }

    /// A write through causeway to `tables`, with the GTIDs its session
    /// knows of (its token after the write), if any.
    pub fn invalidate(&mut self, tables: &[String], gtids: Option<&GtidSet>) {
        for t in tables {
            self.note_dropped(t);
            let s = self.tables.entry(t.clone()).or_default();
            s.generation = s.generation.wrapping_add(1);
            if let Some(g) = gtids {
                if !s.last_write.contains(g) {
                    let mut w = (*s.last_write).clone();
                    w.union(g);
                    s.last_write = Arc::new(w);
                }
            }
        }
    }

    /// Every entry dies (DDL, grants, a write whose tables are unknown).
    pub fn invalidate_all(&mut self, gtids: Option<&GtidSet>) {
        self.global = self.global.wrapping_add(1);
        self.dropped_all = true;
        if let Some(g) = gtids {
            self.base.union(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn set(s: &str) -> GtidSet {
        if s.is_empty() {
            return GtidSet::new();
        }
        GtidSet::parse(&format!("{U}:{s}")).unwrap()
    }

    fn t(name: &str) -> Vec<String> {
        vec![name.to_string()]
    }

    #[test]
    fn a_write_during_the_read_kills_the_entry() {
        let mut f = Fresh::new();
        f.restart(set("1-10"));
        let ticket = f.ticket(&t("shop.p"));
        f.commit(Some(&set("11")), &t("shop.p"));
        assert!(!f.may_insert(&ticket, &set("1-11")));
        assert!(!f.valid(&ticket));
        // another table's write does not
        let ticket = f.ticket(&t("shop.p"));
        f.commit(Some(&set("12")), &t("shop.q"));
        assert!(f.may_insert(&ticket, &set("1-11")));
    }

    #[test]
    fn a_lagging_backend_cannot_insert_what_the_reader_saw() {
        let mut f = Fresh::new();
        f.restart(set("1-10"));
        f.commit(Some(&set("11")), &t("shop.p"));
        let ticket = f.ticket(&t("shop.p"));
        assert!(!f.may_insert(&ticket, &set("1-10")));
        assert!(f.may_insert(&ticket, &set("1-11")));
        // after a restart the backend must have the start set
        f.restart(set("1-20"));
        let ticket = f.ticket(&t("shop.q"));
        assert!(!f.may_insert(&ticket, &set("1-19")));
        assert!(f.may_insert(&ticket, &set("1-20")));
    }

    #[test]
    fn causal_reads_need_a_live_reader_and_the_token() {
        let mut f = Fresh::new();
        assert!(!f.serves_causal(&GtidSet::new(), None));
        f.restart(set("1-10"));
        assert!(f.serves_causal(&set("1-10"), None));
        assert!(!f.serves_causal(&set("11"), None));
        assert!(!f.serves_causal(&set("1-5"), Some(&set("1-12"))));
        f.stop();
        assert!(!f.serves_causal(&set("1-10"), None));
    }

    #[test]
    fn writes_through_causeway_raise_the_need() {
        let mut f = Fresh::new();
        f.restart(set("1-10"));
        let before = f.ticket(&t("shop.p"));
        f.invalidate(&t("shop.p"), Some(&set("1-11")));
        assert!(!f.valid(&before));
        let after = f.ticket(&t("shop.p"));
        assert!(!f.may_insert(&after, &set("1-10")));
        assert!(f.may_insert(&after, &set("1-11")));
        f.invalidate_all(None);
        assert!(!f.valid(&after));
    }

    #[test]
    fn invalidated_tables_are_reported_once() {
        let mut f = Fresh::new();
        f.restart(set("1-10"));
        assert_eq!(f.take_dropped(), (true, vec![]));
        f.commit(Some(&set("11")), &t("shop.p"));
        f.invalidate(&t("shop.p"), None);
        f.invalidate(&t("shop.q"), None);
        assert_eq!(
            f.take_dropped(),
            (false, vec!["shop.p".to_string(), "shop.q".to_string()])
        );
        assert_eq!(f.take_dropped(), (false, vec![]));
        f.invalidate(&t("shop.p"), None);
        f.invalidate_all(None);
        assert_eq!(f.take_dropped(), (true, vec![]));
    }

    proptest! {
        /// Model check: a sequence of reads (ticket, then insert on a
        /// backend that has applied a prefix) and writes; an entry that is
        /// served (valid, token ⊆ P) never misses a write its table got
        /// that is in P.
        #[test]
        fn served_entries_reflect_every_processed_write(
            ops in proptest::collection::vec((0u8..3, 0u8..2, 0u64..6), 1..60)
        ) {
            let mut f = Fresh::new();
            f.restart(GtidSet::new());
            let mut next = 1u64; // next gno the primary commits
            let mut writes: Vec<(u64, u8)> = Vec::new(); // (gno, table)
            let mut applied = 0u64; // the replica's prefix
            let mut entries: Vec<(Ticket, u8, u64)> = Vec::new(); // (ticket, table, content prefix)
            for (op, table, lag) in ops {
                let name = format!("d.t{table}");
                match op {
                    0 => {
                        // the primary commits and the reader processes it
                        writes.push((next, table));
                        f.commit(Some(&set(&next.to_string())), &[name]);
                        next += 1;
                    }
                    1 => {
                        // a read on a replica that has applied a prefix
                        applied = applied.max(next.saturating_sub(1).saturating_sub(lag));
                        let ticket = f.ticket(&[name]);
                        let executed = if applied == 0 { GtidSet::new() } else { set(&format!("1-{applied}")) };
                        if f.may_insert(&ticket, &executed) {
                            entries.push((ticket, table, applied));
                        }
                    }
                    _ => {
                        for (ticket, tb, prefix) in &entries {
                            if f.valid(ticket) {
                                let missed = writes.iter().any(|(g, wt)| wt == tb && g > prefix);
                                prop_assert!(!missed, "served an entry missing a processed write");
                            }
                        }
                    }
                }
            }
        }
    }
}
