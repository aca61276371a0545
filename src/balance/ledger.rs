//! The shared side of exact session weights: how many live sessions are
//! homed on each replica, and the arithmetic that decides where a new
//! session goes and which sessions move (`read_balance = "session"`).
//!
//! **State.** Each replica's `BackendState::homed` counts the sessions homed
//! on it; the instance's [`Ledger`] (one per proxy, carried from snapshot to
//! snapshot by `Topology::build_with`) counts all homed sessions (`total`)
//! and bumps `epoch` on every change of any count. A session holds its home
//! as a [`Slot`], whose `Drop` gives the count back, so a session that ends,
//! however it ends, frees its place. Nothing here is a lock: counts change
//! by compare-and-swap, so two sessions can never both take the last place
//! on a replica or both leave one that has a single session too many.
//!
//! **Quota.** With `n` homed sessions and eligible replicas of weights `w_i`
//! (sum `W`), replica `i`'s share is `w_i·n/W`; a state is balanced when
//! every count lies in `[floor, ceil]` of its share (so within ±1 of it),
//! and no session is homed outside the eligible set. Let `A` be the
//! sessions above a ceiling (or outside the set) and `B` the places missing
//! below a floor: any move lowers each by at most one, so at least
//! `max(A, B)` moves are needed. The rules below reach a balanced state in
//! exactly that many when sessions re-check one at a time:
//!
//! - a new session takes its weighted rendezvous winner among the replicas
//!   that stay within their ceiling and keep every floor reachable as more
//!   sessions arrive (`keeps_quota`, a look-ahead over `W` sizes), else the
//!   largest deficit `w_i·n/W − homed_i` (bounded-load rendezvous: short
//!   sessions one after another still split by weight over time);
//! - a session homed outside the set moves to the largest deficit;
//! - a session on a replica above its ceiling moves to the largest deficit
//!   among replicas below their ceiling (a replica below its floor has a
//!   deficit above 1, so it is served first, lowering `A` and `B` at once);
//! - only when no replica is above its ceiling (`A = 0`), a session on a
//!   replica above its floor moves to one below its floor.
//!
//! Everything else stays put, so only the sessions needed to restore the
//! shares move.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::topology::{Backend, BackendState};

/// The instance-wide session counts (see the module doc).
#[derive(Debug, Default)]
pub struct Ledger {
    /// Sessions holding a home (a [`Slot`]).
    total: AtomicU64,
    /// Bumped whenever any homed count changes: a session whose cached
    /// home was checked at another epoch checks again.
    epoch: AtomicU64,
}

impl Ledger {
    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Sessions holding a home.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Adds one to `c` while it is below `below`; whether it did.
fn take_below(c: &AtomicU64, below: u64) -> bool {
    c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
        (h < below).then(|| h + 1)
    })
    .is_ok()
}

/// Takes one from `c` while it is above `above`; whether it did.
fn give_above(c: &AtomicU64, above: u64) -> bool {
    c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
        (h > above).then(|| h - 1)
    })
    .is_ok()
}

/// One session's place on a replica: counted in that replica's `homed`
/// and in the ledger's `total` for as long as it lives.
#[derive(Debug)]
pub struct Slot {
    state: Arc<BackendState>,
    name: Arc<str>,
    ledger: Arc<Ledger>,
}

impl Slot {
    /// Takes a place on `to` for a new session: `total` is already counted
    /// (`reserve`); the place is taken while `to` is below `below`.
    fn take(ledger: &Arc<Ledger>, to: &Backend, below: u64) -> Option<Slot> {
        if !take_below(&to.state.homed, below) {
            return None;
        }
        ledger.bump();
        Some(Slot {
            state: Arc::clone(&to.state),
            name: Arc::from(to.name()),
            ledger: Arc::clone(ledger),
        })
    }

    /// The replica state it counts on.
    pub fn state(&self) -> &Arc<BackendState> {
        &self.state
    }

    /// The replica's name when the place was taken.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the place to `to` as `m` allows: leaves the current replica
    /// only while it stays above `m.keep_above` (unconditionally for
    /// `None`), and enters `to` only while it is below `m.below`. Whether
    /// it moved (if not, nothing changed).
    fn transfer(&mut self, to: &Backend, m: &Move) -> bool {
        let left = match m.keep_above {
            Some(k) => give_above(&self.state.homed, k),
            None => give_above(&self.state.homed, 0),
        };
        if !left {
            return false;
        }
        if !take_below(&to.state.homed, m.below) {
            self.state.homed.fetch_add(1, Ordering::AcqRel);
            return false;
        }
        self.state = Arc::clone(&to.state);
        self.name = Arc::from(to.name());
        self.ledger.bump();
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // both were counted by this slot: neither can be 0 here
        give_above(&self.state.homed, 0);
        give_above(&self.ledger.total, 0);
        self.ledger.bump();
    }
}

