//! [`Picker::home`]: the session's home replica under
//! `read_balance = "session"`, kept in the instance's ledger (exact
//! weights, see `ledger`), cached until the topology, eligibility or any
//! count changes, and the reason counted when it moves.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ledger::{self, Rehome, Standing};
use super::{score, winner, Home, Picker};
use crate::metrics::{self as m, move_reason};
use crate::topology::{Backend, Topology};

impl Picker {
    /// The replica for this read: the session's home when `strict` (what
    /// this read accepts) accepts it, else the session's rendezvous winner
    /// among those `strict` accepts (a one-off; the home stays).
    ///
    /// `general` is what any read of the session's general pool accepts
    /// (the same for every session of the instance): the home is kept among
    /// those replicas, in the ledger. `None` (a read routed to a named
    /// pool) leaves the home alone.
    pub fn home<'a>(
        &mut self,
        topo: &'a Topology,
        general: Option<&dyn Fn(&Backend) -> bool>,
        strict: impl Fn(&Backend) -> bool,
    ) -> Option<&'a Arc<Backend>> {
        let home = general.and_then(|g| self.balanced(topo, g));
        if let Some(b) = home.and_then(|i| topo.replicas.get(i)) {
            if strict(b) {
                return Some(b);
            }
        }
        let candidates = topo.replicas.iter().enumerate();
        winner(self.id, candidates.filter(|(_, r)| strict(r))).and_then(|i| topo.replicas.get(i))
    }

    /// The index of the session's home among the replicas `general`
    /// accepts (None when it has none there), checked against the ledger
    /// when anything changed since the last check.
    fn balanced(&mut self, topo: &Topology, general: &dyn Fn(&Backend) -> bool) -> Option<usize> {
        let flips = topo.replicas.iter().fold(0u64, |s, r| {
            s.wrapping_add(r.state.flips.load(Ordering::Acquire))
        });
        let epoch = topo.ledger.epoch();
        if let Some(h) = &self.home {
            if h.generation == topo.generation && h.flips == flips && h.epoch == epoch {
                return h.idx;
            }
        }
        let eligible: Vec<&Arc<Backend>> = topo.replicas.iter().filter(|r| general(r)).collect();
        let scores: Vec<f64> = eligible
            .iter()
            .map(|r| score(self.id, r.name(), r.config.weight))
            .collect();
        let standings = || -> Vec<Standing> {
            eligible
                .iter()
                .zip(&scores)
                .map(|(r, &score)| Standing {
                    weight: r.config.weight,
                    homed: r.state.homed.load(Ordering::Acquire),
                    score,
                })
                .collect()
        };
        let settled = match self.slot.as_mut() {
            None if eligible.is_empty() => true,
            None => {
                ledger::reserve(&topo.ledger);
                self.slot = ledger::place(&topo.ledger, &eligible, standings);
                if self.slot.is_none() {
                    ledger::unreserve(&topo.ledger);
                }
                true
            }
            Some(slot) => {
                let from = slot.name().to_string();
                match ledger::rehome(slot, &topo.ledger, &eligible, standings) {
                    Rehome::Stay => true,
                    Rehome::Blocked => false,
                    Rehome::Moved(to) => {
                        let to = eligible.get(to).map_or("", |r| r.name()).to_string();
                        self.count_move(topo, &from, &to, flips, general);
                        true
                    }
                }
            }
        };
        let idx = self.slot.as_ref().and_then(|s| {
            topo.replicas
                .iter()
                .position(|r| Arc::ptr_eq(&r.state, s.state()) && general(r))
        });
        self.last_flips = flips;
        if self.weights.0 != topo.generation {
            self.weights = (
                topo.generation,
                topo.replicas
                    .iter()
                    .map(|r| (r.name().to_string(), r.config.weight))
                    .collect(),
            );
        }
        self.home = settled.then_some(Home {
            generation: topo.generation,
            flips,
            epoch,
            idx,
        });
        idx
    }

    /// Counts (and logs) the session's move from `from` to `to`.
    fn count_move(
        &self,
        topo: &Topology,
        from: &str,
        to: &str,
        flips: u64,
        general: &dyn Fn(&Backend) -> bool,
    ) {
        let old = topo.replicas.iter().find(|r| r.name() == from);
        let why = reason(
            old.map(|r| {
                (
                    general(r),
                    r.state.view.load().eligible && r.config.weight > 0,
                )
            }),
            to,
            &self.weights,
            flips != self.last_flips,
            topo,
        );
        metrics::counter!(m::SESSION_MOVES, "reason" => why).increment(1);
        tracing::debug!(session = self.id, from, to, reason = why, "session moved");
    }
}

/// Why a session moved to `to` (a `move_reason` value). `old` is its old
/// replica's standing, when it is still in the topology: (still in the
/// set homes are kept in, still eligible by itself). `before` holds the
/// replica names and weights of the generation of the session's last check;
/// `flipped`, whether any replica's eligibility flipped since.
///
/// Its replica no longer qualifies, or is gone → left (but a replica still
/// eligible that only stopped being preferred, a local one having returned,
/// → returned); a reload since the last check added `to` → added, or changed
/// a weight → reweighted; an eligibility flip since → returned; otherwise
/// sessions started or ended and the counts drifted → rebalanced.
pub fn reason(
    old: Option<(bool, bool)>,
    to: &str,
    before: &(u64, Vec<(String, u32)>),
    flipped: bool,
    now: &Topology,
) -> &'static str {
    match old {
        None | Some((false, false)) => return move_reason::LEFT,
        Some((false, true)) => return move_reason::RETURNED,
        Some((true, _)) => {}
    }
    if before.0 != now.generation {
        if !before.1.iter().any(|(n, _)| n == to) {
            return move_reason::ADDED;
        }
        let changed = now.replicas.iter().any(|r| {
            before
                .1
                .iter()
                .find(|(n, _)| n == r.name())
                .is_some_and(|(_, w)| *w != r.config.weight)
        });
        if changed {
            return move_reason::REWEIGHTED;
        }
    }
    if flipped {
        move_reason::RETURNED
    } else {
        move_reason::REBALANCED
    }
}
