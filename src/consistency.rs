//! Consistency modes, tokens and replica choice (the per-session
//! `@@causeway.*` settings are in `settings`).
//!
//! A session's token is a GTID set: everything it committed (taken from the
//! primary's OK packets, `session_track_gtids = ALL_GTIDS`, so the token is
//! the primary's executed set at the commit) plus any token the client set.
//! A read in `causal` mode may run only on a replica whose executed GTID set
//! contains the whole token; `eventual` ignores the token; `strong` always
//! reads the primary.
//!
//! Replica choice is weighted: with `read_balance = "session"` (the
//! default) each session has a home replica, the live sessions split
//! exactly by weight (±1, `crate::balance::ledger`), re-checked when the
//! topology, eligibility or the counts change, and only the sessions needed
//! to restore the shares move; with
//! `"statement"` every read advances the session's cursor over the
//! cumulative weights. Either way the per-statement path takes no lock
//! (the session counts are atomics, read only after a change).
//!
//! Zones (`crate::zone`) narrow the preferred replicas to the local zone's
//! when any of them qualifies; a sticky key (`@@causeway.sticky_key`)
//! replaces the home by weighted rendezvous over the key.
//!
//! Monotonic reads (causal mode): a read on a replica other than the one the
//! session last read on must also contain a *floor*, a GTID set the monitor
//! read (from that last backend or from the primary) with a probe sent after
//! the last read ended, so a superset of anything that read could see.

use causeway_config::{Consistency, ReadBalance};
use causeway_gtid::GtidSet;
use std::sync::Arc;

mod settings;

pub use crate::balance::Picker;
pub use crate::monotonic::stranded;
use crate::monotonic::{floor, readiness, Floor, Ready};
use crate::topology::{Backend, Topology};
pub use settings::{check_options_len, clip_value, ConsistencyError, Settings};

/// Where a read may go.
#[derive(Debug, Clone)]
pub enum Choice {
    /// This backend (a replica, or whichever backend routing named); it
    /// already satisfies the requirement.
    Serve(Arc<Backend>),
    /// This replica, after it has applied the token (wait there first).
    WaitFor(Arc<Backend>),
    /// The primary, because no replica qualifies (reason).
    Primary(&'static str),
}

/// Replicas of pool `pool` (`None`: the general pool) routing may use:
/// healthy, weighted, within the lag budget.
pub fn eligible_in<'a>(
    topo: &'a Topology,
    pool: Option<&str>,
    max_lag_ms: Option<u64>,
    exclude: &[&str],
) -> Vec<&'a Arc<Backend>> {
    topo.replicas
        .iter()
        .filter(|r| qualifies_in(r, pool, max_lag_ms, exclude))
        .collect()
}

/// Whether replica `r` may take general reads: in the general pool,
/// weighted, not excluded, healthy and within the lag budget.
pub fn qualifies(r: &Backend, max_lag_ms: Option<u64>, exclude: &[&str]) -> bool {
    qualifies_in(r, None, max_lag_ms, exclude)
}

/// [`qualifies`] for reads routed to pool `pool` (`None`: the general
/// pool). A replica takes only the reads of its own pool.
pub fn qualifies_in(
    r: &Backend,
    pool: Option<&str>,
    max_lag_ms: Option<u64>,
    exclude: &[&str],
) -> bool {
    let member = match pool {
        None => r.config.in_default_pool(),
        Some(p) => r.config.pool == p,
    };
    if !member || r.config.weight == 0 || exclude.contains(&r.name()) {
        return false;
    }
    let v = r.state.view.load();
    v.eligible
        && match max_lag_ms {
            Some(max) => v.lag_ms.is_some_and(|l| l <= max),
            None => true,
        }
}

/// Weighted pick among `candidates` for `read_balance = "statement"`: the
/// cursor walks the cumulative weights, one step per pick.
pub fn pick<'a>(cursor: &mut u64, candidates: &[&'a Arc<Backend>]) -> Option<&'a Arc<Backend>> {
    let total: u64 = candidates.iter().map(|b| b.config.weight as u64).sum();
    if total == 0 {
        return None;
    }
    let mut n = *cursor % total;
    *cursor = cursor.wrapping_add(1);
    candidates
        .iter()
        .find(|b| {
            let w = b.config.weight as u64;
            let hit = n < w;
            n = n.saturating_sub(w);
            hit
        })
        .or(candidates.last())
        .copied()
}

