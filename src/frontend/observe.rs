//! What a statement's routing decided, gathered along the path
//! ([`Obs`]), and the one hook that records it once the outcome is known:
//! the digest store (`crate::digest`), the routing-reason counter and the
//! decision log.

use std::sync::Arc;
use std::time::Instant;

use causeway_classify::{digest_into, CausewayCommand, Classification, Route};
use causeway_config::Consistency;

use super::route::Via;
use super::session::{Flow, Session};
use crate::digest::log::{Line, Why};
use crate::digest::{Order, Record, Tier, COLUMNS};
use crate::protocol::ErrPacket;
use crate::relay::Outcome;
use crate::topology::Role;

/// The routing facts of the running statement (reset by [`Obs::start`]).
#[derive(Debug)]
pub(crate) struct Obs {
    /// When the statement started (before the cache lookup).
    pub t0: Instant,
    /// `RouteState::decide`'s reason.
    pub decided: &'static str,
    pub mode: Consistency,
    /// The statement carried a non-empty token.
    pub token: bool,
    /// Why `consistency::choose` sent a read to the primary ("" if not).
    pub why: &'static str,
    /// The query rule that applied, if any.
    pub rule: Option<Arc<str>>,
    /// Time a causal read waited for its replica.
    pub wait_us: u64,
    /// Why a cache rule's read was not served by the cache ("" if it was
    /// not bypassed).
    pub bypass: &'static str,
    /// Reused digest text buffer.
    buf: String,
}

impl Default for Obs {
    fn default() -> Self {
        Obs {
            t0: Instant::now(),
            decided: "",
            mode: Consistency::Causal,
            token: false,
            why: "",
            rule: None,
            wait_us: 0,
            bypass: "",
            buf: String::new(),
        }
    }
}

impl Obs {
    /// A statement starts with these routing facts.
    pub(super) fn start(&mut self, decided: &'static str, mode: Consistency, token: bool) {
        self.t0 = Instant::now();
        self.decided = decided;
        self.mode = mode;
        self.token = token;
        self.why = "";
        self.wait_us = 0;
        self.bypass = "";
    }
}

/// Reasons `RouteState::decide` gives for a transaction's statements.
const IN_TRANSACTION: &[&str] = &[
    "open transaction",
    "read-only transaction",
    "transaction",
    "autocommit=0",
];

impl Session {
    /// Records the statement `sql` that `self.last_route` answered (with
    /// `outcome` unless it came from the cache).
    pub(super) fn observe(&mut self, c: &Classification, sql: &str, outcome: Option<&Outcome>) {
        let digests = self.ctx.digests.clone();
        if sql.is_empty() || (digests.is_none() && self.ctx.decisions.is_none()) {
            self.obs.rule = None;
            return;
        }
        let Some(sent) = self.last_route.clone() else {
            return;
        };
        let latency_us = u64::try_from(self.obs.t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        let why = self.why(c, sent.via, sent.backend.role);
        let tier = match (sent.via, sent.backend.role) {
            (Via::Cache, _) => Tier::Cache,
            (Via::Fallback, _) => Tier::Fallback,
            (_, Role::Primary) => Tier::Primary,
            (_, Role::Replica) => Tier::Replica,
        };
        let nbe = self.sets.iter().any(|s| {
            s.as_bytes()
                .windows(20)
                .any(|w| w.eq_ignore_ascii_case(b"NO_BACKSLASH_ESCAPES"))
        });
        let mut buf = std::mem::take(&mut self.obs.buf);
        let hash = digest_into(sql, nbe, &mut buf);
        let error = outcome.and_then(|o| o.error.as_ref()).map(|e| e.code);
        let (rows, affected) = outcome.map_or((0, 0), |o| (o.rows, o.affected));
        if let Some(d) = &digests {
            d.record(&Record {
                hash,
                text: &buf,
                user: &self.user.name,
                schema: self.db.as_deref(),
                tier,
                waited: sent.via == Via::Waited,
                error: error.is_some(),
                latency_us,
                rows,
                affected,
            });
            d.count_reason(&why);
        } else {
            why.count();
        }
        if let Some(log) = &self.ctx.decisions {
            if log.wants(latency_us, error.is_some()) {
                let reason = why.name();
                let backend = match sent.via {
                    Via::Cache => "cache",
                    _ => sent.backend.name(),
                };
                log.send(&Line {
                    time: crate::digest::now_us() as f64 / 1e6,
                    conn: self.id,
                    user: &self.user.name,
                    schema: self.db.as_deref(),
                    digest: format!("{hash:016x}"),
                    digest_text: crate::digest::cut(&buf, crate::digest::MAX_TEXT),
                    sql: log.log_literals.then_some(sql),
                    tier: tier.as_str(),
                    backend,
                    reason: &reason,
                    class: c.reason.as_str(),
                    wait_us: self.obs.wait_us,
                    latency_us,
                    rows,
                    affected,
                    error,
                });
            }
        }
        self.obs.buf = buf;
    }

    /// `SHOW CAUSEWAY DIGESTS` (sorted by total time) and `RESET CAUSEWAY
    /// DIGESTS`: admins only (1227); 1289 when `[digests]` is disabled.
    pub(super) async fn digests_command(&mut self, cmd: &CausewayCommand) -> Flow {
        if !self.user.admin {
            return self.reply_err(&super::admin_rows::not_admin()).await;
        }
        let Some(d) = self.ctx.digests.clone() else {
            let err = ErrPacket::new(
                1289,
                "HY000",
                "The 'causeway digests' feature is disabled; set [digests] enabled = true",
            );
            return self.reply_err(&err).await;
        };
        if *cmd == CausewayCommand::ResetDigests {
            d.reset();
            return self.reply_ok().await;
        }
        let rows: Vec<Vec<Option<String>>> = d
            .rows(Order::SumUs, usize::MAX)
            .iter()
            .map(|r| r.values())
            .collect();
        self.reply_rows(COLUMNS, &rows).await
    }

    /// The reason the statement went where it went.
    fn why(&mut self, c: &Classification, via: Via, role: Role) -> Why {
        let rule = self.obs.rule.take();
        match via {
            Via::Cache => return Why::CacheHit,
            Via::Waited => return Why::Waited,
            Via::Fallback if self.obs.why.is_empty() => return Why::LagBudgetFallback,
            Via::Fallback => return Why::NoReplica,
            Via::Direct => {}
        }
        if !self.obs.bypass.is_empty() {
            return Why::CacheBypass(self.obs.bypass);
        }
        if let Some(r) = rule {
            return Why::Rule(r);
        }
        let decided = self.obs.decided;
        if IN_TRANSACTION.contains(&decided) {
            return Why::InTransaction;
        }
        if decided == "diagnostics of previous statement" {
            return Why::Diagnostics;
        }
        if decided != c.reason.as_str() {
            return Why::Pinned;
        }
        match (role, c.route) {
            (Role::Replica, _) if self.obs.token && self.obs.mode == Consistency::Causal => {
                Why::TokenContained
            }
            (Role::Replica, _) => Why::Eventual,
            (Role::Primary, Route::Replica) if self.obs.mode == Consistency::Strong => Why::Strong,
            (Role::Primary, Route::Replica) => Why::NoReplica,
            (Role::Primary, Route::Primary) => Why::Write,
        }
    }
}
