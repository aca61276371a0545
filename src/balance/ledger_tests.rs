//! Tests of the exact-weights arithmetic (`ledger`): assignment, the move
//! rules, the least number of moves, and the atomic counts under threads.

use super::ledger::{assign, bounds, needed_moves, relocate, Standing};
use proptest::prelude::*;

/// A single-threaded model of the ledger: replica weights, which replicas
/// are eligible, and each live session's replica.
#[derive(Debug, Clone)]
struct Model {
    weights: Vec<u32>,
    eligible: Vec<bool>,
    sessions: Vec<usize>,
}

impl Model {
    /// The eligible replicas' indices.
    fn set(&self) -> Vec<usize> {
        (0..self.weights.len())
            .filter(|&i| self.eligible[i] && self.weights[i] > 0)
            .collect()
    }

    fn standings(&self, id: u64) -> Vec<Standing> {
        self.set()
            .into_iter()
            .map(|r| Standing {
                weight: self.weights[r],
                homed: self.sessions.iter().filter(|&&s| s == r).count() as u64,
                score: super::score(id, &format!("r{r}"), self.weights[r]),
            })
            .collect()
    }

    fn outside(&self) -> u64 {
        let set = self.set();
        self.sessions.iter().filter(|s| !set.contains(s)).count() as u64
    }

    fn needed(&self) -> u64 {
        needed_moves(&self.standings(0), self.outside())
    }

    /// A new session (id `id`) takes its place.
    fn open(&mut self, id: u64) {
        let set = self.set();
        if set.is_empty() {
            return;
        }
        let n = self.sessions.len() as u64 + 1;
        let (to, below) = assign(n, &self.standings(id)).expect("a replica");
        assert!(self.standings(id)[to].homed < below, "assignment over cap");
        self.sessions.push(set[to]);
    }

    /// Every session checks its home in turn (starting at `start`) until a
    /// whole pass moves nobody; the number of moves.
    fn settle(&mut self, start: usize) -> u64 {
        let mut moves = 0;
        loop {
            let mut moved = false;
            let len = self.sessions.len();
            for k in 0..len {
                let s = (start + k) % len;
                let set = self.set();
                if set.is_empty() {
                    return moves;
                }
                let reps = self.standings(s as u64);
                let home = set.iter().position(|&r| r == self.sessions[s]);
                if let Some(m) = relocate(len as u64, home, &reps) {
                    if let (Some(h), Some(k)) = (home, m.keep_above) {
                        assert!(reps[h].homed > k, "leaves below its bound: {m:?}");
                    }
                    assert!(reps[m.to].homed < m.below, "enters above its bound: {m:?}");
                    self.sessions[s] = set[m.to];
                    moves += 1;
                    moved = true;
                }
            }
            if !moved {
                return moves;
            }
        }
    }

    /// Every session homed in the set and every count within ±1 of its share.
    fn assert_balanced(&self) {
        let reps = self.standings(0);
        if reps.is_empty() {
            return;
        }
        assert_eq!(self.outside(), 0, "{self:?}");
        let n = self.sessions.len() as u64;
        let w: u64 = reps.iter().map(|s| u64::from(s.weight)).sum();
        for s in &reps {
            let (floor, ceil) = bounds(s.weight, w, n);
            assert!(
                (floor..=ceil).contains(&s.homed),
                "{} not in [{floor}, {ceil}]: {self:?}",
                s.homed
            );
        }
    }
}

#[test]
fn bounds_are_floor_and_ceiling_of_the_share() {
    assert_eq!(bounds(3, 4, 40), (30, 30));
    assert_eq!(bounds(1, 4, 40), (10, 10));
    assert_eq!(bounds(3, 4, 39), (29, 30));
    assert_eq!(bounds(1, 3, 0), (0, 0));
    assert_eq!(
        bounds(u32::MAX, u64::from(u32::MAX), u64::MAX),
        (u64::MAX, u64::MAX)
    );
}

