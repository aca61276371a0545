//! The control-plane monitor: one tokio task per backend (primary and
//! replicas) that measures the server over its own small `mysql_async`
//! connection and publishes the result as the backend's
//! [`View`](crate::topology::View) through
//! [`BackendState::publish`](crate::topology::BackendState::publish).
//!
//! This module owns the [`Monitor`] handle (start, re-sync on reload, stop,
//! counters). Submodules: `task` (the polling loop and view assembly),
//! `probe` (connection and bounded queries), `eval` (pure rules: eligibility,
//! lag, publishing).
//!
//! # What a task does
//!
//! Every `monitor.gtid_interval_ms` it runs `SELECT @@GLOBAL.gtid_executed`.
//! Every `monitor.interval_ms` (and right after every (re)connect) that
//! query also reads `@@read_only` / `@@super_read_only`, and on replicas a
//! second query reads the replication threads' SERVICE_STATE from
//! performance_schema (`SHOW REPLICA STATUS` if that is refused). The
//! health check also reads `@@server_uuid` and, on replicas, the receivers'
//! source UUIDs: a writable replica or one whose source is not the
//! primary's `server_uuid` ([`source_mismatch`]) is logged once per
//! transition and exposed in the view (split-brain checks; routing is not
//! changed by them). Every
//! query and connect is bounded by `monitor.connect_timeout_ms`. A query
//! failing with an I/O error or a timeout closes the connection (with a
//! bounded `COM_QUIT`) and reconnects once at once; if that fails too, the
//! backend is unreachable until a later check succeeds. A dead backend is
//! therefore excluded within one GTID interval plus the connect timeout.
//!
//! A new view is published only when something routing cares about changed
//! (GTID set, reachability, read-only, replication, eligibility, error, lag
//! appearing / crossing zero / moving by ≥ 100 ms) or as a heartbeat once
//! per `interval_ms`, so `measured_at` is never older than about one
//! interval plus the timeouts while the task runs.
//!
//! # Lag
//!
//! Lag is measured by the monitor itself, on one monotonic clock, from GTID
//! sets, not from server timestamps (no clock skew, no "age of the last
//! transaction" on an idle replica). The primary's task records each
//! distinct `gtid_executed` it reads with the instant it first saw it. A
//! replica whose set was read at instant `r` lags by `r - t`, where `t` is
//! the first instant the primary reported a set the replica does not
//! contain; it is 0 when the replica contains everything the primary had
//! reported by `r`. The value is a lower bound of the true lag, short by at
//! most one GTID interval (the transaction committed before the primary's
//! poll that revealed it), and a caught-up replica reports exactly 0. The
//! history is bounded (10 minutes / 4096 sets); beyond that the lag is a
//! lower bound that still exceeds any sane budget. Until the primary has
//! been read once, replica lag is unknown (`None`).
//!
//! # Eligibility
//!
//! See [`decide`]: the primary is eligible iff reachable; a replica iff
//! reachable, replicating and not excluded for lag, with hysteresis (once
//! over budget it returns only below `budget - lag_hysteresis_ms`). A
//! receiver that is `CONNECTING` (source unreachable) counts as running:
//! lag against the primary the monitor sees covers that case. Only when the
//! server refuses the monitor for lack of privileges (1044, 1045, 1142,
//! 1143, 1227, 1370, 3118) health fails open (reachable, replicating, lag
//! unknown; logged once with the code) but `gtid_executed` stays what was
//! actually read (empty if never). A server that answers 1040 (too many
//! connections) or another overload error, times out, or answers
//! unusably is not healthy: unreachable, ineligible, and the log and
//! `last_error` say which case it is.

mod eval;
mod mariadb;
mod probe;
mod settings;
mod sources;
mod task;

pub use settings::Settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::topology::{Backend, BackendState, Role, Topology};
use task::{Counters, Shared, Task};

/// Errors starting the monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// [`Monitor::start`] was called outside a tokio runtime.
    #[error("the monitor must be started inside a tokio runtime")]
    NoRuntime,
}

/// Counters of one backend's monitor task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStats {
    /// Backend name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Checks run (one per GTID interval).
    pub checks: u64,
    /// Checks that failed (unreachable or refused).
    pub failures: u64,
    /// Connections opened.
    pub connects: u64,
    /// Views published.
    pub publishes: u64,
}

