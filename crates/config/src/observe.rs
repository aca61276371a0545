//! The `[digests]` and `[decision_log]` sections: per-digest statement
//! statistics (how many digests are kept, how many get Prometheus
//! histograms) and the JSON-lines log of routing decisions.

use serde::{Deserialize, Serialize};

/// Largest `max_digests`.
pub const MAX_DIGESTS: usize = 1_000_000;
/// Largest `export_top`.
pub const MAX_EXPORT_TOP: usize = 1_000;

/// `[digests]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Digests {
    /// Whether statements are digested and counted at all (default true).
    pub enabled: bool,
    /// Rows kept (one per digest, user and schema); the least recently
    /// used is evicted beyond it (1..=1000000).
    pub max_digests: usize,
    /// Digests (by total time) whose latency gets a Prometheus histogram
    /// (0..=1000; 0 = none).
    pub export_top: usize,
}

impl Default for Digests {
    fn default() -> Self {
        Digests {
            enabled: true,
            max_digests: 10_000,
            export_top: 20,
        }
    }
}

/// `[decision_log]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionLog {
    /// File the JSON lines are appended to; empty = no log.
    pub path: String,
    /// Fraction of statements logged (0.0..=1.0).
    pub sample: f64,
    /// Statements at least this slow (ms) are always logged (0 = none by
    /// time).
    pub slow_ms: u64,
    /// Log the statement text with its literals instead of the digest
    /// text (default false: no literal, no password reaches the log).
    pub log_literals: bool,
    /// Lines buffered for the writer; beyond it lines are dropped and
    /// counted (1..=1000000).
    pub buffer_lines: usize,
}

impl Default for DecisionLog {
    fn default() -> Self {
        DecisionLog {
            path: String::new(),
            sample: 0.01,
            slow_ms: 1000,
            log_literals: false,
            buffer_lines: 10_000,
        }
    }
}

/// Checks the ranges; the failing field and why.
pub(crate) fn check(
    d: &Digests,
    l: &DecisionLog,
) -> Result<(), (&'static str, &'static str, String)> {
    if d.max_digests == 0 || d.max_digests > MAX_DIGESTS {
        let m = format!("must be between 1 and {MAX_DIGESTS}");
        return Err(("digests", "max_digests", m));
    }
    if d.export_top > MAX_EXPORT_TOP {
        let m = format!("must be at most {MAX_EXPORT_TOP}");
        return Err(("digests", "export_top", m));
    }
    if !(0.0..=1.0).contains(&l.sample) {
        let m = "must be between 0.0 and 1.0".to_string();
        return Err(("decision_log", "sample", m));
    }
    if l.buffer_lines == 0 || l.buffer_lines > 1_000_000 {
        let m = "must be between 1 and 1000000".to_string();
        return Err(("decision_log", "buffer_lines", m));
    }
    Ok(())
}