#[test]
fn forty_sessions_at_three_to_one_split_thirty_ten_and_follow_a_leave_and_return() {
    let mut m = Model {
        weights: vec![3, 1],
        eligible: vec![true, true],
        sessions: Vec::new(),
    };
    for id in 0..40 {
        m.open(id);
        m.assert_balanced();
    }
    assert_eq!(m.standings(0)[0].homed, 30);
    // r1 leaves: its 30 sessions move, nobody else
    m.eligible[0] = false;
    assert_eq!(m.needed(), 30);
    assert_eq!(m.settle(0), 30);
    // r1 returns: 30 of r2's 40 move back, the least possible
    m.eligible[0] = true;
    assert_eq!(m.needed(), 30);
    assert_eq!(m.settle(7), 30);
    m.assert_balanced();
    // close 20 of r1's sessions: 10/10 for shares 15/5, five move
    let mut closed = 0;
    m.sessions.retain(|&s| {
        let keep = s != 0 || closed == 20;
        closed += usize::from(!keep);
        keep
    });
    assert_eq!(m.needed(), 5);
    assert_eq!(m.settle(3), 5);
    m.assert_balanced();
    // 20 new sessions: 30/10 again without a move
    for id in 100..120 {
        m.open(id);
    }
    assert_eq!(m.settle(0), 0);
    assert_eq!(m.standings(0)[0].homed, 30);
}

#[test]
fn a_replica_below_its_floor_is_filled_though_no_replica_is_above_its_ceiling() {
    // 1:1:1, four sessions as 2/2/0: shares 4/3 each, r3 is below its floor
    let mut m = Model {
        weights: vec![1, 1, 1],
        eligible: vec![true, true, true],
        sessions: vec![0, 0, 1, 1],
    };
    assert_eq!(m.needed(), 1);
    assert_eq!(m.settle(0), 1);
    m.assert_balanced();
}

#[derive(Debug, Clone)]
enum Event {
    Open(u8),
    Close(u8, u8),
    Flip(u8),
    Reweight(u8, u8),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (1u8..30).prop_map(Event::Open),
        (1u8..30, any::<u8>()).prop_map(|(n, r)| Event::Close(n, r)),
        any::<u8>().prop_map(Event::Flip),
        (any::<u8>(), 0u8..6).prop_map(|(r, w)| Event::Reweight(r, w)),
    ]
}

proptest! {
    /// After any event, the sessions' checks restore every share within
    /// ±1 in exactly the least number of moves.
    #[test]
    fn any_history_is_rebalanced_with_the_least_moves(
        weights in proptest::collection::vec(1u32..6, 1..5),
        events in proptest::collection::vec(event(), 1..25),
        start in any::<usize>(),
    ) {
        let k = weights.len();
        let mut m = Model { eligible: vec![true; k], weights, sessions: Vec::new() };
        let mut next = 0u64;
        for e in events {
            match e {
                Event::Open(n) => {
                    for _ in 0..n {
                        m.open(next);
                        next += 1;
                    }
                }
                Event::Close(n, r) => {
                    // close up to n sessions of replica r
                    let r = usize::from(r) % k;
                    let mut left = usize::from(n);
                    m.sessions.retain(|&s| {
                        let close = s == r && left > 0;
                        left -= usize::from(close);
                        !close
                    });
                }
                Event::Flip(r) => {
                    let r = usize::from(r) % k;
                    m.eligible[r] = !m.eligible[r];
                }
                Event::Reweight(r, w) => m.weights[usize::from(r) % k] = u32::from(w),
            }
            let needed = m.needed();
            let moves = m.settle(start);
            if !m.set().is_empty() {
                prop_assert_eq!(moves, needed, "{:?}", m);
                m.assert_balanced();
            }
        }
    }

    /// From empty, every prefix of new sessions is balanced without moves.
    #[test]
    fn new_sessions_alone_keep_every_share(
        weights in proptest::collection::vec(1u32..10, 1..6),
        n in 1u64..300,
    ) {
        let mut m = Model { eligible: vec![true; weights.len()], weights, sessions: Vec::new() };
        for id in 0..n {
            m.open(id);
            m.assert_balanced();
        }
    }
}

