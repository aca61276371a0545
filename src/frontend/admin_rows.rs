//! Rows of `SHOW CAUSEWAY BACKENDS`, built from a topology snapshot.
//!
//! `read_only` is 1 when `read_only` or `super_read_only` is on (NULL until
//! a health check read it); `source_mismatch` is 1 for a replica whose replication
//! source is not the configured primary (NULL for the primary and while
//! unknown). A replica with `read_only` 0 or `source_mismatch` 1 is a
//! split-brain risk the monitor also warns about in the log. `writer` is 1
//! for the backend that takes writes now (see README, Failover). `zone` is
//! the replica's configured zone (NULL when none; see README, Zones).
//! `sessions` counts the live sessions homed on the backend
//! (`read_balance = "session"`, `crate::balance::ledger`).

use std::sync::atomic::Ordering;

use crate::failover::Status;
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
    "read_only",
    "source_mismatch",
    "writer",
    "zone",
    "sessions",
];

/// The refusal of a causeway admin command to a user without
/// `admin = true`: 1227 / 42000, as MySQL refuses a missing privilege.
pub(super) fn not_admin() -> crate::protocol::ErrPacket {
    crate::protocol::ErrPacket::new(
        1227,
        "42000",
        "Access denied; you need the causeway admin privilege (admin = true) for this operation",
    )
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

/// One row per backend, primary first; `writer` is 1 for the backend that
/// takes writes now (`crate::failover::Status::writer`).
pub fn backends(topo: &Topology, status: &Status) -> Vec<Vec<Option<String>>> {
    let writer = status.writer(topo);
    topo.backends()
        .map(|b| {
            let v = b.state.view.load();
            vec![
                Some(b.name().to_string()),
                Some(b.role.as_str().to_string()),
                Some(b.config.address.clone()),
                Some(v.state().to_string()),
                Some(b.config.weight.to_string()),
                v.lag_ms.map(|l| l.to_string()),
                Some(v.gtid_executed.to_string()),
                Some(b.pool.open_connections().to_string()),
                Some(b.state.queries.load(Ordering::Relaxed).to_string()),
                v.server_uuid.as_ref().map(|_| flag(v.read_only)),
                v.source_mismatch.map(flag),
                Some(flag(writer == Some(b.name()))),
                b.config.zone.clone(),
                Some(b.state.homed.load(Ordering::Relaxed).to_string()),
            ]
        })
        .collect()
}
