//! The writer gate of `[failover] mode = "follow"`: what a statement bound
//! for the writer (a write, a transaction, a pinned or `autocommit = 0`
//! session) sees while the writer changes. One status load per such
//! statement; nothing under `mode = "static"` or before the monitor has
//! looked.
//!
//! - One writer: the session takes the newest snapshot (whose primary is
//!   that writer) unless a transaction is open, and goes on.
//! - No writer: it waits up to `[failover] write_wait_ms` for one, then
//!   gets 1290 / HY000 saying no server is writable.
//! - Split brain: 1290 / HY000 at once, naming the writable servers. Never
//!   sent to either.
//! - A transaction open on a writer that was replaced (or during a split
//!   brain): 1290 / HY000 at its next statement; the connection holding it
//!   is closed, so the server rolls it back. It is never moved.
//! - A pinned session whose state lives on a writer that was replaced:
//!   1290 / HY000, then the client is disconnected (the state cannot
//!   follow it to the new writer).

use causeway_config::FailoverMode;
use std::time::Instant;

use super::session::{Flow, Session};
use crate::failover::{Status, Writers};
use crate::metrics::fence_reason;
use crate::protocol::ErrPacket;
use crate::router::Target;
use mysql_common::constants::StatusFlags;

/// The code of every fenced write (`ER_OPTION_PREVENTS_STATEMENT`, what a
/// read-only server answers a write).
const FENCED: u16 = 1290;

/// Refusal while two or more servers are writable.
pub(crate) fn split_brain_error(names: &[String]) -> ErrPacket {
    ErrPacket::new(
        FENCED,
        "HY000",
        format!(
            "causeway refuses writes: split brain, servers {} are all writable \
             (read_only = 0 and super_read_only = 0); writes resume once exactly one is",
            quoted(names)
        ),
    )
}

/// Refusal after waiting `waited_ms` for a writer.
pub(crate) fn no_writer_error(waited_ms: u64) -> ErrPacket {
    ErrPacket::new(
        FENCED,
        "HY000",
        format!(
            "causeway has no writer: no reachable server is writable (read_only = 0 \
             and super_read_only = 0) after waiting {waited_ms} ms ([failover] write_wait_ms)"
        ),
    )
}

/// The answer to a pinned session whose state was on a replaced writer.
pub(crate) fn pinned_state_lost_error(old: &str, now: &Writers) -> ErrPacket {
    let now = match now {
        Writers::One(w) => format!("the writer is now '{w}'"),
        _ => "the writer changed".to_string(),
    };
    ErrPacket::new(
        FENCED,
        "HY000",
        format!(
            "causeway ended this session: its session state (user variables, temporary \
             tables, locks) was on '{old}' and {now}; reconnect"
        ),
    )
}

