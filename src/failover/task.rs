//! The task that follows the writer: every few milliseconds it reads the
//! monitor's views, decides the writers ([`super::writers`]), switches the
//! topology to a new single writer through the proxy's callback, publishes
//! the [`Status`] sessions read, and logs each change of state once.

use causeway_config::FailoverMode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{writers, Status, Writers};
use crate::metrics as m;
use crate::shared::Shared;
use crate::topology::Topology;

/// Makes `writer` the snapshot's primary (serialised with reloads); the
/// error is logged.
pub type Switch = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Starts following the writer on the current runtime until shutdown.
pub fn spawn(shared: Arc<Shared>, switch: Switch) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(shared, switch))
}

async fn run(shared: Arc<Shared>, switch: Switch) {
    let mut stop = shared.shutdown_signal();
    loop {
        let period = step(&shared, &switch);
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(period) => {}
        }
        if shared.is_shutting_down() {
            break;
        }
    }
}

/// One look: returns how long to sleep before the next.
fn step(shared: &Shared, switch: &Switch) -> Duration {
    let topo = shared.topology.load_full();
    let mode = topo.config.failover.mode;
    // as often as the monitor can have news, within bounds
    let period = topo
        .config
        .monitor
        .gtid_interval()
        .clamp(Duration::from_millis(10), Duration::from_millis(100));
    let found = match mode {
        FailoverMode::Static => Writers::Unknown,
        FailoverMode::Follow => writers(&topo),
    };
    if let Writers::One(name) = &found {
        if name != topo.primary.name() {
            let reason = why_old_left(&topo);
            match switch(name) {
                Ok(()) => {
                    shared.failover.changes.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(m::WRITER_CHANGES).increment(1);
                    tracing::warn!(from = %topo.primary.name(), to = %name, reason = %reason,
                        "writer changed: writes go to the new writer");
                }
                Err(e) => {
                    tracing::error!(from = %topo.primary.name(), to = %name, error = %e,
                        "cannot switch to the new writer");
                    return period;
                }
            }
        }
    }
    let status = Status {
        mode,
        writers: found,
    };
    let before = shared.failover.status().writers.clone();
    if shared.failover.publish(status.clone()) {
        log_change(&before, &status.writers);
    }
    period
}

/// Why the snapshot's primary is no longer the writer, for the log line.
fn why_old_left(topo: &Topology) -> String {
    let v = topo.primary.state.view.load();
    let old = if !v.reachable {
        format!(
            "'{}' is unreachable ({})",
            topo.primary.name(),
            v.last_error.as_deref().unwrap_or("no answer")
        )
    } else if v.read_only {
        format!("'{}' is read-only", topo.primary.name())
    } else {
        format!("'{}' is no longer writable", topo.primary.name())
    };
    format!("{old}; the new writer is the only reachable writable server")
}

fn log_change(before: &Writers, now: &Writers) {
    match now {
        Writers::Split(names) => tracing::error!(writable = ?names, previous = before.as_str(),
            "split brain: more than one server is writable; writes are refused until exactly one is"),
        Writers::None => tracing::warn!(
            previous = before.as_str(),
            "no writer: no reachable server is writable; writes wait for one"
        ),
        Writers::One(name) => tracing::info!(writer = %name, previous = before.as_str(),
            "one writer"),
        Writers::Unknown => {}
    }
}
