//! The causal read's wait on a replica: only the part of the token the
//! replica lacks is sent to `WAIT_FOR_EXECUTED_GTID_SET`, pipelined with
//! the read; the wait ends on KILL QUERY / KILL CONNECTION of the session
//! and when the client goes away, on the replica too; a missed wait falls
//! back per `on_timeout`. A read that falls back to the writer honours
//! the token there too (`read_on_writer`): waited for, bounded, else refused.

use causeway_config::OnTimeout;
use causeway_gtid::GtidSet;
use std::sync::Arc;

use super::failure::Failure;
use super::prepared::Cmd;
use super::registry;
use super::route::{Ran, Sent, Via};
use super::session::{count_failure, Flow, Session};
use crate::metrics::{self as m, outcome};
use crate::protocol::ErrPacket;
use crate::relay::{self, Expect};
use crate::topology::Backend;

/// The shortest wait for a token on the writer when a causal read falls
/// back there (the monitor's view of the writer may be a GTID poll old).
const WRITER_WAIT_MIN: std::time::Duration = std::time::Duration::from_millis(500);

impl Session {
    /// Sends `SELECT WAIT_FOR_EXECUTED_GTID_SET(missing, timeout)` and the
    /// read to replica `b` in one flight, where `missing` is the token minus
    /// what the monitor last saw `b` execute (normalised; no wait at all when
    /// nothing is missing). If the replica reached it in time, the read's
    /// reply goes to the client; otherwise it is discarded and the read goes
    /// to the primary (or fails, per `on_timeout`). A KILL of the session
    /// ends the wait here and on the replica (see [`Session::killed_wait`]).
    pub(super) async fn read_after_wait(
        &mut self,
        b: Arc<Backend>,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
    ) -> Ran {
        if self.cursor.pool().is_some_and(|p| p.watermark) {
            return self.read_after_watermark(b, token, cmd, expect).await;
        }
        self.wait_on(b, token, cmd, expect, false).await
    }

    /// A causal read that falls back to the writer: served there when the
    /// monitor knows the writer has the token, else after waiting for it
    /// there too (a freshly promoted writer may still be applying its relay
    /// log), at least [`WRITER_WAIT_MIN`]. A token the writer does not
    /// reach in time is refused (1105), whatever `on_timeout` says: it is
    /// never answered from a server that lacks it.
    pub(super) async fn read_on_writer(
        &mut self,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
    ) -> Ran {
        let p = Arc::clone(&self.topo.primary);
        self.wait_on(p, token, cmd, expect, true).await
    }

