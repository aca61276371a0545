//! The JSON bodies of the admin API (`/api/backends`, `/api/sessions`,
//! `/api/config`), built from a topology snapshot, the session registry and
//! the configuration in force. Read-only: nothing here changes the proxy.
//!
//! Stable field names (documented in the README); values that are not known
//! yet are `null`. Passwords never leave: every object key containing
//! `password` has its value replaced by `"<redacted>"` ([`redact`]), so keys
//! added to the configuration later are covered too.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::shared::Shared;
use crate::topology::{Role, Topology};

/// What replaces a password.
pub const REDACTED: &str = "<redacted>";

/// One backend in `/api/backends`.
#[derive(Debug, Serialize)]
pub struct BackendJson {
    /// Configured name.
    pub name: String,
    /// `primary` or `replica`.
    pub role: &'static str,
    /// `host:port`.
    pub address: String,
    /// `up`, `down`, `excluded` or `unknown` (as in SHOW CAUSEWAY BACKENDS).
    pub state: &'static str,
    /// Routing weight.
    pub weight: u32,
    /// Reachable at the last check.
    pub reachable: bool,
    /// Eligible for routing.
    pub eligible: bool,
    /// Replication threads run (replicas; false for the primary).
    pub replicating: bool,
    /// `read_only || super_read_only`; null until a health check read it.
    pub read_only: Option<bool>,
    /// Replica writable while reachable: a split-brain risk.
    pub writable_replica: bool,
    /// `@@server_uuid`.
    pub server_uuid: Option<String>,
    /// Replicas: source UUIDs of the receivers.
    pub source_uuids: Option<Vec<String>>,
    /// Replicas: no source is the configured primary.
    pub source_mismatch: Option<bool>,
    /// Lag in ms (0 caught up), null when unknown.
    pub lag_ms: Option<u64>,
    /// Executed GTID set as the monitor last read it.
    pub gtid_executed: String,
    /// Milliseconds since the monitor last published a view.
    pub measured_ms_ago: Option<u64>,
    /// The monitor's last error.
    pub last_error: Option<String>,
    /// Open backend connections (idle or in use).
    pub connections: usize,
    /// Statements sent to it.
    pub queries: u64,
    /// It takes writes now (`[failover]`; see README, Failover).
    pub writer: bool,
    /// The replica's configured `zone` (null when none).
    pub zone: Option<String>,
    /// Live sessions homed on it (`read_balance = "session"`).
    pub sessions: u64,
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"))
}

/// `/api/backends`: primary first, then replicas in configuration order.
pub fn backends(topo: &Topology, status: &crate::failover::Status) -> String {
    let writer = status.writer(topo);
    let list: Vec<BackendJson> = topo
        .backends()
        .map(|b| {
            let v = b.state.view.load();
            let read_only = v.server_uuid.as_ref().map(|_| v.read_only);
            BackendJson {
                name: b.name().to_string(),
                role: b.role.as_str(),
                address: b.config.address.clone(),
                state: v.state(),
                weight: b.config.weight,
                reachable: v.reachable,
                eligible: v.eligible,
                replicating: v.replicating,
                read_only,
                writable_replica: b.role == Role::Replica
                    && v.reachable
                    && read_only == Some(false),
                server_uuid: v.server_uuid.clone(),
                source_uuids: v.source_uuids.clone(),
                source_mismatch: v.source_mismatch,
                lag_ms: v.lag_ms,
                gtid_executed: v.gtid_executed.to_string(),
                measured_ms_ago: v
                    .measured_at
                    .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
                last_error: v.last_error.clone(),
                connections: b.pool.open_connections(),
                queries: b.state.queries.load(Ordering::Relaxed),
                writer: writer == Some(b.name()),
                zone: b.config.zone.clone(),
                sessions: b.state.homed.load(Ordering::Relaxed),
            }
        })
        .collect();
    to_json(&list)
}

