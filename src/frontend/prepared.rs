//! COM_STMT_* commands: prepare where the statement will run, execute with
//! per-backend ids (preparing lazily on another backend when routing sends
//! it there), long data, fetch, reset and close.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::cached::{Before, CacheStmt};
use super::query::Sent;
use super::session::{stmt_id_of, Flow, Session};
use super::stmt::{with_stmt_id, Copy, Stmt, MAX_PREPARED_BYTES, MAX_PREPARED_STMTS};
use crate::consistency::{self, Choice};
use crate::protocol::ErrPacket;
use crate::relay::{self, Expect};
use crate::router::Target;
use crate::topology::Backend;

/// A command to run on whichever backend routing picks.
pub(super) enum Cmd<'a> {
    /// Forwarded as is.
    Raw(&'a [u8]),
    /// COM_STMT_EXECUTE of client statement `id`.
    Execute(u32, &'a [u8]),
}

fn unknown_stmt(id: u32, what: &str) -> ErrPacket {
    ErrPacket::new(
        1243,
        "HY000",
        format!("Unknown prepared statement handler ({id}) given to {what}"),
    )
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
    /// A held connection to `b` and the payload to send there for `cmd`.
    pub(super) async fn prepare_cmd<'a>(
        &mut self,
        b: &Arc<Backend>,
        cmd: &Cmd<'a>,
    ) -> Result<(usize, Cow<'a, [u8]>), ErrPacket> {
        let idx = self.conn_for(b).await?;
        match cmd {
            Cmd::Raw(p) => Ok((idx, Cow::Borrowed(*p))),
            Cmd::Execute(id, p) => {
                let id = *id;
                let stmt = self
                    .stmts
                    .get(id)
                    .ok_or_else(|| unknown_stmt(id, "mysqld_stmt_execute"))?;
                if stmt.copy_on(b.name()).is_none() {
                    let prepare = stmt.prepare.clone();
                    let Some(h) = self.held.get_mut(idx) else {
                        return Err(super::session::lost_backend(b.name()));
                    };
                    let mut seq = 0;
                    h.conn.io.queue(&mut seq, &prepare);
                    let sent = h.conn.io.flush().await;
                    let out = match sent {
                        Ok(()) => relay::discard(&mut h.conn, &mut self.client, Expect::Prepare)
                            .await
                            .ok(),
                        Err(_) => None,
                    };
                    let Some(out) = out else {
                        self.drop_conn(idx);
                        return Err(super::session::lost_backend(b.name()));
                    };
                    if let Some(err) = out.error {
                        return Err(err);
                    }
                    let Some((bid, _, _)) = out.prepared else {
                        return Err(super::session::lost_backend(b.name()));
                    };
                    if let Some(s) = self.stmts.get_mut(id) {
                        s.copies.push(Copy {
                            backend: b.name().to_string(),
                            id: bid,
                            executed: false,
                        });
                    }
                }
                let stmt = self
                    .stmts
                    .get_mut(id)
                    .ok_or_else(|| unknown_stmt(id, "mysqld_stmt_execute"))?;
                stmt.last_backend = Some(b.name().to_string());
                let payload = stmt
                    .execute_payload(p, b.name())
                    .ok_or_else(|| unknown_stmt(id, "mysqld_stmt_execute"))?;
                Ok((idx, Cow::Owned(payload)))
            }
        }
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
        if self.route.trx.is_none() {
            self.topo = self.proxy.topology.load_full();
        }
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
                    Choice::Replica(b) => b,
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
            self.stmts.insert(
                client_id,
                Stmt {
                    prepare: payload.to_vec(),
                    class,
                    params,
                    copies: vec![Copy {
                        backend: b.name().to_string(),
                        id: bid,
                        executed: false,
                    }],
                    types: None,
                    long_data_on: None,
                    last_backend: None,
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
        let keyed = (self.proxy.cache.is_some() && payload.get(5) == Some(&0)).then(|| {
            let text = String::from_utf8_lossy(stmt.prepare.get(1..).unwrap_or_default());
            // types the payload does not carry are the ones bound before
            let bound_at = 10 + usize::from(stmt.params).div_ceil(8);
            let carried = stmt.params == 0 || payload.get(bound_at) == Some(&1);
            let types = if carried { None } else { stmt.types.clone() };
            (text.into_owned(), types.unwrap_or_default())
        });
        let target = match &stmt.long_data_on {
            Some(b) => Target::Backend(b.clone()),
            None => self.route.decide(&class).0,
        };
        if self.route.trx.is_none() {
            self.topo = self.proxy.topology.load_full();
        }
        let mode = self.settings.mode;
        let (target, mode) = match self.apply_stmt_rules(id, &class, target, mode).await {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let token = std::mem::take(&mut self.settings.token);
        let mut fill = None;
        if let Some((sql, types)) = &keyed {
            let params = payload.get(5..).unwrap_or_default();
            let stmt = CacheStmt::Execute { sql, types, params };
            match self.cache_before(stmt, &class, &target, mode, &token).await {
                Before::Hit(flow) => {
                    self.restore_token(token);
                    self.end_rules();
                    return flow;
                }
                Before::Fill(f) => fill = Some(f),
                Before::Skip => {}
            }
        }
        let started = Instant::now();
        let (flow, sent, outcome) = self
            .run_cmd(
                &target,
                mode,
                &token,
                &Cmd::Execute(id, payload),
                Expect::Execute,
            )
            .await;
        self.restore_token(token);
        self.end_rules();
        let sql = keyed.as_ref().map_or("", |k| k.0.as_str());
        self.cache_after(fill, &class, sql, sent.as_ref(), outcome.as_ref());
        if let Some(s) = self.stmts.get_mut(id) {
            s.long_data_on = None;
        }
        if let (Some(sent), Some(outcome)) = (sent, outcome) {
            let sent: Sent = sent;
            self.after_statement(&class, "", &sent, &outcome, started);
        }
        flow
    }

    /// COM_STMT_SEND_LONG_DATA: no reply; the execution must then run where
    /// the data went.
    pub(super) async fn long_data(&mut self, payload: &[u8]) -> Flow {
        let id = stmt_id_of(payload);
        let Some(stmt) = self.stmts.get(id) else {
            return Flow::Continue;
        };
        let Some(backend) = stmt
            .long_data_on
            .clone()
            .or_else(|| stmt.home().map(str::to_string))
        else {
            return Flow::Continue;
        };
        let Some(copy) = stmt.copy_on(&backend).cloned() else {
            return Flow::Continue;
        };
        if let Some(s) = self.stmts.get_mut(id) {
            s.long_data_on = Some(backend.clone());
        }
        self.send_no_reply(&backend, payload, copy.id).await;
        Flow::Continue
    }

    /// COM_STMT_CLOSE: closes every copy; no reply.
    pub(super) async fn close_stmt(&mut self, payload: &[u8]) -> Flow {
        if let Some(stmt) = self.stmts.remove(stmt_id_of(payload)) {
            for c in stmt.copies {
                self.send_no_reply(&c.backend, payload, c.id).await;
            }
        }
        Flow::Continue
    }

    async fn send_no_reply(&mut self, backend: &str, payload: &[u8], backend_id: u32) {
        if let Some(h) = self.held.iter_mut().find(|h| h.conn.server == backend) {
            let Some(p) = with_stmt_id(payload, backend_id) else {
                return;
            };
            let mut seq = 0;
            h.conn.io.queue(&mut seq, &p);
            if h.conn.io.flush().await.is_err() {
                h.conn.broken = true;
            }
        }
    }

    /// COM_STMT_FETCH and COM_STMT_RESET: to the backend of the last
    /// execution.
    pub(super) async fn stmt_follow_up(
        &mut self,
        payload: &[u8],
        expect: Expect,
        what: &str,
    ) -> Flow {
        let id = stmt_id_of(payload);
        let Some(stmt) = self.stmts.get_mut(id) else {
            return self.reply_err(&unknown_stmt(id, what)).await;
        };
        if payload.first() == Some(&0x1A) {
            stmt.long_data_on = None;
        }
        let backend = stmt
            .last_backend
            .clone()
            .or_else(|| stmt.home().map(str::to_string))
            .unwrap_or_default();
        let Some(copy) = stmt.copy_on(&backend).cloned() else {
            return self.reply_err(&unknown_stmt(id, what)).await;
        };
        let Some(idx) = self.held.iter().position(|h| h.conn.server == backend) else {
            return self
                .reply_err(&super::session::lost_backend(&backend))
                .await;
        };
        let Some(p) = with_stmt_id(payload, copy.id) else {
            return self.reply_err(&unknown_stmt(id, what)).await;
        };
        self.forward_on(idx, &p, expect, None).await.0
    }
}
