//! Per-table last writes, pure logic: for each table, the GTID set a
//! server must contain to hold the last write to it that this instance
//! knows of (from the binlog reader, or from an OK it relayed), the set the
//! reader has processed (P), and a global floor that every table needs
//! (DDL the reader could not attribute, the reader's restarts, and entries
//! folded out of the bounded map).
//!
//! Every set only grows: a stale answer is never made fresh by forgetting.

use causeway_gtid::GtidSet;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug)]
struct Last {
    set: Arc<GtidSet>,
    /// When it was last written (this map's own clock), for folding.
    stamp: u64,
}

/// The last-write state (behind one lock in [`super::Binlog`]).
#[derive(Debug)]
pub struct Versions {
    processed: GtidSet,
    floor: GtidSet,
    latest: GtidSet,
    tables: HashMap<String, Last>,
    /// Known views (`db.name`): a read of one needs the last write to any
    /// table (its base tables are not named).
    views: HashSet<String>,
    clock: u64,
    max_tables: usize,
    /// The reader follows the primary (connected, stream open).
    pub live: bool,
    /// Entries folded into the floor since start.
    pub folded: u64,
}

impl Versions {
    /// An empty state keeping at most `max_tables` tables one by one.
    pub fn new(max_tables: usize) -> Versions {
        Versions {
            processed: GtidSet::new(),
            floor: GtidSet::new(),
            latest: GtidSet::new(),
            tables: HashMap::new(),
            views: HashSet::new(),
            clock: 0,
            max_tables: max_tables.max(1),
            live: false,
            folded: 0,
        }
    }

    /// P: the GTIDs the reader has processed.
    pub fn processed(&self) -> &GtidSet {
        &self.processed
    }

    /// Tables kept one by one.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether no table is kept one by one.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The reader (re)started at the primary's executed set `start`: what
    /// it may have missed is in `start`, which every table now needs.
    pub fn restart(&mut self, start: &GtidSet) {
        self.processed.union(start);
        self.floor.union(start);
        self.latest.union(start);
        self.live = true;
    }

    /// The reader lost the primary.
    pub fn stop(&mut self) {
        self.live = false;
    }

    /// The reader processed a transaction `gtid` that wrote `tables`
    /// (`None`: not known, e.g. DDL it could not name: every table).
    pub fn commit(&mut self, gtid: Option<&GtidSet>, tables: Option<&[String]>) {
        if let Some(g) = gtid {
            self.processed.union(g);
            self.latest.union(g);
        }
        match tables {
            None => {
                let p = self.processed.clone();
                self.floor.union(&p);
            }
            Some(tables) if !tables.is_empty() => {
                let p = Arc::new(self.processed.clone());
                self.clock = self.clock.wrapping_add(1);
                for t in tables {
                    let e = self.tables.entry(t.clone()).or_insert_with(|| Last {
                        set: Arc::new(GtidSet::new()),
                        stamp: 0,
                    });
                    e.set = Arc::clone(&p);
                    e.stamp = self.clock;
                }
                self.bound();
            }
            Some(_) => {}
        }
    }

    /// A write relayed by this instance: `tables` (None: not known, every
    /// table) now need `gtids` (what the primary's OK said it had executed).
    pub fn write(&mut self, tables: Option<&[String]>, gtids: &GtidSet) {
        self.latest.union(gtids);
        let Some(tables) = tables else {
            self.floor.union(gtids);
            return;
        };
        self.clock = self.clock.wrapping_add(1);
        for t in tables {
            let e = self.tables.entry(t.clone()).or_insert_with(|| Last {
                set: Arc::new(GtidSet::new()),
                stamp: 0,
            });
            if !e.set.contains(gtids) {
                let mut s = (*e.set).clone();
                s.union(gtids);
                e.set = Arc::new(s);
            }
            e.stamp = self.clock;
        }
        self.bound();
    }

    /// Records views (`db.name`, lowercase); kept until restart.
    pub fn add_views(&mut self, views: impl IntoIterator<Item = String>) {
        self.views.extend(views);
    }

