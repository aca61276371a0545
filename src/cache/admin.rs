//! `SHOW CAUSEWAY CACHE`: one row per rule (entries, bytes, requests, hit
//! rate) and one row for the binlog reader (state, position, P, lag, why
//! causal reads bypass).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Cache;

/// Column names of `SHOW CAUSEWAY CACHE`.
pub const COLUMNS: &[&str] = &[
    "kind", "name", "entries", "bytes", "hits", "misses", "bypasses", "hit_rate", "state", "detail",
];

/// The rows.
pub fn rows(cache: &Cache) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for (rule, entries, bytes, stats) in cache.per_rule() {
        let hits = stats.hits.load(Ordering::Relaxed);
        let misses = stats.misses.load(Ordering::Relaxed);
        let bypasses = stats.bypasses.load(Ordering::Relaxed);
        let total = hits + misses + bypasses;
        let rate = if total == 0 {
            "0.000".to_string()
        } else {
            format!("{:.3}", hits as f64 / total as f64)
        };
        out.push(vec![
            Some("rule".into()),
            Some(rule.to_string()),
            Some(entries.to_string()),
            Some(bytes.to_string()),
            Some(hits.to_string()),
            Some(misses.to_string()),
            Some(bypasses.to_string()),
            Some(rate),
            Some("".into()),
            Some("".into()),
        ]);
    }
    let (p, live) = cache.processed();
    if let Some(r) = cache.reader() {
        let lag = r
            .caught_up_at
            .map(|t| format!("{:.3}", Instant::now().duration_since(t).as_secs_f64()));
        let why = if cache.config().invalidation == causeway_config::Invalidation::Ttl {
            "invalidation = ttl: causal reads bypass the cache".to_string()
        } else if !live {
            format!(
                "causal reads bypass the cache: reader {}{}",
                r.state,
                r.error.map(|e| format!(" ({e})")).unwrap_or_default()
            )
        } else {
            format!(
                "causal reads use the cache when their token is within the processed set; lag_s={}",
                lag.unwrap_or_else(|| "unknown".into())
            )
        };
        out.push(vec![
            Some("reader".into()),
            Some(r.position),
            None,
            Some(cache.bytes().to_string()),
            Some(r.transactions.to_string()),
            None,
            None,
            None,
            Some(r.state.to_string()),
            Some(format!("processed={p}; {why}")),
        ]);
    }
    out
}
