//! Pure monitor logic, no I/O: the eligibility rule with lag hysteresis
//! ([`decide`]), replica lag from the primary's GTID history
//! ([`LagHistory`]), replication thread states ([`replicating_from`]) and
//! whether a new view is worth publishing ([`worth_publishing`]).

use causeway_gtid::GtidSet;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::topology::{Role, View};

/// What one evaluation of a backend is based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// Primary or replica.
    pub role: Role,
    /// The last check reached the server.
    pub reachable: bool,
    /// Replication threads run; `None` when the monitor could not measure it
    /// (fail open).
    pub replicating: Option<bool>,
    /// Lag in ms; `None` when unknown (fail open).
    pub lag_ms: Option<u64>,
    /// The replica's lag budget (`Config::max_lag_for`).
    pub budget_ms: u64,
    /// `routing.lag_hysteresis_ms`.
    pub hysteresis_ms: u64,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Routing may use the backend.
    pub eligible: bool,
    /// The replica is (still) excluded for lag: it returns only once its lag
    /// is below `budget - hysteresis`. Feed it back into the next call.
    pub lag_excluded: bool,
}

/// The eligibility rule. A primary is eligible iff reachable. A replica is
/// eligible iff reachable, replicating (or not measurable) and not excluded
/// for lag, where the lag exclusion has hysteresis: it starts when a known
/// lag exceeds the budget and ends only when a known lag is below
/// `budget - hysteresis`. An unknown lag (or an unreachable server) leaves
/// the exclusion as it was.
pub fn decide(i: &Inputs, lag_excluded_before: bool) -> Verdict {
    if i.role == Role::Primary {
        return Verdict {
            eligible: i.reachable,
            lag_excluded: false,
        };
    }
    let lag_excluded = match (i.reachable, i.lag_ms) {
        (true, Some(lag)) if lag_excluded_before => {
            lag >= i.budget_ms.saturating_sub(i.hysteresis_ms)
        }
        (true, Some(lag)) => lag > i.budget_ms,
        _ => lag_excluded_before,
    };
    Verdict {
        eligible: i.reachable && i.replicating.unwrap_or(true) && !lag_excluded,
        lag_excluded,
    }
}

/// Whether replication runs, from `(receiver, applier)` SERVICE_STATE pairs,
/// one per channel. A receiver that is `CONNECTING` counts as running: the
/// replica is as fresh as its source lets it be, and lag (measured against
/// the primary the monitor sees) excludes it if it falls behind. No channel
/// at all means the server is not a replica.
pub fn replicating_from<S: AsRef<str>>(channels: &[(S, S)]) -> bool {
    !channels.is_empty()
        && channels.iter().all(|(rx, ap)| {
            let (rx, ap) = (rx.as_ref(), ap.as_ref());
            (rx.eq_ignore_ascii_case("ON") || rx.eq_ignore_ascii_case("CONNECTING"))
                && ap.eq_ignore_ascii_case("ON")
        })
}

/// Whether a replica replicates from somewhere other than the configured
/// primary: `Some(true)` when its receivers' source UUIDs are known and
/// none of them is the primary's `server_uuid`, `Some(false)` when one is,
/// `None` when either side is unknown (not read yet, refused, or the
/// receiver never connected). UUIDs compare case-insensitively.
pub fn source_mismatch(sources: Option<&[String]>, primary_uuid: Option<&str>) -> Option<bool> {
    let (sources, primary) = (sources?, primary_uuid?);
    if sources.is_empty() || primary.is_empty() {
        return None;
    }
    Some(!sources.iter().any(|s| s.eq_ignore_ascii_case(primary)))
}

/// Maps `SHOW REPLICA STATUS` `Replica_IO_Running` / `Replica_SQL_Running`
/// values (`Yes`, `No`, `Connecting`) to SERVICE_STATE spelling.
pub fn service_state_from_show(v: &str) -> &'static str {
    if v.eq_ignore_ascii_case("Yes") {
        "ON"
    } else if v.eq_ignore_ascii_case("Connecting") {
        "CONNECTING"
    } else {
        "OFF"
    }
}