/// One eligible replica as a session sees it when it checks its home.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// Its weight (> 0).
    pub weight: u32,
    /// Sessions homed on it.
    pub homed: u64,
    /// This session's rendezvous score on it (the tie-break; higher wins).
    pub score: f64,
}

/// `floor` and `ceil` of `weight · n / total_weight`.
pub fn bounds(weight: u32, total_weight: u64, n: u64) -> (u64, u64) {
    let num = u128::from(weight) * u128::from(n);
    let w = u128::from(total_weight.max(1));
    let clip = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    (clip(num / w), clip(num.div_ceil(w)))
}

/// The index of the largest deficit `weight·n/W − homed` among the
/// standings `pick` accepts, ties by score.
fn largest_deficit(n: u64, reps: &[Standing], pick: impl Fn(usize) -> bool) -> Option<usize> {
    let total_weight: u64 = reps.iter().map(|s| u64::from(s.weight)).sum();
    let deficit = |s: &Standing| {
        i128::from(s.weight) * i128::from(n) - i128::from(s.homed) * i128::from(total_weight)
    };
    let mut best: Option<usize> = None;
    for (i, s) in reps.iter().enumerate() {
        if !pick(i) {
            continue;
        }
        let better = match best.and_then(|b| reps.get(b)) {
            None => true,
            Some(b) => {
                let (d, bd) = (deficit(s), deficit(b));
                d > bd || (d == bd && s.score > b.score)
            }
        };
        if better {
            best = Some(i);
        }
    }
    best
}

/// Greatest common divisor.
fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Above this sum of weights (divided by their gcd) a new session takes the
/// largest deficit without the look-ahead of [`keeps_quota`].
const LOOKAHEAD_MAX: u64 = 1024;

/// Whether the new (`n`-th) session may go to `reps[i]` (weights summing
/// to `total_weight`, already divided by their gcd): `i` stays within the
/// ceiling of its share, and for every size `m` from `n` to `n + W + 1`
/// the sessions then homed still leave room for every replica's floor
/// (`Σ max(homed_j, floor_j(m)) ≤ m`). This is Still's (1979) eligibility
/// test for house-monotone apportionment within quota: choosing only such
/// replicas, sessions that only arrive never push a share outside ±1.
fn keeps_quota(i: usize, n: u64, reps: &[Standing], weights: &[u64], total_weight: u64) -> bool {
    let clip = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    let floor =
        |j: usize, m: u64| clip(u128::from(weights[j]) * u128::from(m) / u128::from(total_weight));
    let ceil = clip((u128::from(weights[i]) * u128::from(n)).div_ceil(u128::from(total_weight)));
    if reps[i].homed >= ceil {
        return false;
    }
    (n..=n.saturating_add(total_weight + 1)).all(|m| {
        let need: u64 = reps
            .iter()
            .enumerate()
            .map(|(j, s)| (s.homed + u64::from(j == i)).max(floor(j, m)))
            .sum();
        need <= m
    })
}

/// Where a new session goes when `n` sessions (itself included) are
/// homed: the index of its replica and the count below which it may take
/// the place there (the replica's ceiling). The session's weighted
/// rendezvous winner among the replicas [`keeps_quota`] accepts (bounded-load
/// rendezvous), else the largest deficit. (Always the largest deficit
/// would be exact too, but with few live sessions it sends every new one
/// to the heaviest replica: short sessions one after another would all
/// land there. Rendezvous keeps them split by weight over time.)
pub fn assign(n: u64, reps: &[Standing]) -> Option<(usize, u64)> {
    let total_weight: u64 = reps.iter().map(|s| u64::from(s.weight)).sum();
    let g = reps
        .iter()
        .fold(0, |g, s| gcd(g, u64::from(s.weight)))
        .max(1);
    let weights: Vec<u64> = reps.iter().map(|s| u64::from(s.weight) / g).collect();
    let reduced = total_weight / g;
    let to = (reduced <= LOOKAHEAD_MAX)
        .then(|| {
            (0..reps.len())
                .filter(|&i| keeps_quota(i, n, reps, &weights, reduced))
                .max_by(|&x, &y| reps[x].score.total_cmp(&reps[y].score))
        })
        .flatten()
        .or_else(|| largest_deficit(n, reps, |_| true))?;
    let below = reps
        .get(to)
        .map_or(0, |s| bounds(s.weight, total_weight, n).1);
    Some((to, below))
}

/// A move a session's check asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The index of the replica to move to.
    pub to: usize,
    /// Leave the current replica only while its count stays above this
    /// (`None`: the session is homed outside the eligible set and leaves
    /// unconditionally).
    pub keep_above: Option<u64>,
    /// Enter `to` only while its count is below this.
    pub below: u64,
}

