//! Where one statement runs: a routing target resolved to a backend
//! (`crate::consistency::choose` for reads), the command sent and its reply
//! relayed, and a failed read retried once elsewhere when
//! [`Failure::may_retry`](super::failure::Failure::may_retry) and the
//! statement allow it (the consistency wait itself is in `causal`).

use causeway_config::Consistency;
use causeway_gtid::GtidSet;
use std::sync::Arc;

use super::failure::Cause;
use super::prepared::Cmd;
use super::session::{count_failure, Flow, Relayed, Session};
use crate::consistency::{self, Choice};
use crate::metrics::{self as m, outcome};
use crate::relay::{Expect, Outcome};
use crate::router::Target;
use crate::topology::{Backend, Role};

/// How a statement reached its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// Routed there directly.
    Direct,
    /// A replica, after waiting for it to reach the token.
    Waited,
    /// The primary, for a read no replica could serve.
    Fallback,
    /// Answered from the cache (the backend is the primary, unused).
    Cache,
}

/// Where a statement was sent, for `@@causeway.last_route` and bookkeeping.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub backend: Arc<Backend>,
    pub via: Via,
}

impl Sent {
    /// `primary`, `primary:fallback`, `replica:NAME` or `replica:NAME:waited`.
    pub fn label(&self) -> String {
        match (self.backend.role, self.via) {
            (_, Via::Cache) => "cache".to_string(),
            (Role::Primary, Via::Fallback) => "primary:fallback".to_string(),
            (Role::Primary, _) => "primary".to_string(),
            (Role::Replica, Via::Waited) => format!("replica:{}:waited", self.backend.name()),
            (Role::Replica, _) => format!("replica:{}", self.backend.name()),
        }
    }

    /// Routed to `backend` directly.
    pub fn direct(backend: Arc<Backend>) -> Sent {
        Sent {
            backend,
            via: Via::Direct,
        }
    }
}

/// What running a command came to: the flow, where it went and its
/// reply's outcome (both only when a reply reached the client).
pub(super) type Ran = (Flow, Option<Sent>, Option<Outcome>);

impl Session {
    /// Resolves `target` to a backend and runs the command there, waiting
    /// for a replica to reach `token` (and the floor of monotonic reads)
    /// when the consistency mode needs it; then remembers where the session
    /// read.
    pub(super) async fn run_cmd(
        &mut self,
        target: &Target,
        mode: Consistency,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
    ) -> Ran {
        // failover: the writer's status may answer a write (frontend/writer.rs)
        if let Some(flow) = self.writer_gate(target).await {
            return (flow, None, None);
        }
        if mode == Consistency::Causal
            && matches!(target, Target::Replica | Target::ReadOnlyTransaction)
        {
            self.fetch_floor(&[]).await;
        }
        let done = self.route_cmd(target, mode, token, cmd, expect).await;
        if let (Some(sent), Some(_)) = (&done.1, &done.2) {
            match (sent.backend.role, sent.via) {
                // a read a rule sent to a named pool is not a monotonic-reads step
                (Role::Replica, _) if self.cursor.pool().is_none() => {
                    self.cursor.saw(&sent.backend, false)
                }
                (Role::Replica, _) => {}
                (Role::Primary, Via::Fallback) => self.cursor.saw(&sent.backend, true),
                (Role::Primary, _) => {}
            }
        }
        done
    }

