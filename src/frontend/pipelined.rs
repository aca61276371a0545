//! The session's side of pipelining (`[server] pipeline_depth`, the pipes
//! themselves are `crate::backend::pipeline`): which statements may share
//! a pipelined backend connection, and running one there.
//!
//! A statement is pipelined only when nothing about it or its session
//! depends on which connection runs it: a plain read (no session effect,
//! one statement, not `SQL_CALC_FOUND_ROWS`, not `LAST_INSERT_ID()`) sent
//! as COM_QUERY to a replica the consistency choice serves at once, in
//! `transaction` pool mode, autocommit on, no transaction open, not
//! pinned, no replayed `SET`s, no connection held (no prepared statement,
//! diagnostics or transaction on one), not captured for the cache.
//!
//! The reply comes back whole and is relayed with the ordinary relay, so
//! the client sees exactly what it would have seen without pipelining. A
//! KILL QUERY answers 1317 at once and the reply is thrown away when it
//! arrives (the statement runs to its end on the server: the shared
//! connection's thread is never killed, it may run another client's
//! statement next); KILL CONNECTION ends the session the same way. A
//! client that left is noticed when its reply is written to it.

use causeway_classify::Classification;
use causeway_config::PoolMode;
use std::sync::Arc;
use std::time::Duration;

use super::failure::Failure;
use super::prepared::Cmd;
use super::registry;
use super::session::{link_identity, Flow, Relayed, Session};
use crate::backend::pipeline::{self, Limits, PipelineError, Pipes, Submitted};
use crate::protocol::ErrPacket;
use crate::relay::{self, Expect, RelayError};
use crate::router::Target;
use crate::topology::Backend;

impl Session {
    /// Whether statement `sql` (classified `c`, bound for `target`) may be
    /// pipelined (see the module doc); `cached` when the cache captures
    /// its reply.
    pub(super) fn may_pipeline(
        &self,
        c: &Classification,
        target: &Target,
        sql: &str,
        cached: bool,
    ) -> bool {
        self.topo.config.server.pipeline_depth > 1
            && self.mode == PoolMode::Transaction
            && matches!(target, Target::Replica)
            && c.route == causeway_classify::Route::Replica
            && c.effects == causeway_classify::Effects::default()
            && self.route.trx.is_none()
            && self.route.pinned.is_none()
            && self.route.autocommit
            && self.sets.is_empty()
            && self.held.is_empty()
            && !self.needs_insert_id
            && !cached
            && super::query::is_single_statement(sql)
            && !causeway_classify::calcs_found_rows(sql.as_bytes())
    }

    /// Runs `cmd` on a pipelined connection to `b` when the statement may
    /// be pipelined and a pipe takes it; None: the ordinary path runs it.
    pub(super) async fn try_pipeline(
        &mut self,
        b: &Arc<Backend>,
        cmd: &Cmd<'_>,
        expect: Expect,
    ) -> Option<Relayed> {
        let (true, Cmd::Raw(payload), Expect::Query) = (self.pipe_ok, cmd, expect) else {
            return None;
        };
        let server = &self.topo.config.server;
        let limits = Limits {
            depth: server.pipeline_depth as usize,
            stall: Duration::from_millis(server.pipeline_stall_ms),
        };
        let (login, key) = self
            .link_identity
            .get_or_insert_with(|| link_identity(&self.user, self.caps, self.collation));
        // subscribed before the command is queued: no KILL is missed
        let mut kills = self.shared.subscribe_kills();
        let db = self.db.as_deref();
        let rx = match Pipes::submit(&b.pool, login, key, db, payload, limits).await {
            Submitted::Queued(rx) => rx,
            Submitted::Refused => return None,
        };
        // a client that left is noticed when its reply is written (no
        // extra peek per statement): the reply then reaches nobody
        let got = tokio::select! {
            r = rx => r,
            k = registry::next_kill(&mut kills) => return Some(Ok((self.pipe_killed(k).await, None))),
        };
        match got {
            Ok(Ok(reply)) => Some(self.relay_pipelined(reply, b).await),
            Ok(Err(PipelineError::Lost { server })) => Some(Err(Failure::lost(&server))),
            // never ran, or its reply is too large to buffer: a read, none
            // of whose bytes reached the client, runs on the ordinary path
            Ok(Err(PipelineError::TooLarge)) | Err(_) => None,
        }
    }

    /// Relays a pipelined reply (read whole) to the client.
    async fn relay_pipelined(&mut self, reply: pipeline::Reply, b: &Backend) -> Relayed {
        let mut replay = pipeline::replayed(reply);
        let changed = &mut self.state_changed;
        let warned = &mut self.warned;
        let result = relay::relay(
            &mut replay,
            &mut self.client,
            self.caps,
            Expect::Query,
            None,
            &mut |ok, _final| {
                if ok
                    .state_entries()
                    .any(|(ty, _)| ty == crate::protocol::messages::track::STATE_CHANGE)
                {
                    *changed = true;
                }
                if ok.warnings > 0 {
                    *warned = true;
                }
                false
            },
        )
        .await;
        match result {
            Ok(outcome) => {
                if outcome.error.is_none() {
                    self.status = outcome.status;
                }
                Ok((Flow::Continue, Some(outcome)))
            }
            Err(RelayError::Client(e)) => {
                tracing::debug!(conn = self.id, error = %e, "client failed during a pipelined reply");
                Ok((Flow::Quit, None))
            }
            Err(e) => {
                // a whole reply that does not parse: nothing reached the client
                tracing::warn!(conn = self.id, backend = %b.name(), error = %e, "pipelined reply unreadable");
                Err(Failure::lost(b.name()))
            }
        }
    }

    /// A KILL reached a session waiting for its pipelined reply (which is
    /// thrown away when it arrives): KILL QUERY answers 1317, KILL
    /// CONNECTION ends the session.
    async fn pipe_killed(&mut self, k: registry::Killed) -> Flow {
        match k {
            registry::Killed::Query => {
                let err = ErrPacket::new(1317, "70100", "Query execution was interrupted");
                self.reply_err(&err).await
            }
            registry::Killed::Connection => Flow::Quit,
        }
    }
}