/// Sessions of one user in one state, in `/api/sessions`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SessionCount {
    /// Client user.
    pub user: String,
    /// `running` (a statement is on a backend now) or `idle`.
    pub state: &'static str,
    /// How many.
    pub count: usize,
}

/// The `/api/sessions` body.
#[derive(Debug, Serialize)]
pub struct SessionsJson {
    /// Connected clients, including those still logging in.
    pub clients: usize,
    /// Logged-in sessions.
    pub sessions: usize,
    /// Sessions per user and state, sorted by user then state.
    pub by_user: Vec<SessionCount>,
}

/// `/api/sessions`.
pub fn sessions(shared: &Shared) -> String {
    let mut counts: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut total = 0usize;
    shared.sessions.for_each(|_, s| {
        let user = s.user();
        let state = if s.running().is_some() {
            "running"
        } else {
            "idle"
        };
        *counts.entry((user, state)).or_default() += 1;
        total += 1;
    });
    to_json(&SessionsJson {
        clients: shared.clients.load(Ordering::Relaxed),
        sessions: total,
        by_user: counts
            .into_iter()
            .map(|((user, state), count)| SessionCount { user, state, count })
            .collect(),
    })
}

/// Replaces the value of every object key containing `password` (any
/// case) with [`REDACTED`], at any depth.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k.to_ascii_lowercase().contains("password") {
                    *val = Value::String(REDACTED.to_string());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `/api/digests?limit=N&order=COLUMN`: the digest rows as a JSON array,
/// sorted descending by `order` (default `sum_us`), at most `limit`.
pub fn digests(shared: &Shared, query: &str) -> Result<String, (hyper::StatusCode, String)> {
    let bad = |m: String| (hyper::StatusCode::BAD_REQUEST, m);
    let Some(d) = &shared.digests else {
        let m = "digests are disabled ([digests] enabled = false)".to_string();
        return Err((hyper::StatusCode::NOT_FOUND, m));
    };
    let mut order = crate::digest::Order::SumUs;
    let mut limit = usize::MAX;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "order" => {
                order = crate::digest::Order::parse(v)
                    .ok_or_else(|| bad(format!("order: unknown numeric column {v:?}")))?;
            }
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| bad(format!("limit: not a number: {v:?}")))?;
            }
            _ => return Err(bad(format!("unknown parameter {k:?}"))),
        }
    }
    Ok(to_json(&d.rows(order, limit)))
}

/// `/api/config`: the configuration in force, passwords redacted.
pub fn config(cfg: &causeway_config::Config) -> String {
    match serde_json::to_value(cfg) {
        Ok(mut v) => {
            redact(&mut v);
            to_json(&v)
        }
        Err(e) => to_json(&serde_json::json!({ "error": e.to_string() })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_at_any_depth() {
        let mut v = serde_json::json!({
            "users": [{"name": "app", "password": "s3cret", "backend_password": "x"}],
            "monitor": {"user": "m", "Password": ""},
            "primary": {"address": "h:1"}
        });
        redact(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("\"x\""),
            "{text}"
        );
        assert_eq!(v["users"][0]["password"], REDACTED);
        assert_eq!(v["users"][0]["backend_password"], REDACTED);
        assert_eq!(v["monitor"]["Password"], REDACTED);
        assert_eq!(v["users"][0]["name"], "app");
        assert_eq!(v["primary"]["address"], "h:1");
    }

    #[test]
    fn the_example_config_has_no_password_left() {
        let text = include_str!("../../conf/causeway.toml");
        let cfg = causeway_config::Config::from_str_named(text, "causeway.toml").unwrap();
        let out = config(&cfg);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(
            v.get("users").is_some() && v.get("monitor").is_some(),
            "{out}"
        );
        for u in &cfg.users {
            if !u.password.is_empty() {
                assert!(!out.contains(&format!("\"{}\"", u.password)), "{out}");
            }
        }
        assert!(
            !out.contains(&format!("\"{}\"", cfg.monitor.password))
                || cfg.monitor.password.is_empty()
        );
    }
}