    /// What a server must contain to hold the last write to every table of
    /// `tables` (None: the tables are not known, or one is a view: the last
    /// write to any).
    pub fn need(&self, tables: Option<&[String]>) -> GtidSet {
        let Some(tables) = tables.filter(|t| !t.iter().any(|n| self.views.contains(n))) else {
            return self.latest.clone();
        };
        let mut need = self.floor.clone();
        for t in tables {
            if let Some(e) = self.tables.get(t) {
                need.union(&e.set);
            }
        }
        need
    }

    /// Folds the oldest eighth of the map into the floor once it holds more
    /// than `max_tables` tables.
    fn bound(&mut self) {
        if self.tables.len() <= self.max_tables {
            return;
        }
        let mut stamps: Vec<u64> = self.tables.values().map(|e| e.stamp).collect();
        let cut = (self.tables.len() - self.max_tables).max(self.max_tables / 8);
        let idx = cut.min(stamps.len()).saturating_sub(1);
        let (_, nth, _) = stamps.select_nth_unstable(idx);
        let limit = *nth;
        let floor = &mut self.floor;
        let mut folded = 0u64;
        self.tables.retain(|_, e| {
            if e.stamp <= limit {
                floor.union(&e.set);
                folded += 1;
                false
            } else {
                true
            }
        });
        self.folded = self.folded.wrapping_add(folded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn set(s: &str) -> GtidSet {
        GtidSet::parse(&format!("{U}:{s}")).unwrap()
    }

    fn t(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_read_needs_the_last_write_of_its_tables_only() {
        let mut v = Versions::new(100);
        v.restart(&set("1-10"));
        v.commit(Some(&set("11")), Some(&t(&["d.a"])));
        v.commit(Some(&set("12")), Some(&t(&["d.b"])));
        assert_eq!(v.need(Some(&t(&["d.a"]))), set("1-11"));
        assert_eq!(v.need(Some(&t(&["d.b"]))), set("1-12"));
        assert_eq!(v.need(Some(&t(&["d.c"]))), set("1-10"));
        // unknown tables: the last write to any
        assert_eq!(v.need(None), set("1-12"));
    }

    #[test]
    fn relayed_writes_and_unattributed_ddl() {
        let mut v = Versions::new(100);
        v.write(Some(&t(&["d.a"])), &set("1-5"));
        assert_eq!(v.need(Some(&t(&["d.a", "d.b"]))), set("1-5"));
        assert!(v.need(Some(&t(&["d.b"]))).is_empty());
        v.commit(Some(&set("6")), None);
        assert_eq!(v.need(Some(&t(&["d.b"]))), set("6"));
        v.write(None, &set("1-7"));
        assert_eq!(v.need(Some(&t(&["d.z"]))), set("1-7"));
    }

    #[test]
    fn a_view_needs_the_last_write_to_any_table() {
        let mut v = Versions::new(100);
        v.commit(Some(&set("1")), Some(&t(&["d.base"])));
        v.commit(Some(&set("2")), Some(&t(&["d.other"])));
        assert_eq!(v.need(Some(&t(&["d.v"]))), GtidSet::new());
        v.add_views(t(&["d.v"]));
        assert_eq!(v.need(Some(&t(&["d.v"]))), set("1-2"));
        assert_eq!(v.need(Some(&t(&["d.base"]))), set("1"));
    }

    #[test]
    fn the_map_is_bounded_and_folds_into_the_floor() {
        let mut v = Versions::new(8);
        for i in 1..=100u64 {
            v.commit(Some(&set(&i.to_string())), Some(&[format!("d.t{i}")]));
            assert!(v.len() <= 8, "{} tables kept", v.len());
        }
        assert!(v.folded >= 92);
        // an old table needs at least its last write, through the floor
        assert!(v.need(Some(&t(&["d.t1"]))).contains(&set("1")));
        assert!(v.need(Some(&t(&["d.t50"]))).contains(&set("1-50")));
        // recent ones are still kept apart: d.t100 needs 100, d.t99 not
        assert!(v.need(Some(&t(&["d.t100"]))).contains(&set("100")));
        assert!(!v.need(Some(&t(&["d.t99"]))).contains(&set("100")));
    }
}