/// Whether the session homed at `home` (an index in `reps`, `None` when
/// its replica is not eligible) should move, with `n` sessions homed in
/// all: see the module doc for the rules.
pub fn relocate(n: u64, home: Option<usize>, reps: &[Standing]) -> Option<Move> {
    let total_weight: u64 = reps.iter().map(|s| u64::from(s.weight)).sum();
    let b: Vec<(u64, u64)> = reps
        .iter()
        .map(|s| bounds(s.weight, total_weight, n))
        .collect();
    let below_ceil = |i: usize| reps[i].homed < b[i].1;
    let below_floor = |i: usize| reps[i].homed < b[i].0;
    let Some(h) = home else {
        let to =
            largest_deficit(n, reps, below_ceil).or_else(|| largest_deficit(n, reps, |_| true))?;
        let below = if below_ceil(to) { b[to].1 } else { u64::MAX };
        return Some(Move {
            to,
            keep_above: None,
            below,
        });
    };
    let (floor, ceil) = *b.get(h)?;
    let mine = reps[h].homed;
    if mine > ceil {
        let to = largest_deficit(n, reps, |i| i != h && below_ceil(i))?;
        return Some(Move {
            to,
            keep_above: Some(ceil),
            below: b[to].1,
        });
    }
    let in_set: u64 = reps.iter().map(|s| s.homed).sum();
    let above_ceil = n > in_set || (0..reps.len()).any(|i| reps[i].homed > b[i].1);
    if mine > floor && !above_ceil {
        let to = largest_deficit(n, reps, |i| i != h && below_floor(i))?;
        return Some(Move {
            to,
            keep_above: Some(floor),
            below: b[to].0,
        });
    }
    None
}

/// The least number of moves that balances `homed` (per eligible replica,
/// with `outside` more sessions homed elsewhere): `max(A, B)` of the
/// module doc. For tests and the README's figures.
pub fn needed_moves(reps: &[Standing], outside: u64) -> u64 {
    let n = reps.iter().map(|s| s.homed).sum::<u64>() + outside;
    let total_weight: u64 = reps.iter().map(|s| u64::from(s.weight)).sum();
    let (mut above, mut below) = (outside, 0);
    for s in reps {
        let (floor, ceil) = bounds(s.weight, total_weight, n);
        above += s.homed.saturating_sub(ceil);
        below += floor.saturating_sub(s.homed);
    }
    above.max(below)
}

/// Takes a place for a new session on the replica `plan` names among
/// `eligible`: re-plans a few times if others took the place first, then
/// takes the largest deficit regardless. The ledger's `total` must already
/// count the session.
pub(super) fn place(
    ledger: &Arc<Ledger>,
    eligible: &[&Arc<Backend>],
    standings: impl Fn() -> Vec<Standing>,
) -> Option<Slot> {
    for attempt in 0..4 {
        let reps = standings();
        let (to, below) = assign(ledger.total(), &reps)?;
        let below = if attempt == 3 { u64::MAX } else { below };
        if let Some(slot) = Slot::take(ledger, eligible.get(to)?, below) {
            return Some(slot);
        }
    }
    None
}

/// Counts a new session in the ledger's total (before it takes a place).
pub(super) fn reserve(ledger: &Ledger) {
    ledger.total.fetch_add(1, Ordering::AcqRel);
    ledger.bump();
}

/// Takes back a [`reserve`] that found no place.
pub(super) fn unreserve(ledger: &Ledger) {
    give_above(&ledger.total, 0);
    ledger.bump();
}

/// What a session's check did with its home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rehome {
    /// No move is needed.
    Stay,
    /// Moved to this index of `eligible`.
    Moved(usize),
    /// A move is needed but other sessions kept changing the counts: try
    /// again at the next statement.
    Blocked,
}

/// Applies the move `relocate` asks for to `slot`, re-planning a few
/// times when another session changed the counts first.
pub(super) fn rehome(
    slot: &mut Slot,
    ledger: &Ledger,
    eligible: &[&Arc<Backend>],
    standings: impl Fn() -> Vec<Standing>,
) -> Rehome {
    for _ in 0..4 {
        let reps = standings();
        let home = eligible
            .iter()
            .position(|r| Arc::ptr_eq(&r.state, &slot.state));
        let Some(m) = relocate(ledger.total(), home, &reps) else {
            return Rehome::Stay;
        };
        let Some(to) = eligible.get(m.to) else {
            return Rehome::Stay;
        };
        if slot.transfer(to, &m) {
            return Rehome::Moved(m.to);
        }
    }
    Rehome::Blocked
}
