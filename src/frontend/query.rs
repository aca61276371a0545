//! COM_QUERY: classification, the statement's target and options (where
//! it then runs is `route`), the proxy's own `@@causeway.*` variables,
//! `SHOW CAUSEWAY BACKENDS` and `KILL`, and the session bookkeeping after
//! each statement.

use causeway_classify::{
    calcs_found_rows, causeway_command, classify, kill_check, leading_comment_options,
    reads_last_insert_id, CausewayCommand, Classification, KillCheck,
};
use causeway_gtid::GtidSet;
use std::time::Instant;

/// What a leading `/* causeway ... */` comment sets for one statement:
/// mode, token to add, sticky key.
type StatementOptions = (Consistency, Option<GtidSet>, Option<std::sync::Arc<str>>);

use super::cached::{Before, CacheStmt};
use super::local;
use super::prepared::Cmd;
use super::registry::{self, Kill};
use super::route::{Sent, Via};
use super::session::{Flow, Session};
use super::sets;
use crate::backend::{BackendConn, LinkKey};
use crate::consistency::{self, ConsistencyError};
use crate::protocol::{query_attrs, ErrPacket};
use crate::relay::{Expect, Outcome};
use crate::topology::Role;
use causeway_config::{Consistency, PoolMode};
use mysql_common::constants::CapabilityFlags;

