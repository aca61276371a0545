//! Consistency modes, tokens and replica choice.
//!
//! A session's token is a GTID set: everything it committed (taken from the
//! primary's OK packets, `session_track_gtids = ALL_GTIDS`, so the token is
//! the primary's executed set at the commit) plus any token the client set.
//! A read in `causal` mode may run only on a replica whose executed GTID set
//! contains the whole token; `eventual` ignores the token; `strong` always
//! reads the primary.
//!
//! Replica choice is weighted: with `read_balance = "session"` (the
//! default) each session has a home replica by weighted rendezvous hashing
//! (`crate::balance`), recomputed when the topology or eligibility changes,
//! so sessions follow the weights and only those that must move do; with
//! `"statement"` every read advances the session's cursor over the
//! cumulative weights. Either way there is no shared state on the
//! per-statement path.
//!
//! Monotonic reads (causal mode): a read on a replica other than the one the
//! session last read on must also contain a *floor*, a GTID set the monitor
//! read (from that last backend or from the primary) with a probe sent after
//! the last read ended, so a superset of anything that read could see.

use causeway_config::{Consistency, OnTimeout, ReadBalance};
use causeway_gtid::{GtidSet, Limits};
use std::sync::Arc;
use std::time::Duration;

pub use crate::balance::Picker;
pub use crate::monotonic::stranded;
use crate::monotonic::{floor, readiness, Floor, Ready};
use crate::topology::{Backend, Topology};

/// Largest `wait_timeout_ms` (session or config): a causal wait never
/// holds a replica-side `WAIT_FOR_EXECUTED_GTID_SET` longer than this.
pub const MAX_WAIT_TIMEOUT_MS: u64 = 60_000;

/// Bounds of a client token (`@@causeway.token`, `/* causeway token=... */`).
pub const TOKEN_LIMITS: Limits = Limits::TOKEN;

/// How many characters of a refused value an error message shows.
const VALUE_CLIP_CHARS: usize = 100;

/// `value` cut to [`VALUE_CLIP_CHARS`] characters, with `...` when cut.
pub fn clip_value(value: &str) -> String {
    clip_value_to(value, VALUE_CLIP_CHARS)
}

fn clip_value_to(value: &str, chars: usize) -> String {
    match value.char_indices().nth(chars) {
        Some((i, _)) => format!("{}...", value.get(..i).unwrap_or_default()),
        None => value.to_string(),
    }
}

/// Errors setting consistency variables.
#[derive(Debug, thiserror::Error)]
pub enum ConsistencyError {
    /// A variable was given a value it cannot take.
    #[error("Variable '{name}' can't be set to the value of '{value}'{detail}")]
    BadValue {
        /// Variable (`causeway.x`).
        name: String,
        /// The value, clipped to 100 characters.
        value: String,
        /// Why, with a leading separator.
        detail: String,
    },
    /// Unknown variable.
    #[error("Unknown system variable '{0}'")]
    Unknown(String),
    /// A statement setting causeway variables (or carrying a causeway
    /// comment) too long to hold a valid token: refused before parsing.
    #[error("Variable 'causeway.token' can't be set from a statement of {len} bytes (the limit is {max} bytes; a token may have {limits})", limits = TOKEN_LIMITS)]
    TooLong {
        /// Statement (or comment) length in bytes.
        len: usize,
        /// [`MAX_OPTIONS_LEN`].
        max: usize,
    },
}

/// Longest statement setting `@@causeway.*`, and longest leading
/// `/* causeway ... */` comment: a maximal token plus room for the rest.
pub const MAX_OPTIONS_LEN: usize = TOKEN_LIMITS.max_len + 4096;

/// Refuses, before any parser runs over it, a statement that sets causeway
/// variables (`causeway_var`) or starts with a `/* causeway ... */` comment
/// and is longer than [`MAX_OPTIONS_LEN`]. Cheap: one scan for `*/`.
pub fn check_options_len(sql: &str, causeway_var: bool) -> Result<(), ConsistencyError> {
    let len = if causeway_var {
        sql.len()
    } else {
        let rest = sql.trim_start();
        let Some(body) = rest.strip_prefix("/*") else {
            return Ok(());
        };
        let word = body.trim_start().as_bytes();
        if !word
            .get(..8)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"causeway"))
        {
            return Ok(());
        }
        body.find("*/").map_or(body.len(), |end| end + 4)
    };
    if len > MAX_OPTIONS_LEN {
        return Err(ConsistencyError::TooLong {
            len,
            max: MAX_OPTIONS_LEN,
        });
    }
    Ok(())
}

impl ConsistencyError {
    /// MySQL error code and SQLSTATE.
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            ConsistencyError::BadValue { .. } | ConsistencyError::TooLong { .. } => (1231, "42000"),
            ConsistencyError::Unknown(_) => (1193, "HY000"),
        }
    }
}

/// Per-session consistency settings (`@@causeway.*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Mode.
    pub mode: Consistency,
    /// The session's token.
    pub token: GtidSet,
    /// How long a causal read waits for a replica.
    pub wait_timeout: Duration,
    /// What a causal read does when the wait times out.
    pub on_timeout: OnTimeout,
    /// Session lag budget (bounded staleness), if set.
    pub max_lag_ms: Option<u64>,
}

