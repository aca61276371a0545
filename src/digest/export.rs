//! The Prometheus view of the digest store, for the top-K rows by total
//! time and the top-K by primary statements only (`[digests] export_top`),
//! so label cardinality stays bounded: a latency histogram rendered from
//! each row's sketch, its total time and p99 (for dashboards), and its
//! statements per tier. Rendered at scrape time
//! (nothing is recorded per statement for it).

use std::fmt::Write;

use super::{hist, Digests, Order, Row};
use crate::metrics as m;

/// `le` bounds of the exported histogram, seconds.
const LE: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Prometheus text of the top `k` digests' histograms (empty for k = 0).
/// A sketch bucket counts towards an `le` when its whole range is below it.
pub(crate) fn render(d: &Digests, k: usize) -> String {
    let mut out = String::new();
    if k == 0 {
        return out;
    }
    let mut rows = d.rows(Order::SumUs, k);
    for r in d.rows(Order::Primary, k) {
        let same = |x: &Row| x.digest == r.digest && x.user == r.user && x.schema == r.schema;
        if r.primary > 0 && !rows.iter().any(same) {
            rows.push(r);
        }
    }
    let name = m::DIGEST_LATENCY_SECONDS;
    let _ = writeln!(out, "# TYPE {name} histogram");
    for r in &rows {
        let Some(h) = r.hist.as_deref() else {
            continue;
        };
        let labels = labels(r);
        let counts = h.counts();
        for le in LE {
            let le_us = (le * 1e6) as u64;
            let n: u64 = counts
                .iter()
                .enumerate()
                .filter(|(i, _)| hist::upper(*i) <= le_us)
                .map(|(_, &c)| u64::from(c))
                .sum();
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", r.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", r.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", r.count);
    }
    let name = m::DIGEST_SECONDS;
    let _ = writeln!(out, "# TYPE {name} counter");
    for r in &rows {
        let _ = writeln!(out, "{name}{{{}}} {}", labels(r), r.sum_us as f64 / 1e6);
    }
    let name = m::DIGEST_P99_SECONDS;
    let _ = writeln!(out, "# TYPE {name} gauge");
    for r in &rows {
        let _ = writeln!(out, "{name}{{{}}} {}", labels(r), r.p99_us as f64 / 1e6);
    }
    let name = m::DIGEST_STATEMENTS;
    let _ = writeln!(out, "# TYPE {name} counter");
    for r in &rows {
        let labels = labels(r);
        for (tier, n) in [
            ("cache", r.cache),
            ("replica", r.replica),
            ("primary", r.primary),
            ("fallback", r.fallback),
        ] {
            let _ = writeln!(out, "{name}{{{labels},tier=\"{tier}\"}} {n}");
        }
    }
    out
}

/// `digest`, `text` (its first 80 bytes, quotes and backslashes made
/// `'` and `/` so naive parsers of the text format cope), `user`, and
/// `schema` unless there is none (an empty label is an absent one).
fn labels(r: &Row) -> String {
    let mut l = format!(
        "digest=\"{}\",text=\"{}\",user=\"{}\"",
        r.digest,
        plain(super::cut(&r.digest_text, 80)),
        escape(&r.user),
    );
    if let Some(s) = r.schema.as_deref().filter(|s| !s.is_empty()) {
        let _ = write!(l, ",schema=\"{}\"", escape(s));
    }
    l
}

fn plain(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
