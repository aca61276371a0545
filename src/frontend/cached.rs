//! The session's side of the cache tier (`crate::cache`): the lookup
//! before routing (a hit is written to the client with its sequence ids and
//! never reaches a backend), the capture of a miss's reply as it is relayed
//! and its insertion, the invalidation after writes, and `SHOW CAUSEWAY
//! CACHE`.
//!
//! A statement uses the cache only when the cache is on, routing is free
//! (`Target::Replica`: autocommit, no transaction, not pinned), the mode is
//! eventual or causal, the text is deterministic
//! (`causeway_classify::cacheable`), no `/* causeway cache=off */` comment
//! says otherwise, and the first matching rule has `cache_ttl_ms` and names
//! every table the statement reads.

use causeway_classify::{Classification, Reason, Route, Tables};
use causeway_config::Consistency;
use causeway_gtid::GtidSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::route::{Sent, Via};
use super::session::{Flow, Session};
use crate::cache::{self, key, Cache, Lookup, Ticket};
use crate::protocol::ErrPacket;
use crate::relay::Outcome;
use crate::router::Target;
use crate::rules::StatementFacts;

/// The statement as the cache sees it.
pub(super) enum CacheStmt<'a> {
    /// COM_QUERY text.
    Text(&'a str),
    /// COM_STMT_EXECUTE: prepared text, remembered parameter types, and the
    /// execute payload after the statement id.
    Execute {
        sql: &'a str,
        types: &'a [u8],
        params: &'a [u8],
    },
}

impl CacheStmt<'_> {
    fn sql(&self) -> &str {
        match self {
            CacheStmt::Text(s) | CacheStmt::Execute { sql: s, .. } => s,
        }
    }
}

/// A miss to fill once its reply has been relayed.
pub(super) struct Fill {
    cache: Arc<Cache>,
    key: key::Key,
    rule: Arc<str>,
    ttl: Duration,
    ticket: Ticket,
    /// What the monitor knew each backend had executed before the read.
    executed: Vec<(String, Arc<GtidSet>)>,
}

/// What to do with a statement.
pub(super) enum Before {
    /// Answered from the cache.
    Hit(Flow),
    /// Run it, capturing its reply.
    Fill(Fill),
    /// Run it without the cache.
    Skip,
}

/// SQLSTATE-coded refusal of a bad `cache=` option.
fn bad_option(v: &str) -> ErrPacket {
    ErrPacket::new(
        1231,
        "42000",
        format!(
            "Variable 'causeway.cache' can't be set to the value of '{}' (expected on or off)",
            crate::consistency::clip_value(v)
        ),
    )
}