/// The monotonic-reads floor for reading on `r`: none for a read routed to
/// a named pool (its members may be other stores, e.g. a CDC-fed read
/// model; such a read is held to the token only and is not remembered as
/// the session's last read).
fn floor_in(pool: Option<&str>, p: &Picker, r: &Backend, topo: &Topology) -> Floor {
    if pool.is_some() {
        Floor::None
    } else {
        floor(p, r, topo)
    }
}

/// Chooses the backend of a read under `mode` with requirement `token`,
/// never one in `exclude` (replicas that just failed or are full).
///
/// The preferred replica is, among the qualifying replicas of this
/// instance's zone (or, when none of those qualifies, among all qualifying
/// replicas; see `crate::zone`): the one weighted rendezvous over the
/// sticky key picks, when the read has one; else the session's home
/// (`read_balance = "session"`, see `crate::balance`) or the next by
/// weight (`"statement"`). A causal read goes there when the monitor knows
/// it has the token and the floor of monotonic reads; else to another
/// qualifying replica known to have both, local ones first, then other
/// zones' (a one-off; the home does not change); else it waits there for
/// both (`WaitFor`, the set in [`Picker::take_wait_set`]); with no sound
/// floor yet, it stays on the replica of the session's last read, or goes
/// to the primary.
pub fn choose(
    topo: &Topology,
    mode: Consistency,
    token: &GtidSet,
    max_lag_ms: Option<u64>,
    exclude: &[&str],
    p: &mut Picker,
) -> Choice {
    let c = choose_in(topo, mode, token, max_lag_ms, exclude, p);
    if let Choice::Serve(b) | Choice::WaitFor(b) = &c {
        if b.role != crate::topology::Role::Primary {
            crate::zone::count_read(topo, b);
        }
    }
    c
}