struct Entry {
    name: String,
    role: Role,
    /// Held so the key (its address) cannot be reused while the task runs.
    _state: Arc<BackendState>,
    settings: watch::Sender<Arc<Settings>>,
    counters: Arc<Counters>,
    join: JoinHandle<()>,
}

/// The running monitor: one task per backend state of the topology it was
/// last synced with. Dropping it (or [`Monitor::stop`]) stops every task.
pub struct Monitor {
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    tasks: Mutex<HashMap<usize, Entry>>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("tasks", &self.len())
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .finish()
    }
}

fn key(b: &Backend) -> usize {
    Arc::as_ptr(&b.state) as usize
}

impl Monitor {
    /// Starts monitoring every backend of `topo` on the current tokio runtime.
    pub fn start(topo: &Topology) -> Result<Monitor, MonitorError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MonitorError::NoRuntime)?;
        let m = Monitor {
            runtime,
            shared: Arc::new(Shared::default()),
            tasks: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
        };
        m.sync(topo);
        Ok(m)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Entry>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-syncs with a new snapshot (after a reload): starts tasks for new
    /// backend states, stops tasks whose state is gone, and hands changed
    /// settings (credentials, intervals, lag budgets) to the others, which
    /// keep running. A no-op after [`Monitor::stop`].
    pub fn sync(&self, topo: &Topology) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let mut tasks = self.lock();
        let wanted: HashMap<usize, &Arc<Backend>> = topo.backends().map(|b| (key(b), b)).collect();
        tasks.retain(|k, e| {
            let keep = wanted.contains_key(k);
            if !keep {
                tracing::info!(backend = %e.name, "monitor task stopping (backend removed)");
            }
            keep // dropping the entry drops its settings sender: the task ends
        });
        let uuid = topo.primary.state.view.load().server_uuid.clone();
        self.shared.set_primary(key(&topo.primary), uuid);
        for (k, b) in wanted {
            let settings = Settings::new(&topo.config, &b.config, b.role);
            if let Some(e) = tasks.get_mut(&k) {
                e.name.clone_from(&settings.name);
                e.settings.send_if_modified(|cur| {
                    let changed = **cur != settings;
                    if changed {
                        *cur = Arc::new(settings);
                    }
                    changed
                });
                continue;
            }
            tracing::info!(backend = %settings.name, role = b.role.as_str(),
                address = %settings.address, "monitor task starting");
            let counters = Arc::new(Counters::default());
            let (tx, rx) = watch::channel(Arc::new(settings));
            let task = Task::new(
                k,
                Arc::clone(&b.state),
                Arc::clone(&self.shared),
                Arc::clone(&counters),
            );
            let join = self.runtime.spawn(task.run(rx));
            tasks.insert(
                k,
                Entry {
                    name: b.name().to_string(),
                    role: b.role,
                    _state: Arc::clone(&b.state),
                    settings: tx,
                    counters,
                    join,
                },
            );
        }
    }

    /// Asks every task to stop (each closes its connection, bounded by the
    /// connect timeout) and makes later [`Monitor::sync`] calls no-ops.
    /// Does not wait; see [`Monitor::shutdown`].
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.lock().clear();
    }

    /// [`Monitor::stop`], then waits until every task has finished.
    pub async fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        let entries: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        for e in entries {
            let Entry { settings, join, .. } = e;
            drop(settings);
            let _ = join.await;
        }
    }

    /// Number of running tasks.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no task runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters of every running task, primary first, then by name.
    pub fn stats(&self) -> Vec<BackendStats> {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let mut v: Vec<BackendStats> = self
            .lock()
            .values()
            .map(|e| BackendStats {
                name: e.name.clone(),
                role: e.role,
                checks: get(&e.counters.checks),
                failures: get(&e.counters.failures),
                connects: get(&e.counters.connects),
                publishes: get(&e.counters.publishes),
            })
            .collect();
        v.sort_by(|a, b| {
            (a.role != Role::Primary, &a.name).cmp(&(b.role != Role::Primary, &b.name))
        });
        v
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}
