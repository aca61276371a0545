//! The routing decision log (`[decision_log]`): one JSON line per sampled,
//! slow or failed statement, written by a dedicated thread. Sessions hand
//! lines over a bounded channel with `try_send`: when it is full the line is
//! dropped and counted, so a slow or blocked disk (or a FIFO nobody reads)
//! never makes a session wait. The file is reopened after SIGHUP
//! ([`DecisionLog::reopen`]) so logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use serde::Serialize;

use crate::metrics as m;

/// Why a statement went where it went (the `reason` of a log line and
/// the label of `causeway_routing_reasons_total`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// A read served by a replica with no token to honour (eventual mode,
    /// or causal with an empty token).
    Eventual,
    /// A causal read served by a replica that already had the token.
    TokenContained,
    /// A causal read served by a replica after waiting for the token.
    Waited,
    /// A causal read sent to the primary after its wait timed out.
    LagBudgetFallback,
    /// A read sent to the primary because no replica was eligible.
    NoReplica,
    /// Inside a transaction (or with autocommit off).
    InTransaction,
    /// The session is pinned to the primary.
    Pinned,
    /// The statement must run on the primary (writes, DDL, locking reads,
    /// session statements: the classifier's reason is in `class`).
    Write,
    /// A read sent to the primary by `consistency = strong`.
    Strong,
    /// Diagnostics of the previous statement, where it ran.
    Diagnostics,
    /// A query rule chose the route (its name).
    Rule(Arc<str>),
    /// Answered from the result cache.
    CacheHit,
    /// A read a cache rule matched but the cache did not serve, and why
    /// (`comment`, `tables`, `strong`, `uncacheable`, `floor_unknown`).
    CacheBypass(&'static str),
}

impl Why {
    /// The fixed names (all but `rule:<name>`), in declaration order.
    pub(crate) const FIXED: &'static [&'static str] = &[
        "eventual",
        "token_contained",
        "waited",
        "lag_budget_fallback",
        "no_replica",
        "in_transaction",
        "pinned",
        "write",
        "strong",
        "diagnostics",
        "cache_hit",
    ];

    /// The position in [`Why::FIXED`]; `None` for a rule or a bypass.
    pub(crate) fn index(&self) -> Option<usize> {
        Some(match self {
            Why::Eventual => 0,
            Why::TokenContained => 1,
            Why::Waited => 2,
            Why::LagBudgetFallback => 3,
            Why::NoReplica => 4,
            Why::InTransaction => 5,
            Why::Pinned => 6,
            Why::Write => 7,
            Why::Strong => 8,
            Why::Diagnostics => 9,
            Why::CacheHit => 10,
            Why::Rule(_) | Why::CacheBypass(_) => return None,
        })
    }

    /// The name as logged.
    pub(crate) fn name(&self) -> std::borrow::Cow<'static, str> {
        match (self, self.index()) {
            (Why::Rule(n), _) => std::borrow::Cow::Owned(format!("rule:{n}")),
            (Why::CacheBypass(w), _) => std::borrow::Cow::Owned(format!("cache_bypass:{w}")),
            (_, i) => std::borrow::Cow::Borrowed(
                i.and_then(|i| Self::FIXED.get(i)).copied().unwrap_or(""),
            ),
        }
    }

    /// Counts the reason in `causeway_routing_reasons_total`.
    pub(crate) fn count(&self) {
        metrics::counter!(m::ROUTING_REASONS, "reason" => self.name()).increment(1);
    }
}

/// One line of the log.
#[derive(Serialize)]
pub(crate) struct Line<'a> {
    /// Unix time, seconds with microseconds.
    pub time: f64,
    pub conn: u32,
    pub user: &'a str,
    pub schema: Option<&'a str>,
    pub digest: String,
    pub digest_text: &'a str,
    /// The statement as sent (only with `log_literals = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<&'a str>,
    pub tier: &'a str,
    pub backend: &'a str,
    pub reason: &'a str,
    /// The classifier's reason (`read`, `write`, `locking_read` ...).
    pub class: &'a str,
    pub wait_us: u64,
    pub latency_us: u64,
    pub rows: u64,
    pub affected: u64,
    pub error: Option<u16>,
}

/// The session side of the log.
#[derive(Debug)]
pub struct DecisionLog {
    tx: SyncSender<String>,
    sample: f64,
    slow_us: u64,
    /// Whether the statement text (with literals) is logged too.
    pub log_literals: bool,
    reopen: Arc<AtomicBool>,
    dropped: AtomicU64,
}

impl DecisionLog {
    /// Starts the writer thread for `cfg` (`None` when `path` is empty or
    /// the thread cannot start).
    pub fn start(cfg: &causeway_config::DecisionLog) -> Option<DecisionLog> {
        if cfg.path.is_empty() {
            return None;
        }
        let (tx, rx) = sync_channel(cfg.buffer_lines.max(1));
        let reopen = Arc::new(AtomicBool::new(false));
        let path = PathBuf::from(&cfg.path);
        let flag = Arc::clone(&reopen);
        let spawned = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_lines(&path, &rx, &flag));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the decision log writer");
            return None;
        }
        Some(DecisionLog {
            tx,
            sample: cfg.sample,
            slow_us: cfg.slow_ms.saturating_mul(1000),
            log_literals: cfg.log_literals,
            reopen,
            dropped: AtomicU64::new(0),
        })
    }

    /// Whether a statement that took `latency_us` (and failed or not) is
    /// logged: always when slow or failed, else with probability `sample`.
    pub(crate) fn wants(&self, latency_us: u64, failed: bool) -> bool {
        failed
            || (self.slow_us > 0 && latency_us >= self.slow_us)
            || self.sample >= 1.0
            || (self.sample > 0.0 && rand::random::<f64>() < self.sample)
    }

    /// Hands `line` to the writer; never waits. A full buffer drops it.
    pub(crate) fn send(&self, line: &Line<'_>) {
        let Ok(text) = serde_json::to_string(line) else {
            return;
        };
        match self.tx.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::DECISION_LOG_DROPPED).increment(1);
            }
        }
    }

    /// Lines dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Reopens the file before the next line (SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }
}

fn open(path: &PathBuf) -> Option<BufWriter<File>> {
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(f) => Some(BufWriter::new(f)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the decision log");
            None
        }
    }
}

/// The writer thread: appends lines until every sender is gone, flushing
/// after each batch the channel had ready.
fn write_lines(path: &PathBuf, rx: &Receiver<String>, reopen: &AtomicBool) {
    let mut file: Option<BufWriter<File>> = None;
    while let Ok(first) = rx.recv() {
        if reopen.swap(false, Ordering::Relaxed) {
            if let Some(mut f) = file.take() {
                let _ = f.flush();
            }
        }
        if file.is_none() {
            file = open(path);
        }
        let Some(f) = file.as_mut() else {
            continue;
        };
        let mut ok = writeln!(f, "{first}").is_ok();
        while let Ok(more) = rx.try_recv() {
            ok = ok && writeln!(f, "{more}").is_ok();
        }
        if !ok || f.flush().is_err() {
            file = None;
        }
    }
}
