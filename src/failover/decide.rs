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
/// keeps the configured primary until the monitor has looked, and while no
/// server's `read_only` has ever been read (e.g. every server refuses the
/// monitor's account): then nobody can tell, and the snapshot's primary
/// stays the writer as in static mode.
pub fn writers(topo: &Topology) -> Writers {
    let configured = topo.config.primary.name.as_str();
    let measured = topo
        .backend(configured)
        .is_some_and(|b| b.state.view.load().measured_at.is_some());
    let any_read = topo
        .backends()
        .any(|b| b.state.view.load().server_uuid.is_some());
    if !measured || !any_read {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    const P: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const R1: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn topo() -> Topology {
        let text = "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n\
                    [[replicas]]\nname='r1'\naddress='127.0.0.1:2'\n\
                    [[replicas]]\nname='r2'\naddress='127.0.0.1:3'\n[monitor]\nuser='m'\n";
        let cfg = causeway_config::Config::from_str_named(text, "t").unwrap();
        Topology::build(Arc::new(cfg), None).unwrap()
    }

    fn set(s: &str) -> Arc<GtidSet> {
        Arc::new(GtidSet::parse(s).unwrap())
    }

    fn view(reachable: bool, read_only: bool, uuid: &str, gtids: &str) -> View {
        View {
            reachable,
            read_only,
            measured_at: Some(Instant::now()),
            server_uuid: Some(uuid.to_string()),
            gtid_executed: set(gtids),
            ..View::default()
        }
    }

    #[test]
    fn one_none_split_and_unknown() {
        let t = topo();
        assert_eq!(writers(&t), Writers::Unknown, "nothing measured");
        let b = |n: &str| Arc::clone(t.backend(n).unwrap());
        // measured, but read_only never read anywhere (monitor refused)
        b("p").state.publish(View {
            server_uuid: None,
            ..view(true, false, P, "")
        });
        assert_eq!(writers(&t), Writers::Unknown);
        b("p").state.publish(view(true, false, P, ""));
        // unmeasured replicas never count as writable
        assert_eq!(writers(&t), Writers::One("p".into()));
        b("r1").state.publish(view(true, true, R1, ""));
        b("r2")
            .state
            .publish(view(true, true, "5e11fa47-71ca-11e1-9e33-c80aa9429562", ""));
        assert_eq!(writers(&t), Writers::One("p".into()));
        b("p").state.publish(view(false, false, P, ""));
        assert_eq!(writers(&t), Writers::None, "a dead writer is no writer");
        b("r1").state.publish(view(true, false, R1, ""));
        assert_eq!(writers(&t), Writers::One("r1".into()));
        b("p").state.publish(view(true, false, P, ""));
        assert_eq!(writers(&t), Writers::Split(vec!["p".into(), "r1".into()]));
        // read_only never read (no server_uuid): not writable
        b("p").state.publish(View {
            server_uuid: None,
            ..view(true, false, P, "")
        });
        assert_eq!(writers(&t), Writers::One("r1".into()));
    }

    #[test]
    fn lost_only_when_the_origin_is_an_old_writer_and_nobody_reachable_has_it() {
        let t = topo();
        let b = |n: &str| Arc::clone(t.backend(n).unwrap());
        b("p")
            .state
            .publish(view(false, false, P, &format!("{P}:1-11")));
        b("r1")
            .state
            .publish(view(true, false, R1, &format!("{P}:1-10")));
        b("r2").state.publish(view(
            true,
            true,
            "5e11fa47-71ca-11e1-9e33-c80aa9429562",
            &format!("{P}:1-10"),
        ));
        let tok = GtidSet::parse(&format!("{P}:1-11")).unwrap();
        let lost_set = lost(&t, "r1", &tok).unwrap();
        assert_eq!(lost_set.to_string(), format!("{P}:11"));
        // held by a reachable server: not lost
        assert!(lost(&t, "r1", &GtidSet::parse(&format!("{P}:1-10")).unwrap()).is_none());
        // the writer's own GTIDs may still come: not lost
        assert!(lost(&t, "r1", &GtidSet::parse(&format!("{R1}:1-99")).unwrap()).is_none());
        // an origin nobody knows (forged): not lost, the bounded wait decides
        let forged = GtidSet::parse("6e11fa47-71ca-11e1-9e33-c80aa9429562:1").unwrap();
        assert!(lost(&t, "r1", &forged).is_none());
        // while p is the writer nothing of p's is lost
        assert!(lost(&t, "p", &tok).is_none());
        // the old writer back with it: not lost
        b("p")
            .state
            .publish(view(true, true, P, &format!("{P}:1-11")));
        assert!(lost(&t, "r1", &tok).is_none());
    }
}
