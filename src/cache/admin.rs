//! `SHOW CAUSEWAY CACHE`: one row per rule (entries, bytes, requests, hit
//! rate, hits by level), one row for the binlog reader (state, position, P,
//! lag, why causal reads bypass) and, with `redis_url`, one row for the
//! shared level (breaker state, link, counters).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::shared::SharedStore;
use super::Cache;

/// Column names of `SHOW CAUSEWAY CACHE`.
pub const COLUMNS: &[&str] = &[
    "kind",
    "name",
    "entries",
    "bytes",
    "hits",
    "misses",
    "bypasses",
    "hit_rate",
    "state",
    "detail",
    "local_hits",
    "shared_hits",
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
        let shared = stats.shared_hits.load(Ordering::Relaxed);
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
            Some(hits.saturating_sub(shared).to_string()),
            Some(shared.to_string()),
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
            None,
            None,
        ]);
    }
    if let Some(s) = cache.shared() {
        out.push(shared_row(s));
    }
    out
}

/// The `shared` row: the Redis level's URL (password hidden), breaker and
/// link state, and its counters.
fn shared_row(s: &SharedStore) -> Vec<Option<String>> {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let st = &s.stats;
    let (served, absent, refused) = (n(&st.served), n(&st.absent), n(&st.refused));
    let asked = n(&st.gets) + n(&st.skipped);
    let rate = if asked == 0 {
        "0.000".to_string()
    } else {
        format!("{:.3}", served as f64 / asked as f64)
    };
    let detail = format!(
        "link={}; gets={} found={} absent={absent} refused={refused} served={served} timeouts={} errors={} skipped={}; sets={} set_errors={} set_dropped={}{}",
        s.link_state(),
        n(&st.gets),
        n(&st.found),
        n(&st.timeouts),
        n(&st.errors),
        n(&st.skipped),
        n(&st.sets),
        n(&st.set_errors),
        n(&st.set_dropped),
        s.last_error().map(|e| format!("; last_error={e}")).unwrap_or_default()
    );
    vec![
        Some("shared".into()),
        Some(s.shown().to_string()),
        None,
        None,
        Some(served.to_string()),
        Some((absent + refused).to_string()),
        Some(n(&st.skipped).to_string()),
        Some(rate),
        Some(s.breaker.state().to_string()),
        Some(detail),
        None,
        Some(served.to_string()),
    ]
}
