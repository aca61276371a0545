//! The rows of `SHOW CAUSEWAY DIGESTS` and `/api/digests`: one snapshot
//! struct per (digest, user, schema), its column names, text values and
//! the sort orders `?order=` accepts.

use serde::Serialize;

use super::{hist, Entry};

/// `SHOW CAUSEWAY DIGESTS` columns, in order (also the JSON keys).
pub(crate) const COLUMNS: &[&str] = &[
    "digest",
    "digest_text",
    "user",
    "schema",
    "count",
    "cache",
    "replica",
    "primary",
    "fallback",
    "waited",
    "errors",
    "sum_us",
    "min_us",
    "max_us",
    "p99_us",
    "rows_sent",
    "rows_affected",
    "first_seen",
    "last_seen",
];

/// One row, as shown.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    /// The digest hash, 16 hex digits.
    pub digest: String,
    pub digest_text: String,
    pub user: String,
    pub schema: Option<String>,
    pub count: u64,
    pub cache: u64,
    pub replica: u64,
    pub primary: u64,
    pub fallback: u64,
    pub waited: u64,
    pub errors: u64,
    pub sum_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub p99_us: u64,
    pub rows_sent: u64,
    pub rows_affected: u64,
    /// Unix time, microseconds.
    pub first_seen: u64,
    pub last_seen: u64,
    /// The latency sketch (not a column; for the Prometheus export).
    #[serde(skip)]
    pub hist: Option<Box<hist::Hist>>,
}

impl From<&Entry> for Row {
    fn from(e: &Entry) -> Row {
        let [cache, replica, primary, fallback] = e.tiers;
        let min_us = if e.count == 0 { 0 } else { e.min_us };
        Row {
            digest: format!("{:016x}", e.hash),
            digest_text: e.text.to_string(),
            user: e.user.to_string(),
            schema: e.schema.as_deref().map(str::to_string),
            count: e.count,
            cache,
            replica,
            primary,
            fallback,
            waited: e.waited,
            errors: e.errors,
            sum_us: e.sum_us,
            min_us,
            max_us: e.max_us,
            p99_us: e.hist.quantile(0.99).clamp(min_us, e.max_us),
            rows_sent: e.rows_sent,
            rows_affected: e.rows_affected,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            hist: Some(Box::new(e.hist.clone())),
        }
    }
}

impl Row {
    /// The text values of the row, in [`COLUMNS`] order.
    pub(crate) fn values(&self) -> Vec<Option<String>> {
        let n = |v: u64| Some(v.to_string());
        vec![
            Some(self.digest.clone()),
            Some(self.digest_text.clone()),
            Some(self.user.clone()),
            self.schema.clone(),
            n(self.count),
            n(self.cache),
            n(self.replica),
            n(self.primary),
            n(self.fallback),
            n(self.waited),
            n(self.errors),
            n(self.sum_us),
            n(self.min_us),
            n(self.max_us),
            n(self.p99_us),
            n(self.rows_sent),
            n(self.rows_affected),
            n(self.first_seen),
            n(self.last_seen),
        ]
    }
}

/// A sort order (always descending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    Count,
    SumUs,
    MaxUs,
    P99Us,
    Errors,
    Primary,
    Replica,
    Fallback,
    Cache,
    Waited,
    RowsSent,
    RowsAffected,
    LastSeen,
    FirstSeen,
}

impl Order {
    /// The order named by a column; `None` for a name that is not a
    /// numeric column.
    pub(crate) fn parse(s: &str) -> Option<Order> {
        Some(match s {
            "count" => Order::Count,
            "sum_us" => Order::SumUs,
            "max_us" => Order::MaxUs,
            "p99_us" => Order::P99Us,
            "errors" => Order::Errors,
            "primary" => Order::Primary,
            "replica" => Order::Replica,
            "fallback" => Order::Fallback,
            "cache" => Order::Cache,
            "waited" => Order::Waited,
            "rows_sent" => Order::RowsSent,
            "rows_affected" => Order::RowsAffected,
            "last_seen" => Order::LastSeen,
            "first_seen" => Order::FirstSeen,
            _ => return None,
        })
    }

    fn key(self, r: &Row) -> u64 {
        match self {
            Order::Count => r.count,
            Order::SumUs => r.sum_us,
            Order::MaxUs => r.max_us,
            Order::P99Us => r.p99_us,
            Order::Errors => r.errors,
            Order::Primary => r.primary,
            Order::Replica => r.replica,
            Order::Fallback => r.fallback,
            Order::Cache => r.cache,
            Order::Waited => r.waited,
            Order::RowsSent => r.rows_sent,
            Order::RowsAffected => r.rows_affected,
            Order::LastSeen => r.last_seen,
            Order::FirstSeen => r.first_seen,
        }
    }
}

/// Sorts descending by `order`, ties by digest then user (stable output).
pub(crate) fn sort(rows: &mut [Row], order: Order) {
    rows.sort_by(|a, b| {
        order
            .key(b)
            .cmp(&order.key(a))
            .then_with(|| a.digest.cmp(&b.digest))
            .then_with(|| a.user.cmp(&b.user))
            .then_with(|| a.schema.cmp(&b.schema))
    });
}
