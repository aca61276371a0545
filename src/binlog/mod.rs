//! The binlog reader as its own component: it follows the primary's
//! replication stream and keeps, per table, the GTID set of the last write
//! it saw ([`versions::Versions`]), the set it has processed (P), its lag
//! behind the primary (commit time on the primary to processing here, as a
//! metric and as p50/p99 over the last transactions) and its status.
//!
//! Two consumers: the cache (`invalidation = "binlog"`: the reader also
//! drives `crate::cache::Fresh` as before) and `consistency = "fresh"`
//! (`crate::frontend::fresh`), which also records here the writes this
//! instance relays. The reader task is spawned at start and connects only
//! once someone wants it: at once for a binlog cache or a configured fresh
//! mode, else on the first fresh read ([`Binlog::want`]).

pub mod ddl;
pub mod reader;
pub mod tagged;
pub mod versions;

use causeway_gtid::GtidSet;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

pub use versions::Versions;

/// How many of the last transactions' lags the quantiles cover.
const LAG_WINDOW: usize = 4096;

/// The reader's state and the per-table last writes of one proxy instance.
#[derive(Debug)]
pub struct Binlog {
    versions: RwLock<Versions>,
    lags: Mutex<VecDeque<Duration>>,
    wanted: AtomicBool,
    wake: tokio::sync::Notify,
    state: Mutex<&'static str>,
    error: Mutex<Option<String>>,
    /// `FRESH_READS{tables}` handles: known, unknown (no registry lookup
    /// per read).
    fresh_reads: std::sync::OnceLock<[metrics::Counter; 2]>,
}

impl Binlog {
    /// A reader state keeping `max_tables` tables one by one; `wanted`
    /// starts it at once.
    pub fn new(max_tables: usize, wanted: bool) -> Binlog {
        Binlog {
            versions: RwLock::new(Versions::new(max_tables)),
            lags: Mutex::new(VecDeque::with_capacity(LAG_WINDOW)),
            wanted: AtomicBool::new(wanted),
            wake: tokio::sync::Notify::new(),
            state: Mutex::new("idle"),
            error: Mutex::new(None),
            fresh_reads: std::sync::OnceLock::new(),
        }
    }

    /// Asks the reader to follow the primary (first fresh read).
    pub fn want(&self) {
        if !self.wanted.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Whether someone asked for the reader.
    pub fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Acquire)
    }

    /// Waits until the reader is wanted.
    pub async fn wanted(&self) {
        while !self.is_wanted() {
            self.wake.notified().await;
        }
    }

    /// Runs `f` on the last-write state.
    pub fn with<R>(&self, f: impl FnOnce(&mut Versions) -> R) -> R {
        let mut g = self.versions.write().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// What a server must contain to hold the last write to `tables`
    /// (None: any table), and whether the reader follows the primary.
    pub fn need(&self, tables: Option<&[String]>) -> (GtidSet, bool) {
        let g = self.versions.read().unwrap_or_else(|e| e.into_inner());
        (g.need(tables), g.live)
    }

    /// A write relayed by this instance (see [`Versions::write`]).
    pub fn write(&self, tables: Option<&[String]>, gtids: &GtidSet) {
        self.with(|v| v.write(tables, gtids));
    }

    /// P and whether the reader follows the primary.
    pub fn processed(&self) -> (GtidSet, bool) {
        let g = self.versions.read().unwrap_or_else(|e| e.into_inner());
        (g.processed().clone(), g.live)
    }

    /// Counts a fresh read whose tables were (not) known.
    pub fn count_fresh_read(&self, known: bool) {
        let c = self.fresh_reads.get_or_init(|| {
            ["known", "unknown"]
                .map(|t| metrics::counter!(crate::metrics::FRESH_READS, "tables" => t))
        });
        if let Some(c) = c.get(usize::from(!known)) {
            c.increment(1);
        }
    }

    /// Records the lag of one transaction.
    pub fn record_lag(&self, lag: Duration) {
        metrics::histogram!(crate::metrics::BINLOG_LAG_SECONDS).record(lag.as_secs_f64());
        let mut l = self.lags.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == LAG_WINDOW {
            l.pop_front();
        }
        l.push_back(lag);
    }

    /// p50 and p99 of the last transactions' lags (None before any).
    pub fn lag_quantiles(&self) -> Option<(Duration, Duration)> {
        let mut v: Vec<Duration> = self
            .lags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() as f64 - 1.0) * q).round() as usize;
            v.get(i).copied().unwrap_or_default()
        };
        Some((at(0.5), at(0.99)))
    }

    /// `idle`, `connecting`, `following` or `disconnected`.
    pub fn state(&self) -> &'static str {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_state(&self, s: &'static str) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Why the reader last stopped, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_error(&self, e: Option<String>) {
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }
}
