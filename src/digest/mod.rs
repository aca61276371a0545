//! Per-digest statement statistics (`SHOW CAUSEWAY DIGESTS`,
//! `/api/digests`, the top-K Prometheus histograms) and the routing
//! decision log (`log`). Owns the bounded digest store: one row per
//! (digest, user, schema), recorded by the session after each statement
//! under one `DashMap` shard lock (no global lock), the least recently used
//! rows evicted beyond `[digests] max_digests`.

pub(crate) mod export;
pub(crate) mod hist;
pub mod log;
mod rows;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

pub(crate) use rows::{Order, Row, COLUMNS};

/// Longest `digest_text` kept (bytes; longer texts are cut at a character
/// boundary, the hash still covers the whole text).
pub(crate) const MAX_TEXT: usize = 1024;

/// Where a statement was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    Cache,
    Replica,
    Primary,
    /// The primary, for a read no replica could serve.
    Fallback,
}

impl Tier {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Tier::Cache => "cache",
            Tier::Replica => "replica",
            Tier::Primary => "primary",
            Tier::Fallback => "fallback",
        }
    }
}

/// One statement's outcome, as the session records it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record<'a> {
    pub hash: u64,
    pub text: &'a str,
    pub user: &'a str,
    pub schema: Option<&'a str>,
    pub tier: Tier,
    pub waited: bool,
    pub error: bool,
    pub latency_us: u64,
    pub rows: u64,
    pub affected: u64,
}

/// The statistics of one (digest, user, schema).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub hash: u64,
    pub text: Box<str>,
    pub user: Box<str>,
    pub schema: Option<Box<str>>,
    pub count: u64,
    /// Per tier, in [`Tier`] order.
    pub tiers: [u64; 4],
    pub waited: u64,
    pub errors: u64,
    pub sum_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub hist: hist::Hist,
    pub rows_sent: u64,
    pub rows_affected: u64,
    /// Unix time, microseconds.
    pub first_seen: u64,
    pub last_seen: u64,
}

impl Entry {
    fn new(r: &Record<'_>, now: u64) -> Entry {
        Entry {
            hash: r.hash,
            text: cut(r.text, MAX_TEXT).into(),
            user: r.user.into(),
            schema: r.schema.map(Into::into),
            count: 0,
            tiers: [0; 4],
            waited: 0,
            errors: 0,
            sum_us: 0,
            min_us: u64::MAX,
            max_us: 0,
            hist: hist::Hist::default(),
            rows_sent: 0,
            rows_affected: 0,
            first_seen: now,
            last_seen: now,
        }
    }