impl Settings {
    /// Defaults from the config.
    pub fn from_config(cfg: &causeway_config::Config) -> Settings {
        Settings {
            mode: cfg.routing.consistency,
            token: GtidSet::new(),
            wait_timeout: cfg.routing.wait_timeout(),
            on_timeout: cfg.routing.on_timeout,
            max_lag_ms: None,
        }
    }

    /// Sets `causeway.<name>` from a string value; on error nothing changes.
    /// A token is bounded by [`TOKEN_LIMITS`] (checked while parsing), a
    /// wait by [`MAX_WAIT_TIMEOUT_MS`]; larger values are refused, never
    /// clamped.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConsistencyError> {
        let bad = |detail: String| ConsistencyError::BadValue {
            name: format!("causeway.{name}"),
            value: clip_value(value),
            // a parser's message may quote the value again
            detail: clip_value_to(&detail, 2 * VALUE_CLIP_CHARS),
        };
        match name {
            "token" => {
                self.token = GtidSet::parse_limited(value, &TOKEN_LIMITS)
                    .map_err(|e| bad(format!(": {e}")))?;
            }
            "consistency" => {
                self.mode = value.parse().map_err(|e| bad(format!(": {e}")))?;
            }
            "on_timeout" => {
                self.on_timeout = value.parse().map_err(|e| bad(format!(": {e}")))?;
            }
            "wait_timeout_ms" => {
                let ms: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(": expected milliseconds".into()))?;
                if ms > MAX_WAIT_TIMEOUT_MS {
                    return Err(bad(format!(": the maximum is {MAX_WAIT_TIMEOUT_MS}")));
                }
                self.wait_timeout = Duration::from_millis(ms);
            }
            "max_lag_ms" => {
                let v = value.trim();
                self.max_lag_ms = if v.is_empty() || v.eq_ignore_ascii_case("default") {
                    None
                } else {
                    Some(
                        v.parse()
                            .map_err(|_| bad(": expected milliseconds".into()))?,
                    )
                };
            }
            "last_route" => return Err(bad(": it is read-only".into())),
            _ => return Err(ConsistencyError::Unknown(format!("causeway.{name}"))),
        }
        Ok(())
    }
}

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

/// Replicas of the general pool routing may use: healthy, weighted,
/// within the lag budget.
pub fn eligible<'a>(
    topo: &'a Topology,
    max_lag_ms: Option<u64>,
    exclude: &[&str],
) -> Vec<&'a Arc<Backend>> {
    eligible_in(topo, None, max_lag_ms, exclude)
}