    /// [`Session::run_cmd`] without the bookkeeping.
    async fn route_cmd(
        &mut self,
        target: &Target,
        mode: Consistency,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
    ) -> Ran {
        let choice = match target {
            Target::Primary => Choice::Primary(""),
            Target::Backend(name) => match self.topo.backend(name) {
                Some(b) => Choice::Serve(Arc::clone(b)),
                None => Choice::Primary("backend left the topology"),
            },
            Target::Replica | Target::ReadOnlyTransaction => consistency::choose(
                &self.topo,
                mode,
                token,
                self.settings.max_lag_ms,
                &[],
                &mut self.cursor,
            ),
        };
        // a read outside a transaction, or a read-only transaction's first
        // statement: nothing that may have committed can reach a replica
        let read = matches!(target, Target::Replica | Target::ReadOnlyTransaction);
        let causal = read && mode == Consistency::Causal && !token.is_empty();
        // failover: a token lost with an old writer is refused at once
        if causal && !matches!(choice, Choice::Serve(_)) {
            if let Some(flow) = self.lost_gate(token).await {
                return (flow, None, None);
            }
        }
        match choice {
            Choice::Serve(b) => {
                if causal {
                    metrics::counter!(m::CAUSAL_READS, "outcome" => outcome::REPLICA).increment(1);
                }
                // A read that fails on a replica before anything reached the
                // client is retried once on another eligible backend (and
                // does not wait for a pool slot here).
                let relayed = match self.try_pipeline(&b, cmd, expect).await {
                    Some(r) => r,
                    None => self.send_cmd(&b, cmd, expect, !read).await,
                };
                match relayed {
                    Ok((flow, out)) => (flow, Some(Sent::direct(b)), out),
                    Err(f) if read && f.may_retry() => {
                        count_failure(&f);
                        if f.cause == Cause::Full {
                            tracing::debug!(conn = self.id, backend = %b.name(), "replica pool full; the read goes elsewhere");
                        } else {
                            tracing::warn!(conn = self.id, backend = %b.name(), error = %f.err, "read failed on a replica; retrying once elsewhere");
                        }
                        self.retry_read(mode, token, cmd, expect, b.name()).await
                    }
                    Err(f) => (self.reply_failure(f).await, None, None),
                }
            }
            Choice::Primary(why) => {
                self.obs.why = why;
                if let Some(flow) = self.pool_unavailable(why).await {
                    return (flow, None, None);
                }
                let b = Arc::clone(&self.topo.primary);
                let fallback = !why.is_empty() && mode != Consistency::Strong && read;
                if fallback && causal && self.cursor.pool().is_none() {
                    // the writer must hold the token too (causal.rs)
                    return self.read_on_writer(token, cmd, expect).await;
                }
                let via = if fallback { Via::Fallback } else { Via::Direct };
                self.send_to(b, via, cmd, expect).await
            }
            Choice::WaitFor(b) => {
                let need = self.cursor.take_wait_set();
                self.read_after_wait(b, need.as_ref().unwrap_or(token), cmd, expect)
                    .await
            }
        }
    }

    /// Sends `cmd` to `b`, relays the reply (a failure goes to the client),
    /// and says where it went.
    pub(super) async fn send_to(
        &mut self,
        b: Arc<Backend>,
        via: Via,
        cmd: &Cmd<'_>,
        expect: Expect,
    ) -> Ran {
        let relayed = self.send_cmd(&b, cmd, expect, true).await;
        let (flow, out) = self.settle(relayed).await;
        (flow, Some(Sent { backend: b, via }), out)
    }

    /// Sends `cmd` to `b` and relays the reply; without `wait` a full pool
    /// fails at once.
    async fn send_cmd(
        &mut self,
        b: &Arc<Backend>,
        cmd: &Cmd<'_>,
        expect: Expect,
        wait: bool,
    ) -> Relayed {
        let (idx, payload) = self.prepare_cmd(b, cmd, wait).await?;
        self.forward_on(idx, &payload, expect, None).await
    }

    /// The retry of a read that failed on, or found no free pool slot at,
    /// replica `failed`: another eligible replica, else the primary. Replicas
    /// whose pools are full are skipped without waiting; any other failure
    /// now goes to the client.
    async fn retry_read(
        &mut self,
        mode: Consistency,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
        failed: &str,
    ) -> Ran {
        let mut exclude = vec![failed.to_string()];
        loop {
            let skip: Vec<&str> = exclude.iter().map(String::as_str).collect();
            if mode == Consistency::Causal {
                self.fetch_floor(&skip).await;
            }
            let choice = consistency::choose(
                &self.topo,
                mode,
                token,
                self.settings.max_lag_ms,
                &skip,
                &mut self.cursor,
            );
            match choice {
                Choice::Serve(b) => match self.send_cmd(&b, cmd, expect, false).await {
                    Ok((flow, out)) => return (flow, Some(Sent::direct(b)), out),
                    Err(f) if f.cause == Cause::Full => exclude.push(b.name().to_string()),
                    Err(f) => return (self.reply_failure(f).await, None, None),
                },
                Choice::WaitFor(b) => {
                    let need = self.cursor.take_wait_set();
                    let need = need.as_ref().unwrap_or(token);
                    return self.read_after_wait(b, need, cmd, expect).await;
                }
                Choice::Primary(why) => {
                    if let Some(flow) = self.pool_unavailable(why).await {
                        return (flow, None, None);
                    }
                    let p = Arc::clone(&self.topo.primary);
                    return self.send_to(p, Via::Fallback, cmd, expect).await;
                }
            }
        }
    }
}
