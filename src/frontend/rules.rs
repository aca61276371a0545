//! The query-rule hook of the statement path (COM_QUERY and
//! COM_STMT_EXECUTE), `SHOW CAUSEWAY RULES`, and what a read routed to a
//! named pool does when the pool cannot serve it: wait on the monitor's
//! view of a watermark store, or apply the pool's `on_timeout`.
//!
//! The matcher itself is `crate::rules`; this module only applies its
//! answer: `reject` answers 1290 naming the rule and nothing reaches a
//! backend; `pool:NAME` sets the session picker's pool for this one
//! statement (cleared by [`Session::end_rules`]); `primary` sends the read
//! to the primary; a rule's `consistency` overrides the session's (a
//! `/* causeway consistency=... */` comment on the statement still wins).

use causeway_classify::{leading_comment_options, Classification};
use causeway_config::{Consistency, OnTimeout, RuleRoute};
use causeway_gtid::GtidSet;
use std::sync::Arc;
use std::time::Instant;

use super::prepared::Cmd;
use super::registry;
use super::route::{Ran, Via};
use super::session::{Flow, Session};
use crate::metrics::{self as m, outcome};
use crate::protocol::ErrPacket;
use crate::relay::Expect;
use crate::router::Target;
use crate::rules::{CompiledRule, StatementFacts};
use crate::topology::Backend;

/// Column names of `SHOW CAUSEWAY RULES`, in order.
pub const RULE_COLUMNS: &[&str] = &[
    "name",
    "match_tables",
    "match_pattern",
    "match_users",
    "route",
    "consistency",
    "cache_ttl_ms",
    "matches",
];

/// The error a `reject` rule answers (1290, as MySQL's "running with the
/// --read-only option so it cannot execute this statement").
pub fn rejected(rule: &str) -> ErrPacket {
    ErrPacket::new(
        1290,
        "HY000",
        format!(
            "causeway is running with query rule '{rule}' (route = \"reject\") so it cannot execute this statement"
        ),
    )
}

/// One row per rule, in evaluation order.
pub fn rule_rows(topo: &crate::topology::Topology) -> Vec<Vec<Option<String>>> {
    let list = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
    topo.rules
        .iter()
        .map(|r| {
            let c = r.config();
            vec![
                Some(c.name.clone()),
                list(&c.match_tables),
                c.match_pattern.clone(),
                list(&c.match_users),
                c.route.as_ref().map(ToString::to_string),
                c.consistency.map(|m| m.as_str().to_string()),
                c.cache_ttl_ms.map(|t| t.to_string()),
                Some(r.matches().to_string()),
            ]
        })
        .collect()
}

impl Session {
    /// Applies the first query rule that matches the statement: returns the
    /// target and mode to use, or `Err` with the flow after a rejection was
    /// answered. Call after `RouteState::decide` and with `self.topo`
    /// current.
    pub(super) async fn apply_rules(
        &mut self,
        sql: &str,
        c: &Classification,
        target: Target,
        mode: Consistency,
    ) -> Result<(Target, Consistency), Flow> {
        self.cursor.set_pool(None);
        self.obs.rule = None;
        if self.topo.rules.is_empty() {
            return Ok((target, mode));
        }
        let topo = Arc::clone(&self.topo);
        // routing is free to choose only for what decide() sends to "some replica"
        let free = target == Target::Replica;
        let facts = StatementFacts::new(sql, c, &self.user.name, self.db.as_deref(), free);
        let Some(rule) = topo.rules.first_match(&facts) else {
            return Ok((target, mode));
        };
        rule.count_match();
        self.obs.rule = Some(rule.name().into());
        tracing::debug!(conn = self.id, rule = rule.name(), "query rule applies");
        let mode = rule_mode(rule, sql, mode);
        match rule.route() {
            Some(RuleRoute::Reject) => Err(self.reply_err(&rejected(rule.name())).await),
            Some(RuleRoute::Pool(_)) => {
                self.cursor.set_pool(rule.pool().cloned());
                Ok((target, mode))
            }
            Some(RuleRoute::Primary) => Ok((Target::Primary, mode)),
            Some(RuleRoute::Replicas) | None => Ok((target, mode)),
        }
    }

