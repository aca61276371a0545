//! Monotonic reads: the *floor* a causal read on a replica must contain
//! beyond the session's token, so a session never observes the database
//! going backwards when its reads change replica.
//!
//! The session remembers the backend of its last read and when that read's
//! reply had arrived (`crate::balance::Seen`; an `Arc` clone and a clock
//! read per read, no GTID parsing). The monitor stamps each backend with the
//! instant its latest GTID probe was *sent* (`BackendState::confirm`). A
//! set the monitor read from that backend, or from the primary, with a probe
//! sent after the read ended contains everything the read could see (a
//! replica only moves forward and never has more than the primary). Until
//! such a probe exists (at most one `monitor.gtid_interval_ms`), the session
//! reads where it last read; when it cannot (its replica left, or it read
//! on the primary), it asks the primary for its executed set first (one
//! round trip, only then). It never reads another replica early.

use causeway_gtid::GtidSet;
use std::sync::Arc;

use crate::balance::Picker;
use crate::consistency::qualifies;
use crate::topology::{Backend, Topology};

/// What a causal read on a replica must contain beyond the token, so the
/// session never reads backwards (monotonic reads).
pub enum Floor {
    /// Nothing: the replica ran the session's last read, or it read nothing.
    None,
    /// This set: a superset of what the session's last read could see.
    Set(Arc<GtidSet>),
    /// Not known yet: no monitor probe was sent since the last read ended.
    Unknown,
}

/// The floor for reading on `r`. The session's last read ran on backend A
/// and ended at `t`; A's state then is contained in any set the monitor read
/// from A, or from the primary, with a probe sent at or after `t` (a
/// replica only moves forward and never has more than the primary).
pub fn floor(p: &Picker, r: &Backend, topo: &Topology) -> Floor {
    let Some(seen) = p.seen() else {
        return Floor::None;
    };
    if Arc::ptr_eq(&seen.state, &r.state) {
        return Floor::None;
    }
    if let Some(b) = &seen.bound {
        return Floor::Set(Arc::clone(b));
    }
    if seen.state.confirmed_since(seen.at) {
        return Floor::Set(Arc::clone(&seen.state.view.load().gtid_executed));
    }
    if topo.primary.state.confirmed_since(seen.at) {
        return Floor::Set(Arc::clone(&topo.primary.state.view.load().gtid_executed));
    }
    Floor::Unknown
}

/// How a replica stands for a causal read.
pub enum Ready {
    /// The monitor knows it has the token and the floor.
    Now,
    /// Wait for this set there (None: the token alone).
    Wait(Option<GtidSet>),
    /// No sound floor yet: do not read there.
    Blocked,
}

/// How `r` stands for a causal read needing `token` and `floor`.
pub fn readiness(r: &Backend, token: &GtidSet, floor: Floor) -> Ready {
    match floor {
        Floor::Unknown => Ready::Blocked,
        Floor::None => {
            if token.is_empty() || r.state.view.load().gtid_executed.contains(token) {
                Ready::Now
            } else {
                Ready::Wait(None)
            }
        }
        Floor::Set(f) => {
            let v = r.state.view.load();
            if v.gtid_executed.contains(&f) && v.gtid_executed.contains(token) {
                Ready::Now
            } else {
                let mut need = (*f).clone();
                need.union(token);
                Ready::Wait(Some(need))
            }
        }
    }
}

/// Whether a causal read must first fetch a bound from the primary: the
/// session's last read ran on the primary, or on a replica that no longer
/// qualifies, no bound of it is known (fetched, or confirmed by the monitor
/// since), and some replica could serve the read.
pub fn stranded(topo: &Topology, p: &Picker, max_lag_ms: Option<u64>, exclude: &[&str]) -> bool {
    let Some(seen) = p.seen() else {
        return false;
    };
    if !seen.primary {
        let still = topo
            .replicas
            .iter()
            .find(|r| Arc::ptr_eq(&r.state, &seen.state))
            .is_some_and(|r| qualifies(r, max_lag_ms, exclude));
        if still {
            return false;
        }
    }
    seen.bound.is_none()
        && !seen.state.confirmed_since(seen.at)
        && !topo.primary.state.confirmed_since(seen.at)
        && topo
            .replicas
            .iter()
            .any(|r| qualifies(r, max_lag_ms, exclude))
}

#[cfg(test)]
mod tests {
    use crate::consistency::{choose, Choice};
    use crate::topology::View;
    use causeway_config::{Consistency, ReadBalance};

    use super::*;