impl Session {
    /// The cache step of a statement about to be routed to `target`.
    pub(super) async fn cache_before(
        &mut self,
        stmt: CacheStmt<'_>,
        c: &Classification,
        target: &Target,
        mode: Consistency,
        token: &GtidSet,
    ) -> Before {
        let Some(cache) = self.ctx.cache.clone() else {
            return Before::Skip;
        };
        if c.route != Route::Replica || *target != Target::Replica {
            return Before::Skip;
        }
        // a command of several packets would shift the reply's sequence ids
        let size = match &stmt {
            CacheStmt::Text(s) => s.len(),
            CacheStmt::Execute { params, .. } => params.len().saturating_add(4),
        };
        if size >= crate::protocol::packet::MAX_PAYLOAD - 1 {
            return Before::Skip;
        }
        let sql = stmt.sql();
        let facts = StatementFacts::new(sql, c, &self.user.name, self.db.as_deref(), true);
        let topo = Arc::clone(&self.topo);
        let Some(rule) = topo.rules.first_match(&facts) else {
            return Before::Skip;
        };
        let Some(ttl) = rule.cache_ttl() else {
            return Before::Skip;
        };
        let rule_name: Arc<str> = Arc::from(rule.name());
        if let Some(opts) = causeway_classify::leading_comment_options(sql) {
            for (k, v) in opts {
                if k == "cache" {
                    if v.eq_ignore_ascii_case("off") {
                        self.obs.bypass = "comment";
                        cache.count_bypass(&rule_name);
                        return Before::Skip;
                    } else if !v.eq_ignore_ascii_case("on") {
                        return Before::Hit(self.reply_err(&bad_option(&v)).await);
                    }
                }
            }
        }
        let Some(tables) = covered_tables(&facts, rule.config().match_tables.as_slice()) else {
            self.obs.bypass = "tables";
            cache.count_bypass(&rule_name);
            return Before::Skip;
        };
        if mode == Consistency::Strong || causeway_classify::cacheable(sql).is_err() {
            self.obs.bypass = if mode == Consistency::Strong {
                "strong"
            } else {
                "uncacheable"
            };
            cache.count_bypass(&rule_name);
            return Before::Skip;
        }
        let floor = match (mode, self.floor_set()) {
            (Consistency::Causal, Err(())) => {
                self.obs.bypass = "floor_unknown";
                cache.count_bypass(&rule_name);
                return Before::Skip;
            }
            (_, Ok(f)) => f,
            (_, Err(())) => None,
        };
        let causal = (mode == Consistency::Causal).then_some((token, floor.as_deref()));
        let k = self.cache_key(&stmt);
        match cache.lookup(&k, &rule_name, &tables, causal) {
            Lookup::Hit(entry) => Before::Hit(self.serve_hit(&entry, mode, floor.as_deref()).await),
            Lookup::Miss(ticket) => {
                if let Some(entry) = cache
                    .lookup_shared(&k, &rule_name, &tables, &ticket, ttl)
                    .await
                {
                    return Before::Hit(self.serve_hit(&entry, mode, floor.as_deref()).await);
                }
                if !self.client.wbuf.is_empty() {
                    return Before::Skip;
                }
                let executed = std::iter::once(&self.topo.primary)
                    .chain(self.topo.replicas.iter())
                    .map(|b| {
                        (
                            b.name().to_string(),
                            Arc::clone(&b.state.view.load().gtid_executed),
                        )
                    })
                    .collect();
                self.client.capture = Some(Vec::new());
                self.client.capture_limit = cache.max_entry_bytes;
                Before::Fill(Fill {
                    cache,
                    key: k,
                    rule: rule_name,
                    ttl,
                    ticket,
                    executed,
                })
            }
            Lookup::Bypass(_) => Before::Skip,
        }
    }

    /// The cache key of `stmt` for this session: the statement and what
    /// shapes its reply (capabilities, collation, backend user, schema,
    /// replayed SETs).
    fn cache_key(&self, stmt: &CacheStmt<'_>) -> key::Key {
        let caps = (self.caps & crate::protocol::handshake::reply_shaping_capabilities()).bits();
        let ctx = key::Context {
            caps,
            collation: self.collation,
            backend_user: &self.user.backend_user,
            db: self.db.as_deref(),
            sets: &self.sets,
        };
        match stmt {
            CacheStmt::Text(s) => key::build(&ctx, key::Protocol::Text, s.as_bytes(), &[]),
            CacheStmt::Execute { sql, types, params } => key::build(
                &ctx,
                key::Protocol::Binary,
                sql.as_bytes(),
                &[types, params],
            ),
        }
    }

    /// Answers from cache entry `entry`; a causal read also records what
    /// the session has now seen (its `floor` and the entry's bound).
    async fn serve_hit(
        &mut self,
        entry: &cache::Entry,
        mode: Consistency,
        floor: Option<&GtidSet>,
    ) -> Flow {
        let started = Instant::now();
        let flow = self.replay(&entry.bytes).await;
        self.last_route = Some(Sent {
            backend: Arc::clone(&self.topo.primary),
            via: Via::Cache,
        });
        if mode == Consistency::Causal {
            // what the session has seen: its floor and the entry
            self.cursor.saw(&self.topo.primary, true);
            if let Some(b) = entry.bound.resolve() {
                let mut seen = (*b).clone();
                if let Some(f) = floor {
                    seen.union(f);
                }
                self.cursor.set_bound(Arc::new(seen));
            }
        }
        metrics::histogram!(crate::metrics::STATEMENT_SECONDS, "tier" => "cache")
            .record(started.elapsed().as_secs_f64());
        flow
    }

    /// Writes a cached reply with sequence ids from 1 (after the client's
    /// one-packet command).
    async fn replay(&mut self, bytes: &[u8]) -> Flow {
        let out = cache::resequence(bytes, 1);
        self.client.wbuf.extend_from_slice(&out);
        match self.client.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }

    /// The monotonic floor of a causal read served from the cache: `Ok(None)`
    /// when the session read nothing yet, `Err` while it is not known.
    fn floor_set(&self) -> Result<Option<Arc<GtidSet>>, ()> {
        let Some(seen) = self.cursor.seen() else {
            return Ok(None);
        };
        if let Some(b) = &seen.bound {
            return Ok(Some(Arc::clone(b)));
        }
        if seen.state.confirmed_since(seen.at) {
            return Ok(Some(Arc::clone(&seen.state.view.load().gtid_executed)));
        }
        if self.topo.primary.state.confirmed_since(seen.at) {
            return Ok(Some(Arc::clone(
                &self.topo.primary.state.view.load().gtid_executed,
            )));
        }
        Err(())
    }

    /// After a statement ran: fills the cache from a captured miss, or
    /// invalidates what a write touched.
    pub(super) fn cache_after(
        &mut self,
        fill: Option<Fill>,
        c: &Classification,
        sql: &str,
        sent: Option<&Sent>,
        outcome: Option<&Outcome>,
    ) {
        if let Some(fill) = fill {
            let captured = self.client.capture.take();
            self.fill(fill, captured, sent, outcome);
            return;
        }
        let Some(cache) = self.ctx.cache.clone() else {
            return;
        };
        let Some(outcome) = outcome else {
            return;
        };
        self.bound_last_read(sent, outcome);
        if let Some(tables) = written(c, sql, self.db.as_deref()) {
            let gtids = (!self.settings.token.is_empty()).then_some(&self.settings.token);
            match &tables {
                Some(t) => cache.invalidate(Some(t), gtids),
                None => cache.invalidate(None, gtids),
            }
            if outcome.in_trans() {
                match tables {
                    Some(t) => self.cache_written.extend(t),
                    None => self.cache_written.push(String::new()),
                }
            }
        }
        if !outcome.in_trans() && !self.cache_written.is_empty() {
            // the transaction ended: its writes are visible now
            let pending = std::mem::take(&mut self.cache_written);
            let gtids = (!self.settings.token.is_empty()).then_some(&self.settings.token);
            if pending.iter().any(String::is_empty) {
                cache.invalidate(None, gtids);
            } else {
                cache.invalidate(Some(&pending), gtids);
            }
        }
    }

    fn fill(
        &mut self,
        fill: Fill,
        captured: Option<Vec<u8>>,
        sent: Option<&Sent>,
        outcome: Option<&Outcome>,
    ) {
        let (Some(mut bytes), Some(sent), Some(outcome)) = (captured, sent, outcome) else {
            return;
        };
        let state_changed =
            mysql_common::constants::StatusFlags::SERVER_SESSION_STATE_CHANGED.bits();
        let cursor = mysql_common::constants::StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits();
        // A replica's OK may carry its own executed set (session tracking);
        // on the primary the session's token is merged into it: never stored.
        let tracked = outcome.gtids.is_some() || outcome.status & state_changed != 0;
        if outcome.error.is_some()
            || outcome.in_trans()
            || outcome.status & cursor != 0
            || (tracked && sent.backend.role != crate::topology::Role::Replica)
        {
            return;
        }
        self.bound_last_read(Some(sent), outcome);
        let Some(bound) = self.cursor.seen().map(|s| match &s.bound {
            Some(b) => cache::Bound::Known(Arc::clone(b)),
            None => cache::Bound::Source(Arc::clone(&s.state), s.at),
        }) else {
            return;
        };
        let Some(executed) = fill
            .executed
            .iter()
            .find(|(n, _)| n == sent.backend.name())
            .map(|(_, e)| e)
        else {
            return;
        };
        bytes.extend_from_slice(&self.client.wbuf);
        let offer = cache::Offer {
            key: fill.key,
            rule: fill.rule,
            ticket: fill.ticket,
            bound,
            bytes,
            ttl: fill.ttl,
        };
        fill.cache.insert(offer, executed);
    }

