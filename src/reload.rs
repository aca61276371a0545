//! The steps of a hot reload of the configuration file (SIGHUP) that need
//! only the old and new snapshots; `proxy.rs` drives a reload
//! (reads and validates the file with `causeway_config`, builds a complete
//! new [`Topology`] from it and the current one, where unchanged backends
//! keep their pool and monitored state, publishes it with a single
//! `ArcSwap::store` and re-syncs the monitor). This module says what
//! changed ([`diff`]), closes the idle connections of pools that left the
//! topology ([`release_left_pools`]) and logs and counts the result in
//! `causeway_reloads_total{result}` ([`record`]).
//!
//! A file that does not parse or validate changes nothing: the old topology
//! keeps serving and the error names the file, line and key. Sessions in a
//! transaction keep the snapshot they started it with (they hold their own
//! `Arc<Topology>`); other sessions pick up the new snapshot at their next
//! statement. A removed backend's pool is freed when the last snapshot
//! holding it is dropped. `[server] listen`, `[admin] listen` and
//! `[admin] enabled` are read only at startup: a change is reported in
//! [`ReloadSummary::restart_required`] and logged as a warning.

use causeway_config::ConfigError;
use std::path::Path;
use std::sync::Arc;

use crate::metrics as m;
use crate::topology::{Topology, TopologyError};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read, parsed or validated.
    #[error("reload refused, keeping the running configuration: {0}")]
    Config(#[from] ConfigError),
    /// The new topology could not be built.
    #[error("reload refused, keeping the running configuration: {0}")]
    Topology(#[from] TopologyError),
    /// The proxy is shutting down.
    #[error("reload refused: the proxy is shutting down")]
    ShuttingDown,
}

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Generation of the snapshot now serving.
    pub generation: u64,
    /// Backends that are new (by name).
    pub added: Vec<String>,
    /// Backends that left the topology.
    pub removed: Vec<String>,
    /// Backends whose settings changed (weight, lag budget, address...).
    pub changed: Vec<String>,
    /// Backends that got a new pool and monitored state (address, role or
    /// pool settings changed).
    pub reconnected: Vec<String>,
    /// Keys that changed but apply only after a restart.
    pub restart_required: Vec<&'static str>,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generation {}: added [{}], removed [{}], changed [{}]",
            self.generation,
            self.added.join(", "),
            self.removed.join(", "),
            self.changed.join(", ")
        )
    }
}

/// Logs and counts (`causeway_reloads_total{result}`) the outcome of a
/// reload from `path`.
pub fn record(path: &Path, result: &Result<ReloadSummary, ReloadError>) {
    match result {
        Ok(summary) => {
            metrics::counter!(m::RELOADS, "result" => m::reload_result::OK).increment(1);
            tracing::info!(file = %path.display(), %summary, "configuration reloaded");
            for key in &summary.restart_required {
                tracing::warn!(
                    key,
                    "changed in the reloaded file, but only a restart applies it"
                );
            }
        }
        Err(e) => {
            metrics::counter!(m::RELOADS, "result" => m::reload_result::ERROR).increment(1);
            tracing::error!(file = %path.display(), error = %e, "configuration reload failed");
        }
    }
}

/// Closes the idle connections of `old`'s pools that `new` no longer
/// uses; sessions still holding connections from them keep those.
pub fn release_left_pools(old: &Topology, new: &Topology) {
    for b in old.backends() {
        if !new.backends().any(|n| Arc::ptr_eq(&n.pool, &b.pool)) {
            b.pool.clear_idle();
        }
    }
}

/// What changed between two snapshots.
pub fn diff(old: &Topology, new: &Topology) -> ReloadSummary {
    let mut s = ReloadSummary {
        generation: new.generation,
        ..ReloadSummary::default()
    };
    for b in new.backends() {
        match old.backend(b.name()) {
            None => s.added.push(b.name().to_string()),
            Some(o) => {
                if o.config != b.config || o.role != b.role {
                    s.changed.push(b.name().to_string());
                }
                if !Arc::ptr_eq(&o.pool, &b.pool) {
                    s.reconnected.push(b.name().to_string());
                }
            }
        }
    }
    for b in old.backends() {
        if new.backend(b.name()).is_none() {
            s.removed.push(b.name().to_string());
        }
    }
    let (oc, nc) = (&old.config, &new.config);
    if oc.server.listen != nc.server.listen {
        s.restart_required.push("server.listen");
    }
    if oc.server.worker_threads != nc.server.worker_threads {
        s.restart_required.push("server.worker_threads");
    }
    if oc.admin.listen != nc.admin.listen {
        s.restart_required.push("admin.listen");
    }
    if oc.admin.enabled != nc.admin.enabled {
        s.restart_required.push("admin.enabled");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_config::Config;

    fn topo(replicas: &[(&str, u32)], listen: &str, prev: Option<&Topology>) -> Topology {
        let mut text = format!(
            "[server]\nlisten='{listen}'\n[[users]]\nname='a'\npassword='b'\n\
             [primary]\nname='p'\naddress='127.0.0.1:1'\n\
             [monitor]\nuser='m'\npassword='m'\n"
        );
        for (i, (name, w)) in replicas.iter().enumerate() {
            text.push_str(&format!(
                "[[replicas]]\nname='{name}'\naddress='127.0.0.1:{}'\nweight={w}\n",
                10 + i
            ));
        }
        let cfg = Config::from_str_named(&text, "t.toml").unwrap();
        Topology::build(Arc::new(cfg), prev).unwrap()
    }

    #[test]
    fn diff_names_added_removed_changed_and_restart_keys() {
        let a = topo(&[("r1", 1), ("r2", 1)], "127.0.0.1:0", None);
        let b = topo(&[("r1", 0), ("r3", 1)], "127.0.0.1:7000", Some(&a));
        let s = diff(&a, &b);
        assert_eq!(s.generation, 2);
        assert_eq!(s.added, ["r3"]);
        assert_eq!(s.removed, ["r2"]);
        // r3 took r2's slot in the address scheme but is a new name
        assert_eq!(s.changed, ["r1"]);
        assert!(s.reconnected.is_empty(), "{s:?}");
        assert_eq!(s.restart_required, ["server.listen"]);
    }
}
