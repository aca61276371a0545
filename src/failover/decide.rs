//! Pure failover rules, no I/O: who the writer is from the monitor's views
//! ([`writers`]), and whether a token's missing GTIDs were lost in a
//! failover ([`lost`]).

use causeway_gtid::{parse_uuid, GtidSet, Uuid};

use crate::topology::{Topology, View};

/// What the monitor's views say about writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writers {
    /// Not known yet (the configured `[primary]` was never measured, or
    /// `mode = "static"`): the snapshot's primary is used as it is.
    Unknown,
    /// Exactly one reachable writable server.
    One(String),
    /// No reachable server is writable.
    None,
    /// Two or more reachable servers are writable (names in configuration
    /// order): a split brain.
    Split(Vec<String>),
}

impl Writers {
    /// Short state name, for logs and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Writers::Unknown => "unknown",
            Writers::One(_) => "one",
            Writers::None => "none",
            Writers::Split(_) => "split_brain",
        }
    }
}

/// Whether a view shows a writable server: measured, reachable, its
/// `read_only` / `super_read_only` actually read (the same query reads
/// `server_uuid`) and both off. Unmeasured views (assumed usable until
/// measured) never count.
pub fn writable(v: &View) -> bool {
    v.measured_at.is_some() && v.reachable && v.server_uuid.is_some() && !v.read_only
}

/// The writers among `topo`'s backends. `Unknown` until the backend
/// configured as `[primary]` has been measured once, so a fresh start
/// keeps the configured primary until the monitor has looked.
pub fn writers(topo: &Topology) -> Writers {
    let configured = topo.config.primary.name.as_str();
    let measured = topo
        .backend(configured)
        .is_some_and(|b| b.state.view.load().measured_at.is_some());
    if !measured {
        return Writers::Unknown;
    }
    let mut found: Vec<String> = Vec::new();
    for name in config_order(topo) {
        if let Some(b) = topo.backend(name) {
            if writable(&b.state.view.load()) {
                found.push(name.to_string());
            }
        }
    }
    match found.len() {
        0 => Writers::None,
        1 => Writers::One(found.swap_remove(0)),
        _ => Writers::Split(found),
    }
}

/// Backend names in configuration order: `[primary]`, then `[[replicas]]`.
pub fn config_order(topo: &Topology) -> impl Iterator<Item = &str> {
    std::iter::once(topo.config.primary.name.as_str())
        .chain(topo.config.replicas.iter().map(|r| r.name.as_str()))
}

/// The GTIDs of `token` that were lost in a failover, if any: the part
/// no reachable server has executed, when all of it was written by servers
/// that are known (their `server_uuid`), reachable or not, none of which
/// is the writer now, and a writer exists. Such GTIDs can never reach the
/// writer by replication (it does not replicate from their origin any
/// more), so a read waiting for them would wait forever. `None` when
/// nothing is missing or some missing GTID's origin is unknown or is the
/// writer (it may still arrive; the bounded wait decides).
pub fn lost(topo: &Topology, writer: &str, token: &GtidSet) -> Option<GtidSet> {
    if token.is_empty() {
        return None;
    }
    let mut missing = token.clone();
    let mut writer_uuid = None;
    let mut known: Vec<Uuid> = Vec::new();
    for b in topo.backends() {
        let v = b.state.view.load();
        if v.reachable && v.measured_at.is_some() {
            missing = missing.difference(&v.gtid_executed);
        }
        if let Some(u) = v.server_uuid.as_deref().and_then(|u| parse_uuid(u).ok()) {
            if b.name() == writer {
                writer_uuid = Some(u);
            }
            known.push(u);
        }
    }
    let writer_uuid = writer_uuid?;
    if missing.is_empty() {
        return None;
    }
    let origins_ok = missing
        .iter()
        .all(|(tsid, _)| tsid.uuid != writer_uuid && known.contains(&tsid.uuid));
    origins_ok.then_some(missing)
}
