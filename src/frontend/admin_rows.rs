//! Rows of `SHOW CAUSEWAY BACKENDS`, built from a topology snapshot.

use std::sync::atomic::Ordering;

use crate::topology::Topology;

/// Column names, in order.
pub const BACKEND_COLUMNS: &[&str] = &[
    "name",
    "role",
    "address",
    "state",
    "weight",
    "lag_ms",
    "gtid_executed",
    "connections",
    "queries",
];

/// One row per backend, primary first.
pub fn backends(topo: &Topology) -> Vec<Vec<Option<String>>> {
    topo.backends()
        .map(|b| {
            let v = b.state.view.load();
            let state = if !v.reachable {
                "down"
            } else if v.measured_at.is_none() {
                "unknown"
            } else if !v.eligible {
                "excluded"
            } else {
                "up"
            };
            vec![
                Some(b.name().to_string()),
                Some(b.role.as_str().to_string()),
                Some(b.config.address.clone()),
                Some(state.to_string()),
                Some(b.config.weight.to_string()),
                v.lag_ms.map(|l| l.to_string()),
                Some(v.gtid_executed.to_string()),
                Some(b.pool.open_connections().to_string()),
                Some(b.state.queries.load(Ordering::Relaxed).to_string()),
            ]
        })
        .collect()
}
