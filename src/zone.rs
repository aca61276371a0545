//! Zones: which replicas are local to this instance (`[routing] zone`
//! against each replica's `zone`), the order reads try replicas in (local
//! ones first), and the counter of local and cross-zone replica reads.
//!
//! With no `[routing] zone` every replica counts as local, so routing is
//! exactly as without zones and nothing is counted.

use crate::metrics::{self as m, zone_read};
use crate::topology::{Backend, Topology};

/// Whether `r` is in this instance's zone (always, when none is set).
pub(crate) fn is_local(topo: &Topology, r: &Backend) -> bool {
    match topo.config.routing.zone.as_deref() {
        None => true,
        Some(z) => r.config.zone.as_deref() == Some(z),
    }
}

/// Whether any replica `ok` accepts is local: then only local replicas are
/// preferred, else every qualifying one is.
pub(crate) fn any_local(topo: &Topology, ok: impl Fn(&Backend) -> bool) -> bool {
    topo.replicas.iter().any(|r| ok(r) && is_local(topo, r))
}

/// Counts one read routed to replica `r` as local or cross-zone (only when
/// this instance has a zone).
pub(crate) fn count_read(topo: &Topology, r: &Backend) {
    if topo.config.routing.zone.is_none() {
        return;
    }
    let which = if is_local(topo, r) {
        zone_read::LOCAL
    } else {
        zone_read::CROSS
    };
    metrics::counter!(m::ZONE_READS, "zone" => which).increment(1);
}