/// The answer to a statement of a transaction whose writer was replaced.
pub(crate) fn writer_changed_error(old: &str, now: &Writers) -> ErrPacket {
    let now = match now {
        Writers::One(w) => format!("the writer is now '{w}'"),
        Writers::Split(names) => format!("split brain between {}", quoted(names)),
        Writers::None | Writers::Unknown => "no writer now".to_string(),
    };
    ErrPacket::new(
        FENCED,
        "HY000",
        format!(
            "causeway ended this transaction: it was open on '{old}', which is no longer \
             the writer ({now}); its connection was closed, so the server rolled it back"
        ),
    )
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refusal of a causal read whose token names GTIDs lost in a failover.
pub(crate) fn lost_token_error(lost: &causeway_gtid::GtidSet, writer: &str) -> ErrPacket {
    ErrPacket::new(
        1105,
        "HY000",
        format!(
            "causeway refuses this causal read: GTIDs '{}' of its consistency token were lost \
             in a failover: no reachable server has executed them and the server that wrote \
             them is no longer the writer ('{writer}' is), so they can never reach it",
            crate::consistency::clip_value(&lost.to_string())
        ),
    )
}

impl Session {
    /// A causal read with `token` that no replica can serve at once: `Some`
    /// (the refusal) when part of the token was lost in a failover
    /// (`crate::failover::lost`), under `mode = "follow"` with one writer.
    pub(super) async fn lost_gate(&mut self, token: &causeway_gtid::GtidSet) -> Option<Flow> {
        let status = self.ctx.failover.status_full();
        let Writers::One(writer) = &status.writers else {
            return None;
        };
        if status.mode != FailoverMode::Follow {
            return None;
        }
        let lost = crate::failover::lost(&self.topo, writer, token)?;
        self.ctx.failover.count_lost();
        tracing::info!(conn = self.id, lost = %crate::consistency::clip_value(&lost.to_string()),
            "causal read refused: its token was lost in a failover");
        Some(self.reply_err(&lost_token_error(&lost, writer)).await)
    }

    /// Runs before a statement is routed to `target`: `Some(flow)` when the
    /// writer status answered it with an error, `None` to go on (with the
    /// snapshot of the current writer).
    pub(super) async fn writer_gate(&mut self, target: &Target) -> Option<Flow> {
        let status = self.ctx.failover.status_full();
        if status.mode == FailoverMode::Static || status.writers == Writers::Unknown {
            return None;
        }
        if let Some(flow) = self.pinned_gate(&status).await {
            return Some(flow);
        }
        match target {
            Target::Backend(name) if self.route.trx.as_deref() == Some(name.as_str()) => {
                self.trx_gate(name, &status).await
            }
            Target::Primary => self.write_gate(status).await,
            _ => None,
        }
    }

    /// A statement of a transaction open on `name`.
    async fn trx_gate(&mut self, name: &str, status: &Status) -> Option<Flow> {
        if name != self.topo.primary.name() {
            return None; // a read-only transaction on a replica
        }
        let replaced = match &status.writers {
            Writers::One(w) => w != name,
            Writers::Split(_) => true,
            // the old writer answers for itself (or fails)
            Writers::None | Writers::Unknown => false,
        };
        if !replaced {
            return None;
        }
        if let Some(i) = self.held.iter().position(|h| h.conn.server == name) {
            self.drop_conn(i);
        }
        self.route.trx = None;
        self.status &= !StatusFlags::SERVER_STATUS_IN_TRANS.bits();
        self.refresh_topology();
        self.ctx.failover.count_fenced(fence_reason::WRITER_CHANGED);
        tracing::info!(
            conn = self.id,
            old = name,
            "transaction ended: its writer was replaced"
        );
        Some(
            self.reply_err(&writer_changed_error(name, &status.writers))
                .await,
        )
    }

    /// A pinned session whose state (user variables, temporary tables,
    /// locks: on the connection `note_pin` marked tainted) lives on a
    /// server that is no longer the writer: that state cannot follow, so
    /// the client gets 1290 and is disconnected, as if its server had gone.
    async fn pinned_gate(&mut self, status: &Status) -> Option<Flow> {
        self.route.pinned?;
        let old = match &status.writers {
            Writers::One(w) => self
                .held
                .iter()
                .find(|h| h.conn.tainted && h.conn.server != *w)?
                .conn
                .server
                .clone(),
            _ => return None,
        };
        if let Some(i) = self.held.iter().position(|h| h.conn.server == old) {
            self.drop_conn(i);
        }
        self.ctx.failover.count_fenced(fence_reason::WRITER_CHANGED);
        tracing::info!(conn = self.id, old = %old, "pinned session ended: its writer was replaced");
        let err = pinned_state_lost_error(&old, &status.writers);
        self.reply_err(&err).await;
        Some(Flow::Quit)
    }

    /// A statement that needs the writer, outside a transaction.
    async fn write_gate(&mut self, mut status: std::sync::Arc<Status>) -> Option<Flow> {
        let wait = self.topo.config.failover.write_wait();
        if status.writers == Writers::None {
            status = self
                .ctx
                .failover
                .wait_for_writer(Instant::now() + wait)
                .await;
        }
        match &status.writers {
            Writers::One(_) | Writers::Unknown => {
                self.refresh_topology();
                None
            }
            Writers::None => {
                self.ctx.failover.count_fenced(fence_reason::NO_WRITER);
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                Some(self.reply_err(&no_writer_error(ms)).await)
            }
            Writers::Split(names) => {
                self.ctx.failover.count_fenced(fence_reason::SPLIT_BRAIN);
                Some(self.reply_err(&split_brain_error(names)).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_situation() {
        let e = split_brain_error(&["primary".into(), "r1".into()]);
        assert_eq!((e.code, e.sqlstate()), (1290, "HY000"));
        assert!(e.message.contains("'primary', 'r1'"), "{}", e.message);
        assert!(e.message.contains("split brain"));
        let e = no_writer_error(250);
        assert_eq!((e.code, e.sqlstate()), (1290, "HY000"));
        assert!(e.message.contains("no writer") && e.message.contains("250 ms"));
        let e = writer_changed_error("primary", &Writers::One("r1".into()));
        assert!(e.message.contains("'primary'") && e.message.contains("now 'r1'"));
    }
}