    /// A replica read's OK carries the replica's executed set at its end
    /// (`session_track_gtids = ALL_GTIDS`): a bound of what the read saw,
    /// so a causal read may use the cache right after it.
    fn bound_last_read(&mut self, sent: Option<&Sent>, outcome: &Outcome) {
        let (Some(sent), Some(g)) = (sent, &outcome.gtids) else {
            return;
        };
        if sent.backend.role != crate::topology::Role::Replica || sent.via == Via::Cache {
            return;
        }
        if let Ok(set) = GtidSet::parse(g) {
            self.cursor.set_bound(Arc::new(set));
        }
    }

    /// `SHOW CAUSEWAY CACHE` (admin only).
    pub(super) async fn show_cache(&mut self) -> Flow {
        if !self.user.admin {
            return self.reply_err(&super::admin_rows::not_admin()).await;
        }
        let Some(cache) = self.ctx.cache.clone() else {
            let err = ErrPacket::new(
                1105,
                "HY000",
                "causeway: the cache is not enabled ([cache] enabled = false)",
            );
            return self.reply_err(&err).await;
        };
        let rows = cache::admin::rows(&cache);
        self.reply_rows(cache::admin::COLUMNS, &rows).await
    }
}

/// `db.table` names (lowercase) the statement reads, when every one is
/// covered by `rule_tables` (a rule without tables covers none but the
/// table-less statement).
fn covered_tables(facts: &StatementFacts<'_>, rule_tables: &[String]) -> Option<Vec<String>> {
    let Tables::Known(list) = facts.tables() else {
        return None;
    };
    let mut out = Vec::with_capacity(list.len());
    for t in list {
        let (db, name) = t.resolve(facts.session_db)?;
        let covered = rule_tables.iter().any(|r| {
            causeway_config::split_table_name(r)
                .is_some_and(|(d, n)| d.eq_ignore_ascii_case(db) && n.eq_ignore_ascii_case(name))
        });
        if !covered {
            return None;
        }
        out.push(format!("{db}.{name}").to_lowercase());
    }
    Some(out)
}

/// What a successful statement wrote: `None` nothing, `Some(None)` tables
/// not known (everything), `Some(Some(list))` these tables.
pub(super) fn written(
    c: &Classification,
    sql: &str,
    db: Option<&str>,
) -> Option<Option<Vec<String>>> {
    if c.route == Route::Replica {
        return None;
    }
    match c.reason {
        Reason::Read
        | Reason::Show
        | Reason::Explain
        | Reason::Help
        | Reason::Empty
        | Reason::Set
        | Reason::Transaction
        | Reason::Use
        | Reason::Diagnostics
        | Reason::ReplicationStatus
        | Reason::Processlist
        | Reason::Causeway
        | Reason::LockTables
        | Reason::LockingRead
        | Reason::NamedLock
        | Reason::SessionFunction
        | Reason::UserVariable
        | Reason::SelectInto
        | Reason::SqlPrepare
        | Reason::ExplainAnalyze => None,
        Reason::Write => Some(match causeway_classify::tables(sql) {
            Tables::Known(list) => list
                .iter()
                .map(|t| {
                    t.resolve(db)
                        .map(|(d, n)| format!("{d}.{n}").to_lowercase())
                })
                .collect::<Option<Vec<_>>>(),
            Tables::Unknown => None,
        }),
        _ => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_classify::classify;

    fn w(sql: &str, db: Option<&str>) -> Option<Option<Vec<String>>> {
        written(&classify(sql), sql, db)
    }

    #[test]
    fn what_a_statement_writes() {
        assert_eq!(w("SELECT * FROM t", Some("d")), None);
        assert_eq!(w("BEGIN", None), None);
        assert_eq!(w("SET time_zone = '+00:00'", None), None);
        assert_eq!(w("COMMIT", None), None);
        assert_eq!(
            w("UPDATE Shop.Products SET n = 1 WHERE id = 2", None),
            Some(Some(vec!["shop.products".to_string()]))
        );
        assert_eq!(
            w("INSERT INTO t (a) SELECT a FROM d2.u", Some("d")),
            Some(Some(vec!["d.t".to_string(), "d2.u".to_string()]))
        );
        // an unqualified table without a default database: everything
        assert_eq!(w("DELETE FROM t", None), Some(None));
        assert_eq!(w("ALTER TABLE d.t ADD c INT", None), Some(None));
        assert_eq!(w("GRANT SELECT ON d.* TO u", None), Some(None));
        assert_eq!(w("CALL p()", None), Some(None));
    }
}
