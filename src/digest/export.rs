//! The Prometheus view of the digest store: a latency histogram for the
//! top-K digests by total time only (`[digests] export_top`), so label
//! cardinality stays bounded, rendered from each row's sketch at scrape
//! time (nothing is recorded per statement for it).

use std::fmt::Write;

use super::{hist, Digests, Order};
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
    let rows = d.rows(Order::SumUs, k);
    let name = m::DIGEST_LATENCY_SECONDS;
    let _ = writeln!(out, "# TYPE {name} histogram");
    for r in rows {
        let Some(h) = r.hist.as_deref() else {
            continue;
        };
        let labels = format!(
            "digest=\"{}\",user=\"{}\",schema=\"{}\"",
            r.digest,
            escape(&r.user),
            escape(r.schema.as_deref().unwrap_or(""))
        );
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
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
