//! COM_STMT_* commands: prepare where the statement will run, execute with
//! per-backend ids (preparing lazily on another backend when routing sends
//! it there), long data, fetch, reset and close.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::cached::{Before, CacheStmt};
use super::failure::Failure;
use super::route::Sent;
use super::session::{stmt_id_of, Flow, Session};
use super::stmt::{with_stmt_id, Stmt, MAX_PREPARED_BYTES, MAX_PREPARED_STMTS};
use crate::backend::stmt_cache::{sets_fingerprint, PrepState, STMT_CACHE_MAX};
use crate::consistency::{self, Choice};
use crate::protocol::{query_attrs, ErrPacket};
use crate::relay::{self, Expect};
use crate::router::Target;
use crate::topology::Backend;
use causeway_classify::reads_last_insert_id;
use causeway_config::PoolMode;
use mysql_common::constants::CapabilityFlags;

/// A command to run on whichever backend routing picks.
pub(super) enum Cmd<'a> {
    /// Forwarded as is.
    Raw(&'a [u8]),
    /// COM_STMT_EXECUTE of client statement `id`.
    Execute(u32, &'a [u8]),
}

/// 1235 / 42000: the client's query attributes cannot reach a backend
/// that did not negotiate CLIENT_QUERY_ATTRIBUTES.
fn no_attributes(b: &Backend) -> ErrPacket {
    ErrPacket::new(
        1235,
        "42000",
        format!(
            "causeway: backend '{}' does not support query attributes; send the statement without them",
            b.name()
        ),
    )
}

fn unknown_stmt(id: u32, what: &str) -> ErrPacket {
    ErrPacket::new(
        1243,
        "HY000",
        format!("Unknown prepared statement handler ({id}) given to {what}"),
    )
}

/// Most statements kept per backend connection: bounded in `transaction`
/// pool mode, where connections are shared; in `session` mode a statement
/// lives until the client closes it (the session caps the count).
fn cache_max(mode: PoolMode) -> usize {
    match mode {
        PoolMode::Transaction => STMT_CACHE_MAX,
        PoolMode::Session => usize::MAX,
    }
}

/// 1461 / 42000, as MySQL answers beyond `max_prepared_stmt_count` (with
/// its own text when the session's statements exceed their byte budget
/// instead).
fn too_many_statements(count: usize) -> ErrPacket {
    let message = if count >= MAX_PREPARED_STMTS {
        format!(
            "Can't create more than max_prepared_stmt_count statements (current value: {MAX_PREPARED_STMTS})"
        )
    } else {
        format!(
            "causeway: the prepared statements of this session would hold more than {MAX_PREPARED_BYTES} bytes of SQL; close some first"
        )
    };
    ErrPacket::new(1461, "42000", message)
}

impl Session {
    /// A held connection to `b` and the payload to send there for `cmd`;
    /// without `wait` a full pool fails at once.
    pub(super) async fn prepare_cmd<'a>(
        &mut self,
        b: &Arc<Backend>,
        cmd: &Cmd<'a>,
        wait: bool,
    ) -> Result<(usize, Cow<'a, [u8]>), Failure> {
        let idx = self.link(b, wait).await?;
        let qa = CapabilityFlags::CLIENT_QUERY_ATTRIBUTES;
        let link_lacks_qa = self.caps.contains(qa)
            && self
                .held
                .get(idx)
                .is_some_and(|h| !h.conn.caps.contains(qa));
        match cmd {
            // a backend without query attributes (MySQL before 8.0.23)
            Cmd::Raw(p) if link_lacks_qa && p.first() == Some(&0x03) => {
                let q = query_attrs::without_attributes(p)
                    .ok_or_else(|| Failure::refused(no_attributes(b)))?;
                Ok((idx, Cow::Owned(q)))
            }
            Cmd::Execute(..) if link_lacks_qa => Err(Failure::refused(no_attributes(b))),
            Cmd::Raw(p) => Ok((idx, Cow::Borrowed(*p))),
            Cmd::Execute(id, p) => {
                let id = *id;
                let bid = self.ensure_prepared(idx, id, b.name()).await?;
                let unknown = || Failure::refused(unknown_stmt(id, "mysqld_stmt_execute"));
                let stmt = self.stmts.get_mut(id).ok_or_else(unknown)?;
                stmt.last_backend = Some(b.name().to_string());
                let payload = stmt
                    .execute_payload(p, bid, self.caps.contains(qa))
                    .ok_or_else(unknown)?;
                Ok((idx, Cow::Owned(payload)))
            }
        }
    }

    /// The id of client statement `id` on held connection `idx`, preparing
    /// it there first unless that connection already has it (by SQL text).
    async fn ensure_prepared(
        &mut self,
        idx: usize,
        id: u32,
        backend: &str,
    ) -> Result<u32, Failure> {
        let max = cache_max(self.mode);
        let stmt = self
            .stmts
            .get(id)
            .ok_or_else(|| Failure::refused(unknown_stmt(id, "mysqld_stmt_execute")))?;
        let Some(h) = self.held.get_mut(idx) else {
            return Err(Failure::lost(backend));
        };
        let state = PrepState {
            db: h.conn.db.as_deref(),
            sets: sets_fingerprint(&h.conn.sets),
        };
        if let Some(bid) = h.conn.stmts.get(&stmt.prepare, state) {
            return Ok(bid);
        }
        let mut seq = 0;
        h.conn.io.queue(&mut seq, &stmt.prepare);
        let sent = h.conn.io.flush().await;
        let out = match sent {
            Ok(()) => relay::discard(&mut h.conn, &mut self.client, Expect::Prepare)
                .await
                .ok(),
            Err(_) => None,
        };
        let Some(out) = out else {
            self.drop_conn(idx);
            return Err(Failure::lost(backend));
        };
        if let Some(err) = out.error {
            return Err(Failure::refused(err));
        }
        let Some((bid, _, _)) = out.prepared else {
            return Err(Failure::lost(backend));
        };
        let state = PrepState {
            db: h.conn.db.as_deref(),
            sets: sets_fingerprint(&h.conn.sets),
        };
        let close = h.conn.stmts.insert(&stmt.prepare, state, bid, max);
        if h.conn.close_stmts(&close).await.is_err() {
            self.drop_conn(idx);
            return Err(Failure::lost(backend));
        }
        Ok(bid)
    }

    /// COM_STMT_PREPARE: prepared on the backend its statement would run on.
    /// Refused (the session lives on) beyond the per-session caps, and for
    /// a `KILL` in any form: prepared on a backend it would take a backend
    /// thread id, unchecked by causeway.
    pub(super) async fn prepare(&mut self, payload: &[u8]) -> Flow {
        let sql_bytes = payload.get(1..).unwrap_or_default();
        if self.stmts.is_full(payload.len()) {
            return self.reply_err(&too_many_statements(self.stmts.len())).await;
        }
        if causeway_classify::kill_check(sql_bytes) != causeway_classify::KillCheck::None {
            let err = super::query::unsupported_kill("KILL as a prepared statement");
            return self.reply_err(&err).await;
        }
        let sql = String::from_utf8_lossy(sql_bytes);
        let class = causeway_classify::classify(&sql);
        self.refresh_topology();
        let b = match self.route.decide(&class).0 {
            // Prepared on a replica only if it already has the session's
            // token (it may lack the schema or tables otherwise); else on the
            // primary. Executions prepare again, lazily, where they run.
            Target::Replica | Target::ReadOnlyTransaction => {
                match consistency::choose(
                    &self.topo,
                    self.settings.mode,
                    &self.settings.token,
                    self.settings.max_lag_ms,
                    &[],
                    &mut self.cursor,
                ) {
                    Choice::Serve(b) => b,
                    Choice::WaitFor(_) | Choice::Primary(_) => Arc::clone(&self.topo.primary),
                }
            }
            Target::Backend(name) => self
                .topo
                .backend(&name)
                .cloned()
                .unwrap_or_else(|| Arc::clone(&self.topo.primary)),
            Target::Primary => Arc::clone(&self.topo.primary),
        };
        let client_id = self.stmts.next_id();
        let (flow, outcome) = self
            .forward(&b, payload, Expect::Prepare, Some(client_id))
            .await;
        if let Some((bid, _cols, params)) = outcome.and_then(|o| o.prepared) {
            let max = cache_max(self.mode);
            if let Some(h) = self.held.iter_mut().find(|h| h.conn.server == b.name()) {
                let state = PrepState {
                    db: h.conn.db.as_deref(),
                    sets: sets_fingerprint(&h.conn.sets),
                };
                let close = h.conn.stmts.insert(payload, state, bid, max);
                if h.conn.close_stmts(&close).await.is_err() {
                    h.conn.broken = true;
                }
            }
            self.stmts.insert(
                client_id,
                Stmt {
                    prepare: payload.to_vec(),
                    class,
                    params,
                    types: None,
                    long_data_on: None,
                    last_backend: Some(b.name().to_string()),
                },
            );
        }
        flow
    }

    /// COM_STMT_EXECUTE: routed like the statement's SQL.
    pub(super) async fn execute(&mut self, payload: &[u8]) -> Flow {
        let id = stmt_id_of(payload);
        let Some(stmt) = self.stmts.get(id) else {
            return self
                .reply_err(&unknown_stmt(id, "mysqld_stmt_execute"))
                .await;
        };
        let class = stmt.class.clone();
        // the cache key's statement part: text, remembered types, payload
        let keyed = (self.ctx.cache.is_some() && payload.get(5) == Some(&0)).then(|| {
            let text = String::from_utf8_lossy(stmt.prepare.get(1..).unwrap_or_default());
            // types the payload does not carry are the ones bound before
            let bound_at = 10 + usize::from(stmt.params).div_ceil(8);
            let carried = stmt.params == 0 || payload.get(bound_at) == Some(&1);
            let types = if carried { None } else { stmt.types.clone() };
            (text.into_owned(), types.unwrap_or_default())
        });
        let (target, decided) = match &stmt.long_data_on {
            Some(b) => (Target::Backend(b.clone()), "long data"),
            None => self.route.decide(&class),
        };
        self.refresh_topology();
        let mode = self.settings.mode;
        let (target, mode) = match self.apply_stmt_rules(id, &class, target, mode).await {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let text = self
            .stmts
            .get(id)
            .map(|s| String::from_utf8_lossy(s.prepare.get(1..).unwrap_or_default()).into_owned());
        let fresh = self
            .fresh_need(mode, &target, text.as_deref().unwrap_or(""))
            .await;
        let mode = super::fresh::as_causal(mode);
        let token = std::mem::take(&mut self.settings.token);
        // a fresh read runs with the implicit token; the session's is kept
        let run_token = fresh.map(|mut need| {
            need.union(&token);
            need
        });
        self.obs
            .start(decided, mode, run_token.is_some() || !token.is_empty());
        let mut fill = None;
        if let Some((sql, types)) = &keyed {
            let params = payload.get(5..).unwrap_or_default();
            let stmt = CacheStmt::Execute { sql, types, params };
            let t = run_token.as_ref().unwrap_or(&token);
            match self.cache_before(stmt, &class, &target, mode, t).await {
                Before::Hit(flow) => {
                    self.observe(&class, sql, None);
                    self.restore_token(token);
                    self.end_rules();
                    return flow;
                }
                Before::Fill(f) => fill = Some(f),
                Before::Skip => {}
            }
        }
        let started = Instant::now();
        self.needs_insert_id = self.mode == PoolMode::Transaction
            && self
                .stmts
                .get(id)
                .is_some_and(|s| reads_last_insert_id(s.prepare.get(1..).unwrap_or_default()));
        let (flow, sent, outcome) = self
            .run_cmd(
                &target,
                mode,
                run_token.as_ref().unwrap_or(&token),
                &Cmd::Execute(id, payload),
                Expect::Execute,
            )
            .await;
        self.needs_insert_id = false;
        self.restore_token(token);
        self.end_rules();
        let sql = keyed.as_ref().map_or("", |k| k.0.as_str());
        self.cache_after(fill, &class, sql, sent.as_ref(), outcome.as_ref());
        let text = text.unwrap_or_default();
        self.fresh_after(&class, &text, outcome.as_ref());
        // the digest of the prepared text (placeholders are already `?`)
        self.observe(&class, &text, outcome.as_ref());
        if let Some(s) = self.stmts.get_mut(id) {
            s.long_data_on = None;
        }
        self.stmt_holds.retain(|(i, _)| *i != id);
        if let (Some(sent), Some(outcome)) = (sent, outcome) {
            let sent: Sent = sent;
            // a cursor lives on this connection until reset or close
            let cursor = payload.get(5).is_some_and(|f| f & 0x07 != 0);
            if cursor && outcome.error.is_none() {
                self.stmt_holds.push((id, sent.backend.name().to_string()));
            }
            self.after_statement(&class, "", &sent, &outcome, started);
        }
        flow
    }

    /// COM_STMT_SEND_LONG_DATA: no reply. Sent to the primary (where the
    /// execution must then run), whose connection the session keeps until
    /// that execution.
    pub(super) async fn long_data(&mut self, payload: &[u8]) -> Flow {
        let id = stmt_id_of(payload);
        let Some(stmt) = self.stmts.get(id) else {
            return Flow::Continue;
        };
        let backend = match &stmt.long_data_on {
            Some(name) => self.topo.backend(name).cloned(),
            None => None,
        }
        .unwrap_or_else(|| Arc::clone(&self.topo.primary));
        let Ok(idx) = self.conn_for(&backend).await else {
            return Flow::Continue;
        };
        let Ok(bid) = self.ensure_prepared(idx, id, backend.name()).await else {
            return Flow::Continue;
        };
        if let Some(s) = self.stmts.get_mut(id) {
            s.long_data_on = Some(backend.name().to_string());
        }
        if !self.stmt_holds.iter().any(|(i, _)| *i == id) {
            self.stmt_holds.push((id, backend.name().to_string()));
        }
        if let (Some(h), Some(p)) = (self.held.get_mut(idx), with_stmt_id(payload, bid)) {
            let mut seq = 0;
            h.conn.io.queue(&mut seq, &p);
            if h.conn.io.flush().await.is_err() {
                h.conn.broken = true;
            }
        }
        Flow::Continue
    }

    /// COM_STMT_CLOSE: no reply. The statement is closed on the held
    /// connections that have it, unless another statement of the session
    /// has the same text; connections given back keep it in their cache.
    pub(super) async fn close_stmt(&mut self, payload: &[u8]) -> Flow {
        let id = stmt_id_of(payload);
        self.stmt_holds.retain(|(i, _)| *i != id);
        let Some(stmt) = self.stmts.remove(id) else {
            return Flow::Continue;
        };
        if self.stmts.has_text(&stmt.prepare) {
            return Flow::Continue;
        }
        for h in &mut self.held {
            let ids = h.conn.stmts.remove(&stmt.prepare);
            // close_stmts sends nothing for no ids
            if h.conn.close_stmts(&ids).await.is_err() {
                h.conn.broken = true;
            }
        }
        Flow::Continue
    }

    /// COM_STMT_FETCH and COM_STMT_RESET: to the connection of the
    /// statement's cursor or long data, else of its last execution when it
    /// is still held. A RESET with no such connection has nothing to reset
    /// on any backend; a FETCH gets MySQL's 1421 (no open cursor).
    pub(super) async fn stmt_follow_up(
        &mut self,
        payload: &[u8],
        expect: Expect,
        what: &str,
    ) -> Flow {
        let id = stmt_id_of(payload);
        let is_reset = payload.first() == Some(&0x1A);
        let held_for = self
            .stmt_holds
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone());
        let Some(stmt) = self.stmts.get_mut(id) else {
            return self.reply_err(&unknown_stmt(id, what)).await;
        };
        if is_reset {
            stmt.long_data_on = None;
        }
        let backend = held_for.or_else(|| stmt.last_backend.clone());
        let prepare = &stmt.prepare;
        let found = backend.and_then(|name| {
            self.held.iter_mut().enumerate().find_map(|(i, h)| {
                if h.conn.server != name {
                    return None;
                }
                let state = PrepState {
                    db: h.conn.db.as_deref(),
                    sets: sets_fingerprint(&h.conn.sets),
                };
                h.conn.stmts.get(prepare, state).map(|bid| (i, bid))
            })
        });
        if is_reset {
            self.stmt_holds.retain(|(i, _)| *i != id);
        }
        let Some((idx, bid)) = found else {
            if is_reset {
                return self.reply_ok().await;
            }
            let err = ErrPacket::new(
                1421,
                "HY000",
                format!("The statement ({id}) has no open cursor."),
            );
            return self.reply_err(&err).await;
        };
        let Some(p) = with_stmt_id(payload, bid) else {
            return self.reply_err(&unknown_stmt(id, what)).await;
        };
        let relayed = self.forward_on(idx, &p, expect, None).await;
        self.settle(relayed).await.0
    }
}