/// Lag changes smaller than this (that do not cross zero) are not
/// published on their own, so a lagging replica does not wake waiters on
/// every GTID poll.
pub const LAG_PUBLISH_STEP_MS: u64 = 100;

/// Whether `new` differs from `old` enough to publish (and wake waiters).
/// `measured_at` is ignored; lag counts when it appears, disappears, crosses
/// zero or moves by at least [`LAG_PUBLISH_STEP_MS`].
pub fn worth_publishing(old: &View, new: &View) -> bool {
    let lag_moved = match (old.lag_ms, new.lag_ms) {
        (Some(a), Some(b)) => (a == 0) != (b == 0) || a.abs_diff(b) >= LAG_PUBLISH_STEP_MS,
        (a, b) => a.is_some() != b.is_some(),
    };
    lag_moved
        || old.reachable != new.reachable
        || old.read_only != new.read_only
        || old.replicating != new.replicating
        || old.eligible != new.eligible
        || old.last_error != new.last_error
        || old.source_mismatch != new.source_mismatch
        || old.server_uuid != new.server_uuid
        || old.measured_at.is_none()
        || *old.gtid_executed != *new.gtid_executed
}

/// How long the primary's GTID history reaches back (older entries are
/// dropped, except the newest).
pub const HISTORY_WINDOW: Duration = Duration::from_secs(600);
/// At most this many distinct primary sets are remembered.
pub const HISTORY_CAP: usize = 4096;

/// The primary's executed GTID sets, each with the instant the monitor
/// first read it. A replica's lag at instant `r` is `r - t`, where `t` is the
/// first instant the primary reported a set the replica does not contain
/// (0 when it contains everything the primary reported up to `r`).
#[derive(Debug, Default)]
pub struct LagHistory {
    entries: VecDeque<(Instant, Arc<GtidSet>)>,
}

impl LagHistory {
    /// Forgets everything (the primary changed).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Records that the primary reported `set` at `at` (a no-op when it
    /// equals the newest set) and prunes old entries.
    pub fn observe(&mut self, set: Arc<GtidSet>, at: Instant) {
        if self.entries.back().is_some_and(|(_, s)| **s == *set) {
            return;
        }
        self.entries.push_back((at, set));
        while self.entries.len() > HISTORY_CAP
            || (self.entries.len() > 1
                && self
                    .entries
                    .front()
                    .is_some_and(|(t, _)| at.saturating_duration_since(*t) > HISTORY_WINDOW))
        {
            self.entries.pop_front();
        }
    }