/// [`eligible`] for the members of pool `pool` (`None`: the general pool).
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
/// The preferred replica is the session's home (`read_balance = "session"`,
/// see `crate::balance`) or the next by weight (`"statement"`). A causal
/// read goes there when the monitor knows it has the token and the floor of
/// monotonic reads; else to another qualifying replica known to have both
/// (a one-off; the home does not change); else it waits there for both
/// (`WaitFor`, the set in [`Picker::take_wait_set`]); with no sound floor
/// yet, it stays on the replica of the session's last read, or goes to the
/// primary.
pub fn choose(
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
    let preferred = match p.balance() {
        ReadBalance::Session => {
            // the cached home is the general pool's
            let cacheable = max_lag_ms.is_none() && exclude.is_empty() && pool.is_none();
            p.home(topo, cacheable, ok).cloned()
        }
        ReadBalance::Statement => {
            let candidates = eligible_in(topo, pool, max_lag_ms, exclude);
            pick(p.cursor_mut(), &candidates).cloned()
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
    let others = || {
        topo.replicas
            .iter()
            .filter(|r| !Arc::ptr_eq(r, &b) && ok(r))
    };
    for r in others() {
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
    for r in others() {
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
    fn session_balance_spreads_sessions_by_weight_and_keeps_the_replica() {
        let t = topo(&[3, 1]);
        let mut per_replica = [0usize; 2];
        let none = GtidSet::new();
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
        }
        let share = per_replica[0] as f64 / 4_000.0;
        assert!((share - 0.75).abs() < 0.03, "{per_replica:?}");
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
        for (p, home) in pickers.iter_mut().zip(&homes) {
            assert_eq!(
                &replica_of(choose(&t, Consistency::Eventual, &none, None, &[], p)),
                home
            );
        }
    }

    #[test]
    fn move_reasons() {
        let t = topo(&[1, 1]);
        let before = vec![("r1".to_string(), 1), ("r2".to_string(), 1)];
        assert_eq!(
            crate::balance::reason("r1", false, "r2", &before, &t),
            "left"
        );
        assert_eq!(
            crate::balance::reason("r2", true, "r1", &before, &t),
            "returned"
        );
        let only_r1 = vec![("r1".to_string(), 1)];
        assert_eq!(
            crate::balance::reason("r1", true, "r2", &only_r1, &t),
            "added"
        );
        let t3 = topo(&[3, 1]);
        assert_eq!(
            crate::balance::reason("r2", true, "r1", &before, &t3),
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
        let names: Vec<&str> = eligible(&t, Some(100), &[])
            .iter()
            .map(|b| b.name())
            .collect();
        assert_eq!(names, ["r2"]);
        assert_eq!(eligible(&t, None, &[]).len(), 2);
        assert_eq!(eligible(&t, None, &["r1"]).len(), 1);
        t.replicas[1].state.publish(View::default());
        assert!(
            eligible(&t, Some(100), &[]).is_empty(),
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

    #[test]
    fn bad_values_leave_settings_unchanged() {
        let cfg = causeway_config::Config::from_str_named(
            "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n",
            "t",
        )
        .unwrap();
        let mut s = Settings::from_config(&cfg);
        let e = s.set("token", "not-a-gtid:1").unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        assert!(e.to_string().contains("not-a-gtid"), "{e}");
        assert!(s.token.is_empty());
        assert!(s.set("consistency", "strong").is_ok());
        assert_eq!(s.mode, Consistency::Strong);
        assert!(matches!(
            s.set("nope", "1"),
            Err(ConsistencyError::Unknown(_))
        ));
    }

    fn settings() -> Settings {
        let cfg = causeway_config::Config::from_str_named(
            "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n",
            "t",
        )
        .unwrap();
        Settings::from_config(&cfg)
    }

    #[test]
    fn huge_tokens_are_refused_with_a_short_message() {
        let mut s = settings();
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut huge = String::from(uuid);
        for i in 0..200_000u64 {
            huge.push_str(&format!(":{}", 2 * i + 1));
        }
        let e = s.set("token", &huge).unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        let msg = e.to_string();
        assert!(msg.len() < 400, "{msg}");
        assert!(msg.contains("65536 bytes"), "{msg}");
        assert!(msg.contains("4096 intervals"), "{msg}");
        assert!(s.token.is_empty());
        // under the byte limit, over the interval limit
        let many: String = std::iter::once(uuid.to_string())
            .chain((0..5000u64).map(|i| format!("{}", 2 * i + 1)))
            .collect::<Vec<_>>()
            .join(":");
        let e = s.set("token", &many).unwrap_err();
        assert!(e.to_string().contains("more than 4096 intervals"), "{e}");
        // many UUIDs
        let uuids: String = (0..300u32)
            .map(|i| format!("{i:08x}-71ca-11e1-9e33-c80aa9429562:1"))
            .collect::<Vec<_>>()
            .join(",");
        let e = s.set("token", &uuids).unwrap_err();
        assert!(e.to_string().contains("more than 256 UUIDs/tags"), "{e}");
        // a real token is fine
        s.set("token", &format!("{uuid}:1-100:tag1:5")).unwrap();
        assert_eq!(s.token.num_intervals(), 2);
    }

    #[test]
    fn wait_timeout_is_capped_not_clamped() {
        let mut s = settings();
        let e = s.set("wait_timeout_ms", "999999999").unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        assert!(e.to_string().contains("maximum is 60000"), "{e}");
        assert_eq!(s.wait_timeout, Duration::from_millis(1000));
        s.set("wait_timeout_ms", "60000").unwrap();
        assert_eq!(s.wait_timeout, Duration::from_secs(60));
        let cfg = causeway_config::Config::from_str_named(
            "[[users]]\nname='a'\npassword=''\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n[routing]\nwait_timeout_ms = 60001\n",
            "t",
        );
        let e = cfg.unwrap_err().to_string();
        assert!(e.contains("wait_timeout_ms") && e.contains("60000"), "{e}");
    }

    #[test]
    fn long_option_statements_are_refused_before_parsing() {
        let long = "1".repeat(MAX_OPTIONS_LEN);
        assert!(check_options_len(&format!("SET @@causeway.token = '{long}'"), true).is_err());
        assert!(check_options_len("SET @@causeway.token = 'x'", true).is_ok());
        let e = check_options_len(&format!(" /* Causeway token={long} */ SELECT 1"), false)
            .unwrap_err();
        assert_eq!(e.code(), (1231, "42000"));
        assert!(e.to_string().contains("65536 bytes"), "{e}");
        assert!(e.to_string().len() < 300, "{e}");
        // unterminated comment: its whole length counts
        assert!(check_options_len(&format!("/* causeway token={long}"), false).is_err());
        // other comments and ordinary long statements are not this check's business
        assert!(check_options_len(&format!("/* other {long} */ SELECT 1"), false).is_ok());
        assert!(check_options_len(&format!("SELECT '{long}'"), false).is_ok());
        assert!(check_options_len("/* causeway token=a */ SELECT 1", false).is_ok());
        assert!(check_options_len("/* caus", false).is_ok());
    }

    #[test]
    fn error_values_are_clipped() {
        let long = "é".repeat(500);
        assert_eq!(clip_value(&long).chars().count(), 103);
        assert!(clip_value(&long).ends_with("..."));
        assert_eq!(clip_value("short"), "short");
        let mut s = settings();
        let e = s.set("consistency", &"x".repeat(10_000)).unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
    }
}
