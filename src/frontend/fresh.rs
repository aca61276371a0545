//! `consistency = "fresh"`: a read is served only by a server that holds
//! the last write to every table it reads, whoever made it. Before a fresh
//! read, [`Session::fresh_need`] builds the implicit token from the
//! binlog component's per-table last writes (`crate::binlog`): the tables
//! the classifier names, or the last write to any table when it cannot
//! name them; the read then runs as a causal read with that token (plus
//! the session's). After every write this instance relays,
//! [`Session::fresh_after`] records its tables with the GTID set the
//! primary's OK reported, before the client sees the OK; a transaction's
//! tables are recorded when it ends.

use causeway_classify::{Classification, Route, Tables};
use causeway_config::Consistency;
use causeway_gtid::GtidSet;
use std::sync::Arc;

use super::session::Session;
use crate::relay::Outcome;
use crate::router::Target;

/// `mode` with `fresh` run as `causal` (with the implicit token).
pub(super) fn as_causal(mode: Consistency) -> Consistency {
    match mode {
        Consistency::Fresh => Consistency::Causal,
        m => m,
    }
}

/// The `db.table` names `sql` reads (None: not known).
fn read_tables(sql: &str, db: Option<&str>) -> Option<Vec<String>> {
    match causeway_classify::tables(sql) {
        Tables::Known(list) => list
            .iter()
            .map(|t| {
                t.resolve(db)
                    .map(|(d, n)| format!("{d}.{n}").to_lowercase())
            })
            .collect(),
        Tables::Unknown => None,
    }
}

/// What a statement that ran on the primary writes: None when it writes
/// nothing, `Some(None)` when its tables are not known.
fn written(c: &Classification, sql: &str, db: Option<&str>) -> Option<Option<Vec<String>>> {
    if c.route == Route::Replica {
        return None;
    }
    if let Some(t) = crate::binlog::ddl::tables(sql, db) {
        return Some(Some(t));
    }
    super::cached::written(c, sql, db)
}

impl Session {
    /// The implicit token of a fresh read of `sql` bound for `target`
    /// (None: not a fresh read): the last writes to its tables; with
    /// `fresh_sync`, or while the binlog reader does not follow the
    /// primary, also the primary's executed set, asked now.
    pub(super) async fn fresh_need(
        &mut self,
        mode: Consistency,
        target: &Target,
        sql: &str,
    ) -> Option<GtidSet> {
        if mode != Consistency::Fresh {
            return None;
        }
        let tables = match target {
            Target::Replica => read_tables(sql, self.db.as_deref()),
            // a read-only transaction reads on: the last write to any table
            Target::ReadOnlyTransaction => None,
            _ => return None,
        };
        let binlog = Arc::clone(&self.ctx.binlog);
        binlog.want();
        binlog.count_fresh_read(tables.is_some());
        let (mut need, live) = binlog.need(tables.as_deref());
        if !live || self.topo.config.routing.fresh_sync {
            let primary = Arc::clone(&self.topo.primary);
            match self.ask_primary(&primary).await {
                Some(set) => need.union(&set),
                // the primary does not answer: the monitor's last view
                None => need.union(&primary.state.view.load().gtid_executed),
            }
        }
        Some(need)
    }

    /// After a statement: records what a write relayed by this instance
    /// wrote, with the primary's executed set from its OK (the session
    /// token); inside a transaction, when it ends.
    pub(super) fn fresh_after(&mut self, c: &Classification, sql: &str, outcome: Option<&Outcome>) {
        let Some(outcome) = outcome else {
            return;
        };
        if outcome.error.is_none() {
            if let Some(v) = crate::binlog::ddl::view(sql, self.db.as_deref()) {
                self.ctx.binlog.with(|s| s.add_views([v]));
            }
            match written(c, sql, self.db.as_deref()) {
                Some(Some(t)) => self.fresh_written.extend(t),
                Some(None) => self.fresh_written.push(String::new()),
                None => {}
            }
        }
        if outcome.in_trans() || self.fresh_written.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.fresh_written);
        if self.settings.token.is_empty() {
            // no GTIDs tracked: the binlog reader will see the write
            return;
        }
        let binlog = &self.ctx.binlog;
        if pending.iter().any(String::is_empty) {
            binlog.write(None, &self.settings.token);
        } else {
            binlog.write(Some(&pending), &self.settings.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_of_reads_and_writes() {
        assert_eq!(
            read_tables("SELECT * FROM t JOIN d.u USING (id)", Some("App")),
            Some(vec!["app.t".to_string(), "d.u".to_string()])
        );
        assert_eq!(read_tables("SELECT * FROM t", None), None);
        assert_eq!(read_tables("SELECT f(1)", Some("d")), None);
        let w = |sql: &str| written(&causeway_classify::classify(sql), sql, Some("d"));
        assert_eq!(w("SELECT 1 FROM t"), None);
        assert_eq!(
            w("INSERT INTO t VALUES (1)"),
            Some(Some(vec!["d.t".into()]))
        );
        assert_eq!(
            w("ALTER TABLE t ADD c2 INT"),
            Some(Some(vec!["d.t".into()]))
        );
        assert_eq!(
            w("RENAME TABLE a TO b"),
            Some(Some(vec!["d.a".into(), "d.b".into()]))
        );
        assert_eq!(w("CREATE USER x"), Some(None));
    }

    /// sysbench's OLTP statements all name their tables: no fresh read of
    /// theirs needs the last write to every table.
    #[test]
    fn sysbench_statements_name_their_tables() {
        let reads = [
            "SELECT c FROM sbtest1 WHERE id=5",
            "SELECT c FROM sbtest1 WHERE id BETWEEN 5 AND 104",
            "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 5 AND 104",
            "SELECT c FROM sbtest1 WHERE id BETWEEN 5 AND 104 ORDER BY c",
            "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 5 AND 104 ORDER BY c",
        ];
        for sql in reads {
            assert_eq!(
                read_tables(sql, Some("sbtest")),
                Some(vec!["sbtest.sbtest1".to_string()]),
                "{sql}"
            );
        }
        let writes = [
            "UPDATE sbtest1 SET k=k+1 WHERE id=5",
            "UPDATE sbtest1 SET c='x' WHERE id=5",
            "DELETE FROM sbtest1 WHERE id=5",
            "INSERT INTO sbtest1 (id, k, c, pad) VALUES (5, 1, 'x', 'y')",
        ];
        for sql in writes {
            let c = causeway_classify::classify(sql);
            assert_eq!(
                written(&c, sql, Some("sbtest")),
                Some(Some(vec!["sbtest.sbtest1".to_string()])),
                "{sql}"
            );
        }
    }
}