impl Session {
    /// Handles COM_QUERY.
    pub(super) async fn query(&mut self, payload: &[u8]) -> Flow {
        let qa = self.caps.contains(CapabilityFlags::CLIENT_QUERY_ATTRIBUTES);
        let sql_bytes = match query_attrs::query_sql(payload, qa) {
            Ok(split) => split.sql,
            Err(err) => return self.reply_err(&err).await,
        };
        // KILL takes causeway's connection ids and is owner-checked here; a
        // KILL the proxy cannot answer itself never reaches a backend.
        match kill_check(sql_bytes) {
            KillCheck::None => {}
            KillCheck::Whole(text) => return self.kill_text(&text).await,
            KillCheck::Embedded(what) => return self.reply_err(&unsupported_kill(what)).await,
        }
        // Non-UTF-8 text (binary literals) is not understood: primary.
        let sql = std::str::from_utf8(sql_bytes).unwrap_or("/* binary */ DO 0");
        if let Some(column) = super::multiplex::connection_id_query(sql) {
            return self.reply_connection_id(&column).await;
        }
        // causeway's own sessions, in every pool mode (processlist.rs)
        if let Some(q) = causeway_classify::processlist_query(sql) {
            return self.processlist(&q).await;
        }
        let c = classify(sql);
        let replayable = sets_session_state(&c) && is_single_statement(sql);
        if replayable {
            if let Err(err) = sets::admit(&self.sets, sql) {
                return self.reply_err(&err).await;
            }
        }
        self.refresh_topology();
        // hostile-sized causeway options are refused before their parsers run
        if let Err(e) = consistency::check_options_len(sql, c.effects.causeway_var) {
            return self.reply_err(&option_error(&e)).await;
        }
        if c.effects.causeway_var {
            return self.causeway(sql).await;
        }
        let (mode, stmt_token, sticky) = match self.statement_options(sql) {
            Ok(options) => options,
            Err(err) => return self.reply_err(&err).await,
        };
        self.cursor.set_sticky_once(sticky);
        let (target, reason) = self.route.decide(&c);
        let (target, mode) = match self.apply_rules(sql, &c, target, mode).await {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        // fresh: a causal read with the implicit token (frontend/fresh.rs)
        let fresh = self.fresh_need(mode, &target, sql).await;
        let mode = super::fresh::as_causal(mode);
        let (token, borrowed) = match (stmt_token, fresh) {
            (stmt, Some(mut need)) => {
                need.union(&self.settings.token);
                if let Some(t) = stmt {
                    need.union(&t);
                }
                (need, false)
            }
            (Some(mut t), None) => {
                t.union(&self.settings.token);
                (t, false)
            }
            (None, None) => (std::mem::take(&mut self.settings.token), true),
        };
        self.obs.start(reason, mode, !token.is_empty());
        let fill = match self
            .cache_before(CacheStmt::Text(sql), &c, &target, mode, &token)
            .await
        {
            Before::Hit(flow) => {
                self.observe(&c, sql, None);
                self.end_rules();
                if borrowed {
                    self.restore_token(token);
                }
                return flow;
            }
            Before::Fill(f) => Some(f),
            Before::Skip => None,
        };
        let started = Instant::now();
        self.needs_insert_id =
            self.mode == PoolMode::Transaction && reads_last_insert_id(sql_bytes);
        self.pipe_ok = self.may_pipeline(&c, &target, sql, fill.is_some());
        let (flow, sent, outcome) = self
            .run_cmd(&target, mode, &token, &Cmd::Raw(payload), Expect::Query)
            .await;
        self.needs_insert_id = false;
        self.pipe_ok = false;
        self.end_rules();
        if borrowed {
            self.restore_token(token);
        }
        self.cache_after(fill, &c, sql, sent.as_ref(), outcome.as_ref());
        self.fresh_after(&c, sql, outcome.as_ref());
        if let (Some(sent), Some(outcome)) = (sent, outcome) {
            tracing::debug!(conn = self.id, route = %sent.label(), reason, "statement routed");
            self.after_statement(&c, sql, &sent, &outcome, started);
        }
        flow
    }

    /// The consistency mode, the token to add to the session's and the
    /// sticky key that a leading `/* causeway ... */` comment sets for
    /// statement `sql` alone.
    fn statement_options(&self, sql: &str) -> Result<StatementOptions, ErrPacket> {
        let mut mode = self.settings.mode;
        let mut stmt_token: Option<GtidSet> = None;
        let mut sticky = None;
        if let Some(opts) = leading_comment_options(sql) {
            let mut probe = self.settings.clone();
            for (k, v) in opts {
                let r = match k.as_str() {
                    "token" => probe
                        .set("token", &v)
                        .map(|_| stmt_token = Some(probe.token.clone())),
                    "consistency" => probe.set("consistency", &v).map(|_| mode = probe.mode),
                    "sticky_key" => probe
                        .set("sticky_key", &v)
                        .map(|_| sticky = probe.sticky_key.clone()),
                    _ => Ok(()),
                };
                r.map_err(|e| option_error(&e))?;
            }
        }
        Ok((mode, stmt_token, sticky))
    }

    /// Puts the session token back after a statement ran with it taken out
    /// (no clone on the hot path), keeping what the statement added.
    pub(super) fn restore_token(&mut self, token: GtidSet) {
        let added = std::mem::replace(&mut self.settings.token, token);
        if !added.is_empty() {
            self.settings.token.union(&added);
        }
    }

    /// Bookkeeping after a statement ran: routing state, replayable session
    /// variables, schema, token, last route, metrics.
    pub(super) fn after_statement(
        &mut self,
        c: &Classification,
        sql: &str,
        sent: &Sent,
        outcome: &Outcome,
        started: Instant,
    ) {
        let is_primary = sent.backend.role == Role::Primary;
        let ok = outcome.error.is_none();
        let was_pinned = self.route.pinned.is_some();
        self.route.after(
            c,
            sent.backend.name(),
            is_primary,
            ok.then_some(outcome.status),
        );
        self.last_route = Some(sent.clone());
        if let Some(h) = self
            .held
            .iter()
            .find(|h| h.conn.server == sent.backend.name())
        {
            if h.conn.db != self.db && h.conn.db.is_some() {
                self.db = h.conn.db.clone();
            }
        }
        if ok && sets_session_state(c) {
            if !sql.is_empty() && is_single_statement(sql) {
                // a later SET of the same variables replaces earlier ones
                for i in sets::replaced(&self.sets, sql).into_iter().rev() {
                    self.sets.remove(i);
                    for h in &mut self.held {
                        if h.applied_sets > i {
                            h.applied_sets -= 1;
                        }
                    }
                }
                self.sets.push(sql.to_string());
                let n = self.sets.len();
                if let Some(h) = self
                    .held
                    .iter_mut()
                    .find(|h| h.conn.server == sent.backend.name())
                {
                    h.applied_sets = n;
                    h.conn.sets.clone_from(&self.sets);
                }
            } else {
                self.route.pin("SET inside a multi-statement");
            }
        }
        self.note_pin(c, was_pinned, sent.backend.name());
        // FOUND_ROWS() after SQL_CALC_FOUND_ROWS reads the same connection
        let found_rows = calcs_found_rows(sql.as_bytes());
        self.keep_diagnostics(!ok || found_rows, sent.backend.name());
        let handles = sent.backend.metrics();
        if sent.via == Via::Fallback {
            handles.fallbacks.increment(1);
        } else if is_primary && c.route == causeway_classify::Route::Replica {
            handles.primary_reads.increment(1);
        } else {
            handles.statements.increment(1);
        }
        handles.latency.record(started.elapsed().as_secs_f64());
        self.observe(c, sql, Some(outcome));
    }

    /// `SELECT @@causeway.x`, `SET @@causeway.x = v`, `SHOW CAUSEWAY BACKENDS`.
    async fn causeway(&mut self, sql: &str) -> Flow {
        match causeway_command(sql) {
            Some(CausewayCommand::Get(items)) => {
                let mut row = Vec::with_capacity(items.len());
                for item in &items {
                    match self.causeway_var(&item.name) {
                        Some(v) => row.push(v),
                        None => {
                            let err = ErrPacket::new(
                                1193,
                                "HY000",
                                format!("Unknown system variable 'causeway.{}'", item.name),
                            );
                            return self.reply_err(&err).await;
                        }
                    }
                }
                let cols: Vec<&str> = items.iter().map(|i| i.column.as_str()).collect();
                self.reply_rows(&cols, &[row]).await
            }
            Some(CausewayCommand::Set(pairs)) => {
                let mut next = self.settings.clone();
                for (k, v) in &pairs {
                    if let Err(e) = next.set(k, v) {
                        return self.reply_err(&option_error(&e)).await;
                    }
                }
                self.settings = next;
                self.cursor.set_sticky(self.settings.sticky_key.clone());
                self.reply_ok().await
            }
            Some(CausewayCommand::ShowRules) => self.show_rules().await,
            Some(CausewayCommand::ShowCache) => self.show_cache().await,
            Some(cmd @ (CausewayCommand::ShowDigests | CausewayCommand::ResetDigests)) => {
                self.digests_command(&cmd).await
            }
            Some(CausewayCommand::ShowBackends) => {
                if !self.user.admin {
                    return self.reply_err(&super::admin_rows::not_admin()).await;
                }
                let rows = super::admin_rows::backends(&self.topo, &self.ctx.failover.status());
                let cols = super::admin_rows::BACKEND_COLUMNS;
                self.reply_rows(cols, &rows).await
            }
            None => {
                let err = ErrPacket::new(
                    1064,
                    "42000",
                    "causeway: unsupported use of @@causeway variables; use SELECT @@causeway.x or SET @@causeway.x = value alone",
                );
                self.reply_err(&err).await
            }
        }
    }

    fn causeway_var(&self, name: &str) -> Option<Option<String>> {
        let s = &self.settings;
        Some(match name {
            "last_route" => Some(
                self.last_route
                    .as_ref()
                    .map(Sent::label)
                    .unwrap_or_default(),
            ),
            "token" => Some(causeway_gtid::token_text(&s.token)),
            "consistency" => Some(s.mode.as_str().to_string()),
            "wait_timeout_ms" => Some(s.wait_timeout.as_millis().to_string()),
            "on_timeout" => Some(s.on_timeout.as_str().to_string()),
            "max_lag_ms" => s.max_lag_ms.map(|v| v.to_string()),
            "sticky_key" => s.sticky_key.as_deref().map(str::to_string),
            // binlog reader lag over its last transactions: "p50_ms,p99_ms"
            "binlog_lag_ms" => {
                self.ctx.binlog.lag_quantiles().map(|(a, b)| {
                    format!("{:.3},{:.3}", a.as_secs_f64() * 1e3, b.as_secs_f64() * 1e3)
                })
            }
            _ => return None,
        })
    }

    /// A whole-statement `KILL`: causeway's own, or refused (1064).
    async fn kill_text(&mut self, text: &str) -> Flow {
        match registry::parse_kill(text) {
            Some(k) => self.kill(k).await,
            None => {
                let err = ErrPacket::new(
                    1064,
                    "42000",
                    "causeway understands KILL [CONNECTION | QUERY] <id> with a causeway connection id",
                );
                self.reply_err(&err).await
            }
        }
    }

    /// `KILL [QUERY | CONNECTION] id` for a causeway connection id: the
    /// target's running statement is killed on its backend with the target's
    /// own backend login; KILL CONNECTION also ends the target session.
    pub(super) async fn kill(&mut self, k: Kill) -> Flow {
        let Some(target) = self.ctx.sessions.get(k.id) else {
            let err = ErrPacket::new(1094, "HY000", format!("Unknown thread id: {}", k.id));
            return self.reply_err(&err).await;
        };
        let owner = target.user() == self.user.name;
        if !owner && !self.user.admin {
            let err = ErrPacket::new(
                1095,
                "HY000",
                format!("You are not owner of thread {}", k.id),
            );
            return self.reply_err(&err).await;
        }
        if k.id == self.id && !k.query_only {
            let err = ErrPacket::new(1317, "70100", "Query execution was interrupted");
            self.reply_err(&err).await;
            return Flow::Quit;
        }
        target.begin_kill();
        if let Some((addr, thread_id)) = target.running() {
            {
                let login = target.login();
                let key = LinkKey {
                    user: login.user.clone(),
                    caps: 0,
                    collation: 255,
                };
                let timeout = self.topo.config.server.connect_timeout();
                let tls = &self.topo.primary.pool.config().tls;
                match BackendConn::connect_with("kill", &addr, &login, (key, None), timeout, tls)
                    .await
                {
                    Ok(mut c) => {
                        // 1094: the statement finished meanwhile; fine
                        let _ = c.query_ok(&format!("KILL QUERY {thread_id}")).await;
                    }
                    Err(e) => {
                        let err = ErrPacket::new(
                            2003,
                            "HY000",
                            format!("causeway: cannot reach {addr} to kill the query: {e}"),
                        );
                        return self.reply_err(&err).await;
                    }
                }
            }
        }
        // wakes a causal wait of the target too (it kills its own replica
        // thread); KILL CONNECTION also ends the session
        target.signal_kill(k.query_only);
        self.reply_ok().await
    }

    pub(super) async fn reply_rows(&mut self, cols: &[&str], rows: &[Vec<Option<String>>]) -> Flow {
        let status = self.status & 0x0003;
        let payloads = local::text_result_set(self.caps, status, cols, rows);
        let mut seq = 1;
        for p in &payloads {
            self.client.queue(&mut seq, p);
        }
        match self.client.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }
}

/// 1235 / 42000 for a `KILL` causeway cannot check (`what` says where it
/// was: inside an executable comment, a multi-statement, a prepared
/// statement): on a backend it would take a backend thread id, and MySQL
/// checks only the backend account, which several causeway users may share.
pub(super) fn unsupported_kill(what: &str) -> ErrPacket {
    ErrPacket::new(
        1235,
        "42000",
        format!("This version of causeway doesn't yet support '{what}'; send KILL [CONNECTION | QUERY] <id> alone"),
    )
}

/// The client's error for a refused `@@causeway.*` value or option.
fn option_error(e: &ConsistencyError) -> ErrPacket {
    let (code, state) = e.code();
    ErrPacket::new(code, state, e.to_string())
}

/// Whether `sql` holds one statement (a trailing `;` allowed), judged
/// conservatively: any other `;` counts as a second statement.
pub(super) fn is_single_statement(sql: &str) -> bool {
    let t = sql.trim().trim_end_matches(';');
    !t.contains(';')
}

/// Whether `c` sets session state the SET replay list carries to every
/// backend connection the session uses later: session variables, and
/// `autocommit` (a connection left with autocommit off must never serve
/// another client as if it were on).
fn sets_session_state(c: &Classification) -> bool {
    // `SET TRANSACTION` (no scope) is for the next transaction only: it
    // stays on its connection, which the router keeps (`crate::router`)
    (c.effects.set_session || c.effects.set_autocommit.is_some()) && !c.effects.next_transaction
}