    fn topo(weights: &[u32]) -> Topology {
        let mut text = String::from(
            "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n",
        );
        for (i, w) in weights.iter().enumerate() {
            text.push_str(&format!(
                "[[replicas]]\nname='r{}'\naddress='127.0.0.1:{}'\nweight={w}\n",
                i + 1,
                i + 2
            ));
        }
        let cfg = causeway_config::Config::from_str_named(&text, "t").unwrap();
        Topology::build(Arc::new(cfg), None).unwrap()
    }

    fn replica_of(c: Choice) -> String {
        match c {
            Choice::Serve(b) => b.name().to_string(),
            other => panic!("replica expected, got {other:?}"),
        }
    }

    #[test]
    fn never_reads_backwards_across_replicas() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let set = |s: &str| Arc::new(GtidSet::parse(&format!("{uuid}:{s}")).unwrap());
        let t = topo(&[1, 1]);
        let none = GtidSet::new();
        t.replicas[0].state.publish(View {
            gtid_executed: set("1-10"),
            ..View::default()
        });
        t.replicas[1].state.publish(View {
            gtid_executed: set("1-5"),
            ..View::default()
        });
        let mut p = Picker::new(0, ReadBalance::Statement);
        // the cursor starts on r1: read there
        assert_eq!(
            replica_of(choose(&t, Consistency::Causal, &none, None, &[], &mut p)),
            "r1"
        );
        p.saw(&t.replicas[0], false);
        // next pick is r2, but no probe was sent since the read: stay on r1
        assert_eq!(
            replica_of(choose(&t, Consistency::Causal, &none, None, &[], &mut p)),
            "r1"
        );
        p.saw(&t.replicas[0], false);
        // r2 lags: while r1 qualifies the session stays there (no wait)
        t.replicas[0].state.confirm(std::time::Instant::now());
        *p.cursor_mut() = 1;
        assert_eq!(
            replica_of(choose(&t, Consistency::Causal, &none, None, &[], &mut p)),
            "r1"
        );
        // r1 leaves; the monitor confirmed its set after the read: r2 must
        // reach it first
        t.replicas[0].state.publish(View {
            gtid_executed: set("1-10"),
            eligible: false,
            ..View::default()
        });
        *p.cursor_mut() = 1;
        match choose(&t, Consistency::Causal, &none, None, &[], &mut p) {
            Choice::WaitFor(b) => {
                assert_eq!(b.name(), "r2");
                assert_eq!(
                    p.take_wait_set().map(|s| s.to_string()),
                    Some(format!("{uuid}:1-10"))
                );
            }
            other => panic!("{other:?}"),
        }
        // once the monitor knows r2 has it, r2 is read at once
        t.replicas[1].state.publish(View {
            gtid_executed: set("1-12"),
            ..View::default()
        });
        *p.cursor_mut() = 1;
        assert_eq!(
            replica_of(choose(&t, Consistency::Causal, &none, None, &[], &mut p)),
            "r2"
        );
        // eventual reads ignore the floor
        t.replicas[0].state.publish(View {
            gtid_executed: set("1-10"),
            ..View::default()
        });
        p.saw(&t.replicas[1], false);
        *p.cursor_mut() = 0;
        assert_eq!(
            replica_of(choose(&t, Consistency::Eventual, &none, None, &[], &mut p)),
            "r1"
        );
    }

    #[test]
    fn a_replica_that_left_without_a_known_floor_strands_the_session() {
        let t = topo(&[1, 1]);
        let none = GtidSet::new();
        let mut p = Picker::new(0, ReadBalance::Session);
        let home = replica_of(choose(&t, Consistency::Causal, &none, None, &[], &mut p));
        let i = usize::from(home == "r2");
        p.saw(&t.replicas[i], false);
        assert!(!stranded(&t, &p, None, &[]));
        t.replicas[i].state.publish(View {
            eligible: false,
            ..View::default()
        });
        assert!(stranded(&t, &p, None, &[]), "no probe since the read");
        assert!(matches!(
            choose(&t, Consistency::Causal, &none, None, &[], &mut p),
            Choice::Primary(_)
        ));
        t.primary.state.confirm(std::time::Instant::now());
        assert!(!stranded(&t, &p, None, &[]));
        // the primary's set bounds what the session read: the other replica
        // (whose set is unknown, empty) waits for it
        assert!(matches!(
            choose(&t, Consistency::Causal, &none, None, &[], &mut p),
            Choice::WaitFor(_) | Choice::Serve(_)
        ));
    }
}