    /// [`Session::apply_rules`] for COM_STMT_EXECUTE of statement `id`.
    pub(super) async fn apply_stmt_rules(
        &mut self,
        id: u32,
        c: &Classification,
        target: Target,
        mode: Consistency,
    ) -> Result<(Target, Consistency), Flow> {
        if self.topo.rules.is_empty() {
            self.cursor.set_pool(None);
            return Ok((target, mode));
        }
        let sql = self
            .stmts
            .get(id)
            .and_then(|s| s.prepare.get(1..))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        self.apply_rules(&sql, c, target, mode).await
    }

    /// `SHOW CAUSEWAY RULES` (admin users only, else 1227).
    pub(super) async fn show_rules(&mut self) -> Flow {
        if !self.user.admin {
            return self.reply_err(&super::admin_rows::not_admin()).await;
        }
        let rows = rule_rows(&self.topo);
        self.reply_rows(RULE_COLUMNS, &rows).await
    }

    /// Ends the statement's rule: later reads go to the general pool again.
    pub(super) fn end_rules(&mut self) {
        self.cursor.set_pool(None);
        self.cursor.set_sticky_once(None);
    }

    /// A read routed to a pool that no member can serve (`why`): under the
    /// pool's `on_timeout = "error"` the error is answered and `Some` flow
    /// returned; otherwise `None` (the caller sends it to the primary).
    pub(super) async fn pool_unavailable(&mut self, why: &str) -> Option<Flow> {
        let pool = self.cursor.pool().cloned()?;
        if pool.on_timeout != OnTimeout::Error || why == "strong consistency" {
            return None;
        }
        let err = ErrPacket::new(
            1105,
            "HY000",
            format!(
                "causeway: no member of pool '{}' can serve the read ({why}; the pool's on_timeout = 'error')",
                pool.name
            ),
        );
        Some(self.reply_err(&err).await)
    }

    /// A causal read on a member `b` of a watermark pool: the store is not
    /// a GTID replica, so the wait is on the monitor's view of its
    /// watermark (woken by every publish), bounded by the session's wait
    /// timeout and ended by a KILL of the session. Then the read runs
    /// there, or the pool's `on_timeout` applies.
    pub(super) async fn read_after_watermark(
        &mut self,
        b: Arc<Backend>,
        token: &GtidSet,
        cmd: &Cmd<'_>,
        expect: Expect,
    ) -> Ran {
        let deadline = Instant::now() + self.settings.wait_timeout;
        let mut kills = self.shared.subscribe_kills();
        let mut waited = false;
        let state = Arc::clone(&b.state);
        loop {
            let changed = state.changed.notified();
            if state.view.load().gtid_executed.contains(token) {
                let o = if waited {
                    outcome::WAITED
                } else {
                    outcome::REPLICA
                };
                metrics::counter!(m::CAUSAL_READS, "outcome" => o).increment(1);
                let via = if waited { Via::Waited } else { Via::Direct };
                return self.send_to(b, via, cmd, expect).await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            waited = true;
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(left) => {}
                k = registry::next_kill(&mut kills) => {
                    return match k {
                        registry::Killed::Query => {
                            let err = ErrPacket::new(1317, "70100", "Query execution was interrupted");
                            (self.reply_err(&err).await, None, None)
                        }
                        registry::Killed::Connection => (Flow::Quit, None, None),
                    };
                }
            }
        }
        self.wait_missed(token, cmd, expect, None).await
    }
}

/// The consistency a statement runs with under `rule`: the rule's override
/// unless the statement's own comment sets one.
fn rule_mode(rule: &CompiledRule, sql: &str, mode: Consistency) -> Consistency {
    let Some(over) = rule.consistency() else {
        return mode;
    };
    let explicit = leading_comment_options(sql)
        .is_some_and(|o| o.iter().any(|(k, _)| k.as_str() == "consistency"));
    if explicit {
        mode
    } else {
        over
    }
}