    /// [`Session::read_after_wait`] on `b`; `writer`: `b` is the writer and
    /// a missed wait is an error, not a fallback.
    async fn wait_on(
        &mut self,
        b: Arc<Backend>,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
        writer: bool,
    ) -> Ran {
        let missing = token.difference(&b.state.view.load().gtid_executed);
        if missing.is_empty() {
            let (label, via) = if writer {
                (outcome::FALLBACK, Via::Fallback)
            } else {
                (outcome::REPLICA, Via::Direct)
            };
            metrics::counter!(m::CAUSAL_READS, "outcome" => label).increment(1);
            return self.send_to(b, via, cmd, expect).await;
        }
        let mut timeout = self.settings.wait_timeout;
        if writer {
            timeout = timeout.max(WRITER_WAIT_MIN);
        }
        if timeout.is_zero() {
            return self.missed(writer, token, cmd, expect, None).await;
        }
        let (idx, payload) = match self.prepare_cmd(&b, cmd, true).await {
            Ok(prepared) => prepared,
            Err(f) => {
                tracing::warn!(conn = self.id, backend = %b.name(), error = %f.err, "causal read could not reach its replica");
                count_failure(&f);
                return self.missed(writer, token, cmd, expect, Some(&f.err)).await;
            }
        };
        let flavor = self
            .held
            .get(idx)
            .map(|h| h.conn.flavor)
            .unwrap_or_default();
        let Some(wait) = super::causal_sql::wait_sql(flavor, &missing, timeout, writer) else {
            // a MySQL token on a MariaDB server (or the reverse): never reached
            return self.missed(writer, token, cmd, expect, None).await;
        };
        let mut kills = self.shared.subscribe_kills();
        let Some(h) = self.held.get_mut(idx) else {
            return (self.reply_err(&lost_wait()).await, None, None);
        };
        let client = self.client.tcp();
        let wait_start = std::time::Instant::now();
        let waited = tokio::select! {
            r = h.conn.pipelined_wait(&wait, &payload) => r,
            k = registry::next_kill(&mut kills) => {
                return (self.killed_wait(idx, &b, Interrupt::Kill(k)).await, None, None);
            }
            () = client_gone(client) => {
                return (self.killed_wait(idx, &b, Interrupt::ClientGone).await, None, None);
            }
        };
        self.obs.wait_us = u64::try_from(wait_start.elapsed().as_micros()).unwrap_or(u64::MAX);
        match waited {
            Ok(true) => {
                metrics::counter!(m::CAUSAL_READS, "outcome" => outcome::WAITED).increment(1);
                // the read runs now: KILL QUERY reaches it as usual
                if let Some(h) = self.held.get(idx) {
                    self.shared.start(h.slot, h.conn.thread_id);
                }
                let relayed = self.relay_reply(idx, expect, None).await;
                let (flow, out) = self.settle(relayed).await;
                let sent = Sent {
                    backend: b,
                    via: if writer { Via::Fallback } else { Via::Waited },
                };
                return (flow, Some(sent), out);
            }
            Ok(false) => {
                if let Some(h) = self.held.get_mut(idx) {
                    if let Err(e) = relay::discard(&mut h.conn, &mut self.client, expect).await {
                        tracing::debug!(conn = self.id, backend = %b.name(), error = %e, "discarding a read after a missed wait failed");
                        self.drop_conn(idx);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(conn = self.id, backend = %b.name(), error = %e, "causal wait failed on its replica");
                self.drop_conn(idx);
                let f = Failure::lost(b.name());
                count_failure(&f);
                return self.missed(writer, token, cmd, expect, Some(&f.err)).await;
            }
        }
        self.missed(writer, token, cmd, expect, None).await
    }

    /// A missed wait: on a replica, [`Session::wait_missed`]; on the writer,
    /// the refusal of a token no reachable server has.
    async fn missed(
        &mut self,
        writer: bool,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
        failed: Option<&ErrPacket>,
    ) -> Ran {
        if !writer {
            return self.wait_missed(token, cmd, expect, failed).await;
        }
        metrics::counter!(m::CAUSAL_READS, "outcome" => outcome::ERROR).increment(1);
        let why = match failed {
            None => "it did not reach it in time".to_string(),
            Some(err) => format!("the wait failed: {} {}", err.code, err.message),
        };
        let err = ErrPacket::new(
            1105,
            "HY000",
            format!(
                "causeway: no reachable server has executed consistency token '{}' \
                 (the writer '{}' was waited on: {why}); the read is refused rather than \
                 answered from a server that lacks it",
                crate::consistency::clip_value(&causeway_gtid::token_text(token)),
                self.topo.primary.name()
            ),
        );
        (self.reply_err(&err).await, None, None)
    }

    /// A causal read whose replica did not reach the token in time, or
    /// could not be waited on (`failed`, the cause): the primary, or an
    /// error, per `on_timeout`.
    pub(super) async fn wait_missed(
        &mut self,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
        failed: Option<&ErrPacket>,
    ) -> Ran {
        let timeout = self.settings.wait_timeout;
        // a read routed to a named pool follows the pool's on_timeout
        let pool = self
            .cursor
            .pool()
            .map(|p| (p.on_timeout, p.name.to_string()));
        let on_timeout = pool.as_ref().map_or(self.settings.on_timeout, |p| p.0);
        match on_timeout {
            // boxed: the writer's own missed wait ends in an error, never
            // here; a named pool's fallback honours the token there too
            OnTimeout::Primary => Box::pin(self.read_on_writer(token, cmd, expect)).await,
            OnTimeout::Error => {
                metrics::counter!(m::CAUSAL_READS, "outcome" => outcome::ERROR).increment(1);
                let why = match failed {
                    None => format!("within {} ms", timeout.as_millis()),
                    Some(err) => format!("(the wait failed: {} {})", err.code, err.message),
                };
                let err = ErrPacket::new(
                    1105,
                    "HY000",
                    format!(
                        "causeway: no {} reached consistency token '{}' {why} ({} = 'error')",
                        pool.as_ref().map_or("replica".to_string(), |p| format!(
                            "member of pool '{}'",
                            p.1
                        )),
                        crate::consistency::clip_value(&causeway_gtid::token_text(token)),
                        if pool.is_some() {
                            "the pool's on_timeout"
                        } else {
                            "causeway.on_timeout"
                        },
                    ),
                );
                (self.reply_err(&err).await, None, None)
            }
        }
    }

    /// The session was killed (or its client left) while held connection
    /// `idx` waited on replica `b`: that connection's state is unknown, so it is closed (never
    /// pooled) and its replica thread killed over a fresh connection (the
    /// wait would otherwise run on to its timeout, and the pipelined read
    /// after it). KILL QUERY answers 1317; KILL CONNECTION ends the session.
    async fn killed_wait(&mut self, idx: usize, b: &Backend, why: Interrupt) -> Flow {
        let thread_id = self.held.get(idx).map(|h| h.conn.thread_id);
        if let Some(h) = self.held.get_mut(idx) {
            h.conn.broken = true;
        }
        if idx < self.held.len() {
            self.drop_conn(idx);
        }
        if let Some(thread_id) = thread_id {
            let login = self.shared.login();
            let timeout = self.topo.config.server.connect_timeout();
            // the whole thread: the pipelined read must not run either
            let tls = &b.pool.config().tls;
            let addr = &b.config.address;
            match registry::kill_on_backend(addr, &login, thread_id, true, timeout, tls).await {
                Ok(()) => {
                    tracing::debug!(conn = self.id, backend = %b.name(), thread_id, ?why, "causal wait ended on the replica")
                }
                Err(e) => {
                    tracing::warn!(conn = self.id, backend = %b.name(), error = %e, "could not end a killed causal wait on the replica")
                }
            }
        }
        match why {
            Interrupt::Kill(registry::Killed::Query) => {
                let err = ErrPacket::new(1317, "70100", "Query execution was interrupted");
                self.reply_err(&err).await
            }
            Interrupt::Kill(registry::Killed::Connection) | Interrupt::ClientGone => Flow::Quit,
        }
    }
}

/// Why a causal wait ended before its reply.
#[derive(Debug, Clone, Copy)]
enum Interrupt {
    /// KILL QUERY or KILL CONNECTION of the session.
    Kill(registry::Killed),
    /// The client closed its connection.
    ClientGone,
}

/// Resolves when the client has closed its connection (end of stream or a
/// socket error). Looks without consuming: if the client sent more bytes
/// (a pipelined command), it is still there and this never resolves.
async fn client_gone(stream: Option<&tokio::net::TcpStream>) {
    let Some(stream) = stream else {
        return std::future::pending().await;
    };
    let mut byte = [0u8; 1];
    if let Ok(n) = stream.peek(&mut byte).await {
        if n > 0 {
            std::future::pending::<()>().await;
        }
    }
}

/// The held connection of a causal wait vanished (cannot happen: it was
/// just acquired).
fn lost_wait() -> ErrPacket {
    ErrPacket::new(
        2013,
        "HY000",
        "causeway: lost the replica connection of a causal read",
    )
}