/// [`choose`] without the zone counting.
fn choose_in(
    topo: &Topology,
    mode: Consistency,
    token: &GtidSet,
    max_lag_ms: Option<u64>,
    exclude: &[&str],
    p: &mut Picker,
) -> Choice {
    p.take_wait_set();
    if mode == Consistency::Strong {
        return Choice::Primary("strong consistency");
    }
    // a query rule may route the read to a named pool (crate::rules)
    let pool = p.pool().map(|x| Arc::clone(&x.name));
    let pool = pool.as_deref();
    let ok = |r: &Backend| qualifies_in(r, pool, max_lag_ms, exclude);
    let local_only = crate::zone::any_local(topo, ok);
    let preferable = |r: &Backend| ok(r) && (!local_only || crate::zone::is_local(topo, r));
    let preferred = if let Some(key) = p.sticky() {
        let id = crate::balance::sticky_id(key);
        let candidates = topo.replicas.iter().enumerate();
        crate::balance::winner(id, candidates.filter(|(_, r)| preferable(r)))
            .and_then(|i| topo.replicas.get(i))
            .cloned()
    } else {
        match p.balance() {
            ReadBalance::Session => {
                // the home is kept among what every general read accepts
                let general_ok = |r: &Backend| qualifies(r, None, &[]);
                let any_local = if max_lag_ms.is_none() && exclude.is_empty() {
                    local_only
                } else {
                    crate::zone::any_local(topo, general_ok)
                };
                let general =
                    |r: &Backend| general_ok(r) && (!any_local || crate::zone::is_local(topo, r));
                let general: Option<&dyn Fn(&Backend) -> bool> =
                    if pool.is_none() { Some(&general) } else { None };
                p.home(topo, general, preferable).cloned()
            }
            ReadBalance::Statement => {
                let candidates: Vec<&Arc<Backend>> = eligible_in(topo, pool, max_lag_ms, exclude)
                    .into_iter()
                    .filter(|r| preferable(r))
                    .collect();
                pick(p.cursor_mut(), &candidates).cloned()
            }
        }
    };
    let Some(b) = preferred else {
        return Choice::Primary("no eligible replica");
    };
    if mode == Consistency::Eventual {
        return Choice::Serve(b);
    }
    let first = readiness(&b, token, floor_in(pool, p, &b, topo));
    if let Ready::Now = first {
        return Choice::Serve(b);
    }
    // local replicas first, then other zones'
    let mut others: Vec<&Arc<Backend>> = topo
        .replicas
        .iter()
        .filter(|r| !Arc::ptr_eq(r, &b) && ok(r))
        .collect();
    others.sort_by_key(|r| !crate::zone::is_local(topo, r));
    for r in &others {
        if let Ready::Now = readiness(r, token, floor_in(pool, p, r, topo)) {
            return Choice::Serve(Arc::clone(r));
        }
    }
    if let Ready::Wait(need) = first {
        if let Some(need) = need {
            p.set_wait_set(need);
        }
        return Choice::WaitFor(b);
    }
    // no sound floor for b yet: the replica of the last read needs none
    for r in &others {
        if let (Floor::None, Ready::Wait(need)) =
            (floor_in(pool, p, r, topo), readiness(r, token, Floor::None))
        {
            if let Some(need) = need {
                p.set_wait_set(need);
            }
            return Choice::WaitFor(Arc::clone(r));
        }
    }
    Choice::Primary("monotonic reads: no replica known to have what the session read")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::View;

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

    #[test]
    fn weighted_split_is_exact_over_whole_cycles() {
        let mut cursor = Picker::new(0, ReadBalance::Statement);
        let t = topo(&[3, 1]);
        let mut counts = [0usize; 2];
        for _ in 0..10_000 {
            let c = choose(
                &t,
                Consistency::Eventual,
                &GtidSet::new(),
                None,
                &[],
                &mut cursor,
            );
            let Choice::Serve(b) = c else {
                panic!("replica expected")
            };
            counts[if b.name() == "r1" { 0 } else { 1 }] += 1;
        }
        assert_eq!(counts, [7_500, 2_500]);
    }

    fn replica_of(c: Choice) -> String {
        match c {
            Choice::Serve(b) => b.name().to_string(),
            other => panic!("replica expected, got {other:?}"),
        }
    }

    #[test]
    fn session_balance_splits_sessions_exactly_by_weight_and_keeps_the_replica() {
        let t = topo(&[3, 1]);
        let mut per_replica = [0usize; 2];
        let none = GtidSet::new();
        let mut live = Vec::new();
        for id in 1..=4_000 {
            let mut p = Picker::new(id, ReadBalance::Session);
            let first = replica_of(choose(&t, Consistency::Eventual, &none, None, &[], &mut p));
            for _ in 0..5 {
                let again = replica_of(choose(&t, Consistency::Eventual, &none, None, &[], &mut p));
                assert_eq!(again, first, "session {id} moved");
            }
            per_replica[usize::from(first == "r2")] += 1;
            // a one-off exclusion (a failed read) goes elsewhere; the home stays
            let other = replica_of(choose(
                &t,
                Consistency::Eventual,
                &none,
                None,
                &[&first],
                &mut p,
            ));
            assert_ne!(other, first);
            let back = replica_of(choose(&t, Consistency::Eventual, &none, None, &[], &mut p));
            assert_eq!(back, first);
            // every prefix of sessions is split 3:1 within one session
            let n = id as f64;
            assert!(
                (per_replica[0] as f64 - 0.75 * n).abs() <= 1.0,
                "{per_replica:?} after {id}"
            );
            live.push(p);
        }
        assert_eq!(per_replica, [3_000, 1_000]);
        let homed: Vec<u64> = t
            .replicas
            .iter()
            .map(|r| r.state.homed.load(std::sync::atomic::Ordering::Acquire))
            .collect();
        assert_eq!(homed, [3_000, 1_000]);
        drop(live);
        let homed: Vec<u64> = t
            .replicas
            .iter()
            .map(|r| r.state.homed.load(std::sync::atomic::Ordering::Acquire))
            .collect();
        assert_eq!(homed, [0, 0], "ended sessions free their places");
        assert_eq!(t.ledger.total(), 0);
    }

    #[test]
    fn sessions_follow_eligibility_and_only_the_needed_ones_move() {
        let t = topo(&[1, 1]);
        let none = GtidSet::new();
        let mut pickers: Vec<Picker> = (1..=1_000)
            .map(|id| Picker::new(id, ReadBalance::Session))
            .collect();
        let homes: Vec<String> = pickers
            .iter_mut()
            .map(|p| replica_of(choose(&t, Consistency::Eventual, &none, None, &[], p)))
            .collect();
        assert_eq!(homes.iter().filter(|h| *h == "r1").count(), 500);
        t.replicas[0].state.publish(View {
            eligible: false,
            ..View::default()
        });
        for p in &mut pickers {
            assert_eq!(
                replica_of(choose(&t, Consistency::Eventual, &none, None, &[], p)),
                "r2"
            );
        }
        t.replicas[0].state.publish(View::default());
        let back: Vec<String> = pickers
            .iter_mut()
            .map(|p| replica_of(choose(&t, Consistency::Eventual, &none, None, &[], p)))
            .collect();
        // exactly half move back (the least that restores 1:1), and then stay
        assert_eq!(back.iter().filter(|h| *h == "r1").count(), 500);
        for (p, home) in pickers.iter_mut().zip(&back) {
            assert_eq!(
                &replica_of(choose(&t, Consistency::Eventual, &none, None, &[], p)),
                home
            );
        }
    }

    #[test]
    fn move_reasons() {
        use crate::balance::reason;
        let t = topo(&[1, 1]);
        let before = (
            t.generation,
            vec![("r1".to_string(), 1), ("r2".to_string(), 1)],
        );
        assert_eq!(reason(None, "r2", &before, false, &t), "left");
        assert_eq!(
            reason(Some((false, false)), "r2", &before, false, &t),
            "left"
        );
        assert_eq!(
            reason(Some((false, true)), "r2", &before, false, &t),
            "returned"
        );
        assert_eq!(
            reason(Some((true, true)), "r1", &before, true, &t),
            "returned"
        );
        assert_eq!(
            reason(Some((true, true)), "r1", &before, false, &t),
            "rebalanced"
        );
        let only_r1 = (0, vec![("r1".to_string(), 1)]);
        assert_eq!(
            reason(Some((true, true)), "r2", &only_r1, false, &t),
            "added"
        );
        let t3 = topo(&[3, 1]);
        let old = (0, before.1.clone());
        assert_eq!(
            reason(Some((true, true)), "r1", &old, false, &t3),
            "reweighted"
        );
    }

    #[test]
    fn causal_needs_the_whole_token() {
        let mut cursor = Picker::new(0, ReadBalance::Statement);
        let t = topo(&[1, 1]);
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let have = GtidSet::parse(&format!("{uuid}:1-10")).unwrap();
        t.replicas[0].state.publish(View {
            gtid_executed: Arc::new(have),
            ..View::default()
        });
        let token = GtidSet::parse(&format!("{uuid}:1-10")).unwrap();
        for _ in 0..10 {
            match choose(&t, Consistency::Causal, &token, None, &[], &mut cursor) {
                Choice::Serve(b) => assert_eq!(b.name(), "r1"),
                other => panic!("{other:?}"),
            }
        }
        let ahead = GtidSet::parse(&format!("{uuid}:1-11")).unwrap();
        assert!(matches!(
            choose(&t, Consistency::Causal, &ahead, None, &[], &mut cursor),
            Choice::WaitFor(_)
        ));
        assert!(matches!(
            choose(&t, Consistency::Strong, &token, None, &[], &mut cursor),
            Choice::Primary(_)
        ));
    }

    #[test]
    fn session_lag_budget_excludes_lagging_and_unmeasured_replicas() {
        let t = topo(&[1, 1]);
        t.replicas[0].state.publish(View {
            lag_ms: Some(2_000),
            ..View::default()
        });
        t.replicas[1].state.publish(View {
            lag_ms: Some(10),
            ..View::default()
        });
        let names: Vec<&str> = eligible_in(&t, None, Some(100), &[])
            .iter()
            .map(|b| b.name())
            .collect();
        assert_eq!(names, ["r2"]);
        assert_eq!(eligible_in(&t, None, None, &[]).len(), 2);
        assert_eq!(eligible_in(&t, None, None, &["r1"]).len(), 1);
        t.replicas[1].state.publish(View::default());
        assert!(
            eligible_in(&t, None, Some(100), &[]).is_empty(),
            "unknown lag does not meet a budget"
        );
    }

    #[test]
    fn ineligible_replicas_fall_back_to_primary() {
        let mut cursor = Picker::new(0, ReadBalance::Statement);
        let t = topo(&[1]);
        t.replicas[0].state.publish(View {
            eligible: false,
            ..View::default()
        });
        assert!(matches!(
            choose(
                &t,
                Consistency::Eventual,
                &GtidSet::new(),
                None,
                &[],
                &mut cursor
            ),
            Choice::Primary(_)
        ));
    }
}