/// A topology of replicas r1.. with `weights`.
fn topo(weights: &[u32]) -> crate::topology::Topology {
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
    let cfg = causeway_config::Config::from_str_named(&text, "t").expect("config");
    crate::topology::Topology::build(std::sync::Arc::new(cfg), None).expect("topology")
}

/// Sessions opening, reading and ending on four threads while a replica
/// flaps: the counts always match the live sessions, and once each session
/// has read again the split is exact.
#[test]
fn counts_stay_exact_under_threads() {
    use crate::consistency::{choose, Choice, Picker};
    use crate::topology::View;
    use causeway_config::{Consistency, ReadBalance};
    use causeway_gtid::GtidSet;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let t = Arc::new(topo(&[3, 1, 2]));
    let read = |t: &crate::topology::Topology, p: &mut Picker| match choose(
        t,
        Consistency::Eventual,
        &GtidSet::new(),
        None,
        &[],
        p,
    ) {
        Choice::Serve(b) => b.name().to_string(),
        other => panic!("{other:?}"),
    };
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                let mut live: Vec<Picker> = Vec::new();
                for i in 0..2_000u64 {
                    let mut p = Picker::new(w * 10_000 + i, ReadBalance::Session);
                    read(&t, &mut p);
                    live.push(p);
                    if i % 3 == 0 {
                        let gone = live.swap_remove((i as usize * 7) % live.len());
                        drop(gone);
                    }
                    for p in live.iter_mut().rev().take(3) {
                        read(&t, p);
                    }
                    if w == 0 && i % 250 == 0 {
                        let eligible = !t.replicas[0].state.view.load().eligible;
                        t.replicas[0].state.publish(View {
                            eligible,
                            ..View::default()
                        });
                    }
                }
                live
            })
        })
        .collect();
    let mut live: Vec<Picker> = workers
        .into_iter()
        .flat_map(|h| h.join().expect("worker"))
        .collect();
    t.replicas[0].state.publish(View::default());
    let homed = || -> Vec<u64> {
        t.replicas
            .iter()
            .map(|r| r.state.homed.load(Ordering::Acquire))
            .collect()
    };
    assert_eq!(t.ledger.total(), live.len() as u64);
    assert_eq!(homed().iter().sum::<u64>(), live.len() as u64);
    for _ in 0..3 {
        for p in live.iter_mut() {
            read(&t, p);
        }
    }
    let n = live.len() as u64;
    let mut counts = [0u64; 3];
    for p in live.iter_mut() {
        let r = read(&t, p);
        counts[r[1..].parse::<usize>().expect("rN") - 1] += 1;
    }
    assert_eq!(counts.to_vec(), homed());
    for (c, w) in counts.iter().zip([3u32, 1, 2]) {
        let (floor, ceil) = bounds(w, 6, n);
        assert!((floor..=ceil).contains(c), "{counts:?} of {n}");
    }
    drop(live);
    assert_eq!(homed(), vec![0, 0, 0]);
    assert_eq!(t.ledger.total(), 0);
}

/// Sessions that never overlap (each alone in the ledger) still split by
/// weight over time: any replica is within ±1 of a share below 1, and the
/// rendezvous choice among them follows the weights.
#[test]
fn sessions_one_after_another_split_by_weight_over_time() {
    let mut on_r1 = 0;
    for id in 0..20_000u64 {
        let mut m = Model {
            weights: vec![3, 1],
            eligible: vec![true, true],
            sessions: Vec::new(),
        };
        m.open(id);
        on_r1 += usize::from(m.sessions == [0]);
    }
    let share = on_r1 as f64 / 20_000.0;
    assert!((share - 0.75).abs() < 0.02, "{share}");
}
