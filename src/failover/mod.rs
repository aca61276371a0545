//! Failover: who the writer is, decided from the monitor's views, and what
//! sessions see while it changes. This module owns the writer status that
//! sessions read per write ([`Failover`], in `Shared`), the rules
//! (`decide`: one writer, none, split brain; GTIDs lost in a failover) and
//! the task that follows the writer (`task`, started by `Proxy`).
//!
//! # What is watched
//!
//! Every configured server (`[primary]` and each `[[replicas]]`) is probed
//! by its monitor task for reachability, `@@read_only`,
//! `@@super_read_only`, `@@server_uuid` and its replication sources.
//! Under `[failover] mode = "follow"` the writer is the single reachable
//! server with both `read_only` and `super_read_only` off. When that is a
//! different server than the snapshot's primary, the task publishes a new
//! topology snapshot whose primary is that server (the old one becomes a
//! replica, whose pools are closed) through the `switch` callback the proxy
//! gives it, serialised with reloads. Sessions pick it up at their next
//! statement; a session in a transaction on the old writer gets an error
//! at its next statement (`frontend/writer.rs`).
//!
//! No writable server: writes wait up to `[failover] write_wait_ms` for one,
//! then get an error. Two or more: writes are refused (1290) naming them.
//! Reads go on from the replicas either way. Under `mode = "static"` none of
//! this applies: `[primary]` is the writer until a reload says otherwise.

mod decide;
mod task;

pub use decide::{config_order, lost, writable, writers, Writers};
pub use task::spawn;

use arc_swap::ArcSwap;
use causeway_config::FailoverMode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The writer status sessions read per write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `[failover] mode` in force.
    pub mode: FailoverMode,
    /// What the monitor's views say.
    pub writers: Writers,
}

impl Status {
    /// The backend that takes writes now: the one writer, or the snapshot's
    /// primary while the status is unknown (static mode, not measured yet);
    /// none while there is no writer or a split brain.
    pub fn writer<'a>(&'a self, topo: &'a crate::topology::Topology) -> Option<&'a str> {
        match &self.writers {
            Writers::One(w) => Some(w.as_str()),
            Writers::Unknown => Some(topo.primary.name()),
            Writers::None | Writers::Split(_) => None,
        }
    }

    /// The status of a proxy that just started (nothing measured yet).
    pub fn initial(mode: FailoverMode) -> Status {
        Status {
            mode,
            writers: Writers::Unknown,
        }
    }
}

/// Shared failover state: the current [`Status`], a wake-up for sessions
/// waiting for a writer, and counters.
#[derive(Debug)]
pub struct Failover {
    status: ArcSwap<Status>,
    changed: Notify,
    /// Writer changes made (follow mode).
    pub changes: AtomicU64,
    /// Writes refused or failed because of the writer status.
    pub fenced: AtomicU64,
    /// Causal reads refused because their token was lost in a failover.
    pub lost_tokens: AtomicU64,
}

impl Failover {
    /// A state for `mode`, nothing measured yet.
    pub fn new(mode: FailoverMode) -> Failover {
        Failover {
            status: ArcSwap::from_pointee(Status::initial(mode)),
            changed: Notify::new(),
            changes: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            lost_tokens: AtomicU64::new(0),
        }
    }

    /// The current status (one atomic load).
    pub fn status(&self) -> arc_swap::Guard<Arc<Status>> {
        self.status.load()
    }

    /// The current status, owned.
    pub fn status_full(&self) -> Arc<Status> {
        self.status.load_full()
    }

    /// Publishes `status` and wakes waiting sessions when it changed.
    pub(crate) fn publish(&self, status: Status) -> bool {
        if **self.status.load() == status {
            return false;
        }
        self.status.store(Arc::new(status));
        self.changed.notify_waiters();
        true
    }

    /// Waits until the status is no longer "no writer", at most until
    /// `deadline`; returns the status then.
    pub async fn wait_for_writer(&self, deadline: Instant) -> Arc<Status> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.status.load_full();
            let left = deadline.saturating_duration_since(Instant::now());
            if now.writers != Writers::None || left == Duration::ZERO {
                return now;
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Counts a fenced write.
    pub(crate) fn count_fenced(&self, reason: &'static str) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::FENCED_WRITES, "reason" => reason).increment(1);
    }

    /// Counts a token refused as lost.
    pub(crate) fn count_lost(&self) {
        self.lost_tokens.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::LOST_TOKENS).increment(1);
    }
}