    fn add(&mut self, r: &Record<'_>, now: u64) {
        self.count += 1;
        if let Some(t) = self.tiers.get_mut(r.tier as usize) {
            *t += 1;
        }
        self.waited += u64::from(r.waited);
        self.errors += u64::from(r.error);
        self.sum_us = self.sum_us.saturating_add(r.latency_us);
        self.min_us = self.min_us.min(r.latency_us);
        self.max_us = self.max_us.max(r.latency_us);
        self.hist.record(r.latency_us);
        self.rows_sent = self.rows_sent.saturating_add(r.rows);
        self.rows_affected = self.rows_affected.saturating_add(r.affected);
        self.last_seen = now;
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Unix time in microseconds.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The digest store.
#[derive(Debug)]
pub struct Digests {
    map: DashMap<u64, Entry>,
    max: usize,
    evictions: AtomicU64,
    evicting: AtomicBool,
    /// `causeway_routing_reasons_total` handles of the fixed reasons, made
    /// on first use (after the recorder is installed).
    reasons: OnceLock<Vec<metrics::Counter>>,
}

impl Digests {
    /// A store of at most `max` rows.
    pub fn new(max: usize) -> Digests {
        Digests {
            map: DashMap::new(),
            max: max.max(1),
            evictions: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            reasons: OnceLock::new(),
        }
    }

    /// Counts one statement (one shard lock; a new row may first evict the
    /// least recently used ones).
    pub(crate) fn record(&self, r: &Record<'_>) {
        let key = row_key(r.hash, r.user, r.schema);
        let now = now_us();
        if let Some(mut e) = self.map.get_mut(&key) {
            e.add(r, now);
            return;
        }
        if self.map.len() >= self.max {
            self.evict();
        }
        self.map
            .entry(key)
            .or_insert_with(|| Entry::new(r, now))
            .add(r, now);
    }

    /// Removes the least recently used rows so that about 1/64 of the
    /// capacity is free again (amortised: one scan per `max / 64` new rows).
    /// One evictor at a time; others go on (the store may then briefly
    /// hold one row per concurrent insert more than `max`).
    fn evict(&self) {
        if self.evicting.swap(true, Ordering::Acquire) {
            return;
        }
        let keep = self.max - (self.max / 64).max(1);
        let mut ages: Vec<(u64, u64)> = self.map.iter().map(|e| (e.last_seen, *e.key())).collect();
        if ages.len() > keep {
            let drop_n = ages.len() - keep;
            ages.select_nth_unstable(drop_n - 1);
            for (_, k) in ages.iter().take(drop_n) {
                if self.map.remove(k).is_some() {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.evicting.store(false, Ordering::Release);
    }

    /// Counts a statement's routing reason (no registry lookup for the
    /// fixed ones).
    pub(crate) fn count_reason(&self, why: &log::Why) {
        let Some(i) = why.index() else {
            why.count();
            return;
        };
        let handles = self.reasons.get_or_init(|| {
            log::Why::FIXED
                .iter()
                .map(|r| metrics::counter!(crate::metrics::ROUTING_REASONS, "reason" => *r))
                .collect()
        });
        if let Some(c) = handles.get(i) {
            c.increment(1);
        }
    }

    /// Rows evicted since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Rows held now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Empties the store (`RESET CAUSEWAY DIGESTS`).
    pub fn reset(&self) {
        self.map.clear();
    }

    /// A copy of the rows, sorted by `order` (descending), at most `limit`.
    pub(crate) fn rows(&self, order: Order, limit: usize) -> Vec<Row> {
        let mut rows: Vec<Row> = self.map.iter().map(|e| Row::from(e.value())).collect();
        rows::sort(&mut rows, order);
        rows.truncate(limit);
        rows
    }
}

/// The map key of a row: the digest hash mixed with the user and schema.
fn row_key(hash: u64, user: &str, schema: Option<&str>) -> u64 {
    let mut h = hash ^ 0x9e37_79b9_7f4a_7c15;
    for b in user
        .bytes()
        .chain([0xff])
        .chain(schema.unwrap_or("").bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ u64::from(schema.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(hash: u64, user: &str) -> Record<'_> {
        Record {
            hash,
            text: "SELECT ?",
            user,
            schema: Some("db"),
            tier: Tier::Replica,
            waited: false,
            error: false,
            latency_us: 100,
            rows: 1,
            affected: 0,
        }
    }

    #[test]
    fn bounded_and_lru() {
        let d = Digests::new(128);
        d.record(&rec(0, "keep"));
        for i in 1..2000u64 {
            d.record(&rec(i, "u"));
            d.record(&rec(0, "keep"));
            assert!(d.len() <= 128);
        }
        let rows = d.rows(Order::Count, usize::MAX);
        assert!(rows.iter().any(|r| r.user == "keep" && r.count == 2000));
        assert!(d.evictions() >= 2000 - 128);
    }

    #[test]
    fn rows_per_user_and_schema() {
        let d = Digests::new(10);
        d.record(&rec(7, "a"));
        d.record(&rec(7, "b"));
        d.record(&Record {
            schema: None,
            ..rec(7, "a")
        });
        assert_eq!(d.len(), 3);
        d.reset();
        assert!(d.is_empty());
    }

    #[test]
    fn cut_at_char_boundary() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("abc", 10), "abc");
    }
}