    /// The lag of a replica whose executed set was `replica` at `at`, or
    /// `None` if the primary was not read before `at`. Sets the primary
    /// reported after `at` are ignored. Scans from the newest set back
    /// while the replica lacks them (executed sets grow, so the ones it
    /// contains form a prefix); when the history was pruned the result is a
    /// lower bound.
    pub fn lag_at(&self, replica: &GtidSet, at: Instant) -> Option<Duration> {
        let mut seen = false;
        let mut oldest_missing = None;
        for (t, set) in self.entries.iter().rev() {
            if *t > at {
                continue;
            }
            seen = true;
            if replica.contains(set) {
                break;
            }
            oldest_missing = Some(*t);
        }
        if !seen {
            return None;
        }
        Some(oldest_missing.map_or(Duration::ZERO, |t| at.saturating_duration_since(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = 300;
    const H: u64 = 100;

    fn replica(reachable: bool, replicating: Option<bool>, lag: Option<u64>) -> Inputs {
        Inputs {
            role: Role::Replica,
            reachable,
            replicating,
            lag_ms: lag,
            budget_ms: B,
            hysteresis_ms: H,
        }
    }

    /// (reachable, replicating, lag, excluded before, eligible, excluded after)
    type Row = (bool, Option<bool>, Option<u64>, bool, bool, bool);

    #[test]
    fn eligibility_table() {
        // (reachable, replicating, lag, excluded before) => (eligible, excluded after)
        let table: &[Row] = &[
            (true, Some(true), Some(0), false, true, false),
            (true, Some(true), Some(B), false, true, false),
            (true, Some(true), Some(B + 1), false, false, true),
            // hysteresis: back only below budget - hysteresis
            (true, Some(true), Some(B), true, false, true),
            (true, Some(true), Some(B - H), true, false, true),
            (true, Some(true), Some(B - H - 1), true, true, false),
            (true, Some(true), Some(0), true, true, false),
            // unknown lag keeps the previous exclusion, fails open otherwise
            (true, Some(true), None, false, true, false),
            (true, Some(true), None, true, false, true),
            // not replicating / not measurable
            (true, Some(false), Some(0), false, false, false),
            (true, None, Some(0), false, true, false),
            (true, None, None, false, true, false),
            // unreachable: excluded, lag exclusion untouched
            (false, Some(true), Some(0), false, false, false),
            (false, Some(true), Some(0), true, false, true),
            (false, None, None, false, false, false),
        ];
        for (n, &(reach, repl, lag, before, eligible, after)) in table.iter().enumerate() {
            let v = decide(&replica(reach, repl, lag), before);
            assert_eq!(
                v,
                Verdict {
                    eligible,
                    lag_excluded: after
                },
                "row {n}: reachable={reach} replicating={repl:?} lag={lag:?} before={before}"
            );
        }
    }

    #[test]
    fn primary_is_eligible_iff_reachable() {
        for reach in [true, false] {
            let i = Inputs {
                role: Role::Primary,
                replicating: Some(false),
                lag_ms: Some(10 * B),
                ..replica(reach, None, None)
            };
            assert_eq!(decide(&i, true).eligible, reach);
            assert!(!decide(&i, true).lag_excluded);
        }
    }

    #[test]
    fn zero_hysteresis_and_oversized_hysteresis() {
        let mut i = replica(true, Some(true), Some(B - 1));
        i.hysteresis_ms = 0;
        assert!(decide(&i, true).eligible);
        i.hysteresis_ms = B + 5; // validated away by config; must not underflow
        assert!(!decide(&i, true).eligible);
    }

    #[test]
    fn replication_states() {
        assert!(replicating_from(&[("ON", "ON")]));
        assert!(replicating_from(&[("CONNECTING", "on")]));
        assert!(!replicating_from(&[("OFF", "ON")]));
        assert!(!replicating_from(&[("ON", "OFF")]));
        assert!(!replicating_from(&[("ON", "ON"), ("ON", "OFF")]));
        assert!(!replicating_from::<&str>(&[]));
        assert_eq!(service_state_from_show("Yes"), "ON");
        assert_eq!(service_state_from_show("Connecting"), "CONNECTING");
        assert_eq!(service_state_from_show("No"), "OFF");
    }

    fn set(s: &str) -> Arc<GtidSet> {
        Arc::new(GtidSet::parse(s).unwrap())
    }

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn lag_from_history() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = LagHistory::default();
        assert_eq!(h.lag_at(&GtidSet::new(), t0), None);
        h.observe(set(&format!("{U}:1-5")), t0);
        h.observe(set(&format!("{U}:1-5")), t0 + ms(50)); // unchanged: no entry
        assert_eq!(h.entries.len(), 1);
        h.observe(set(&format!("{U}:1-6")), t0 + ms(100));
        h.observe(set(&format!("{U}:1-9")), t0 + ms(150));
        let r = |s: &str| GtidSet::parse(&format!("{U}:{s}")).unwrap();
        // caught up: 0
        assert_eq!(h.lag_at(&r("1-9"), t0 + ms(400)), Some(Duration::ZERO));
        // lacks 6..9: since the primary first reported 6
        assert_eq!(h.lag_at(&r("1-5"), t0 + ms(400)), Some(ms(300)));
        // lacks 7..9 only
        assert_eq!(h.lag_at(&r("1-6"), t0 + ms(400)), Some(ms(250)));
        // sets reported after the replica was read do not count
        assert_eq!(h.lag_at(&r("1-5"), t0 + ms(120)), Some(ms(20)));
        assert_eq!(h.lag_at(&r("1-5"), t0 + ms(60)), Some(Duration::ZERO));
        // the replica was read before the primary ever was
        assert_eq!(h.lag_at(&r("1-5"), t0 - ms(1)), None);
        // lacking everything
        assert_eq!(h.lag_at(&GtidSet::new(), t0 + ms(400)), Some(ms(400)));
        // an errant extra transaction on the replica does not matter
        let mut extra = r("1-9");
        extra.union(&GtidSet::parse("4e11fa47-71ca-11e1-9e33-c80aa9429562:1").unwrap());
        assert_eq!(h.lag_at(&extra, t0 + ms(400)), Some(Duration::ZERO));
    }

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let t0 = Instant::now();
        let mut h = LagHistory::default();
        for i in 1..=(HISTORY_CAP as u64 + 10) {
            h.observe(set(&format!("{U}:1-{i}")), t0 + Duration::from_millis(i));
        }
        assert_eq!(h.entries.len(), HISTORY_CAP);
        let late = t0 + HISTORY_WINDOW * 2;
        h.observe(set(&format!("{U}:1-99999")), late);
        assert_eq!(h.entries.len(), 1);
        let r = GtidSet::parse(&format!("{U}:1-5")).unwrap();
        assert_eq!(
            h.lag_at(&r, late + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn source_mismatch_rule() {
        let p = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let other = "4e11fa47-71ca-11e1-9e33-c80aa9429562".to_string();
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(source_mismatch(Some(&v(&[p])), Some(p)), Some(false));
        assert_eq!(
            source_mismatch(Some(&v(&[&p.to_uppercase()])), Some(p)),
            Some(false)
        );
        assert_eq!(
            source_mismatch(Some(std::slice::from_ref(&other)), Some(p)),
            Some(true)
        );
        assert_eq!(
            source_mismatch(Some(&v(&[&other, p])), Some(p)),
            Some(false)
        );
        assert_eq!(source_mismatch(Some(&[]), Some(p)), None);
        assert_eq!(source_mismatch(None, Some(p)), None);
        assert_eq!(source_mismatch(Some(&v(&[p])), None), None);
        assert_eq!(source_mismatch(Some(&v(&[p])), Some("")), None);
    }

    #[test]
    fn publishing_rule() {
        let base = View {
            measured_at: Some(Instant::now()),
            lag_ms: Some(0),
            ..View::default()
        };
        let with = |f: &dyn Fn(&mut View)| {
            let mut v = base.clone();
            f(&mut v);
            v
        };
        assert!(!worth_publishing(&base, &base));
        assert!(!worth_publishing(
            &base,
            &with(&|v| v.measured_at = Some(Instant::now() + Duration::from_secs(1)))
        ));
        assert!(worth_publishing(&View::default(), &base));
        assert!(worth_publishing(&base, &with(&|v| v.lag_ms = Some(1))));
        assert!(worth_publishing(&base, &with(&|v| v.lag_ms = None)));
        let lagging = with(&|v| v.lag_ms = Some(500));
        assert!(!worth_publishing(
            &lagging,
            &with(&|v| v.lag_ms = Some(500 + LAG_PUBLISH_STEP_MS - 1))
        ));
        assert!(worth_publishing(
            &lagging,
            &with(&|v| v.lag_ms = Some(500 + LAG_PUBLISH_STEP_MS))
        ));
        assert!(worth_publishing(&base, &with(&|v| v.eligible = false)));
        assert!(worth_publishing(&base, &with(&|v| v.reachable = false)));
        assert!(worth_publishing(
            &base,
            &with(&|v| v.gtid_executed = set(&format!("{U}:1")))
        ));
        assert!(worth_publishing(
            &base,
            &with(&|v| v.last_error = Some("x".into()))
        ));
    }
}
