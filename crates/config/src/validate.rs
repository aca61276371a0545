//! Semantic validation of a parsed `Config`: addresses, name uniqueness,
//! ranges and cross-field rules. Returns the first problem found as a key
//! path plus message; `lib.rs` turns it into `ConfigError::Invalid` with a
//! line number.

use std::collections::HashSet;

use crate::address::{check_connect_addr, check_listen_addr};
use crate::error::Seg;
use crate::model::{
    Backend, Config, MAX_CLIENT_PACKET, MAX_TIMEOUT_MS, MAX_WEIGHT, MIN_CLIENT_PACKET,
};

/// A validation failure: where (key path) and what.
#[derive(Debug)]
pub(crate) struct Problem {
    pub path: Vec<Seg>,
    pub message: String,
}

fn key(parts: &[&str]) -> Vec<Seg> {
    parts.iter().map(|p| Seg::Key(p.to_string())).collect()
}

fn indexed(section: &str, i: usize, field: &str) -> Vec<Seg> {
    vec![
        Seg::Key(section.to_string()),
        Seg::Index(i),
        Seg::Key(field.to_string()),
    ]
}

fn fail<T>(path: Vec<Seg>, message: impl Into<String>) -> Result<T, Problem> {
    Err(Problem {
        path,
        message: message.into(),
    })
}

fn positive(value: u64, path: &[&str]) -> Result<(), Problem> {
    if value == 0 {
        return fail(key(path), "must be greater than 0");
    }
    Ok(())
}

/// Check every semantic rule; the first violation is returned.
pub(crate) fn validate(c: &Config) -> Result<(), Problem> {
    check_server(c)?;
    check_users(c)?;
    check_backends(c)?;
    check_monitor(c)?;
    // [tls] and [backend_tls]
    crate::tls::validate(c.tls.as_ref(), &c.backend_tls)?;
    check_routing(c)?;
    if let Err((field, message)) = crate::cache::check(&c.cache) {
        return fail(key(&["cache", field]), message);
    }
    if let Err((field, message)) = crate::binlog::check(&c.binlog) {
        return fail(key(&["binlog", field]), message);
    }
    if let Err((field, message)) = crate::failover::check(&c.failover) {
        return fail(key(&["failover", field]), message);
    }
    if let Err((section, field, message)) = crate::observe::check(&c.digests, &c.decision_log) {
        return fail(key(&[section, field]), message);
    }
    // replicas[].pool, [[pools]], [[rules]]
    crate::rules::validate(c)
}

/// `[server]` and `[admin]`.
fn check_server(c: &Config) -> Result<(), Problem> {
    let s = &c.server;
    if let Err(e) = check_listen_addr(&s.listen) {
        return fail(key(&["server", "listen"]), e);
    }
    positive(s.max_connections.into(), &["server", "max_connections"])?;
    positive(s.connect_timeout_ms, &["server", "connect_timeout_ms"])?;
    positive(
        s.pool_max_per_backend.into(),
        &["server", "pool_max_per_backend"],
    )?;
    positive(s.pool_idle_timeout_ms, &["server", "pool_idle_timeout_ms"])?;
    if s.worker_threads > 1024 {
        return fail(
            key(&["server", "worker_threads"]),
            "must be at most 1024 (0 = one per core)",
        );
    }
    check_client_limits(s)?;
    if !(1..=crate::model::MAX_PIPELINE_DEPTH).contains(&s.pipeline_depth) {
        return fail(
            key(&["server", "pipeline_depth"]),
            format!(
                "must be between 1 and {} (1 = no pipelining)",
                crate::model::MAX_PIPELINE_DEPTH
            ),
        );
    }
    positive(s.pipeline_stall_ms, &["server", "pipeline_stall_ms"])?;

    if c.admin.enabled {
        if let Err(e) = check_listen_addr(&c.admin.listen) {
            return fail(key(&["admin", "listen"]), e);
        }
        if c.admin.listen == s.listen && !s.listen.ends_with(":0") {
            return fail(
                key(&["admin", "listen"]),
                format!("'{}' is already used by server.listen", c.admin.listen),
            );
        }
    }
    Ok(())
}

/// `[[users]]`: at least one, names unique and non-empty.
fn check_users(c: &Config) -> Result<(), Problem> {
    if c.users.is_empty() {
        return fail(key(&["users"]), "at least one [[users]] entry is required");
    }
    let mut user_names = HashSet::new();
    for (i, u) in c.users.iter().enumerate() {
        if u.name.trim().is_empty() {
            return fail(indexed("users", i, "name"), "must not be empty");
        }
        if !user_names.insert(u.name.as_str()) {
            return fail(
                indexed("users", i, "name"),
                format!("duplicate user name '{}'", u.name),
            );
        }
        if u.backend_user.trim().is_empty() {
            return fail(indexed("users", i, "backend_user"), "must not be empty");
        }
    }
    Ok(())
}

/// `[primary]` and `[[replicas]]`.
fn check_backends(c: &Config) -> Result<(), Problem> {
    let mut backend_names = HashSet::new();
    check_backend(&c.primary, &mut backend_names, |f| key(&["primary", f]))?;
    for (i, r) in c.replicas.iter().enumerate() {
        check_backend(r, &mut backend_names, |f| indexed("replicas", i, f))?;
        if let Some(z) = &r.zone {
            check_zone(z, || indexed("replicas", i, "zone"))?;
        }
        if r.weight > MAX_WEIGHT {
            return fail(
                indexed("replicas", i, "weight"),
                format!("{} is out of range (0-{MAX_WEIGHT})", r.weight),
            );
        }
        if let Some(lag) = r.max_lag_ms {
            if lag == 0 {
                return fail(
                    indexed("replicas", i, "max_lag_ms"),
                    "must be greater than 0",
                );
            }
            if lag <= c.routing.lag_hysteresis_ms {
                return fail(
                    indexed("replicas", i, "max_lag_ms"),
                    format!(
                        "{lag} must be greater than routing.lag_hysteresis_ms ({})",
                        c.routing.lag_hysteresis_ms
                    ),
                );
            }
        }
    }
    Ok(())
}

/// `[monitor]`.
fn check_monitor(c: &Config) -> Result<(), Problem> {
    let m = &c.monitor;
    if m.user.trim().is_empty() {
        return fail(key(&["monitor", "user"]), "must not be empty");
    }
    positive(m.interval_ms, &["monitor", "interval_ms"])?;
    positive(m.gtid_interval_ms, &["monitor", "gtid_interval_ms"])?;
    positive(m.connect_timeout_ms, &["monitor", "connect_timeout_ms"])?;
    Ok(())
}

/// `[routing]`.
fn check_routing(c: &Config) -> Result<(), Problem> {
    let r = &c.routing;
    positive(r.max_lag_ms, &["routing", "max_lag_ms"])?;
    // the causal wait's cap (causeway::consistency::MAX_WAIT_TIMEOUT_MS)
    if r.wait_timeout_ms > 60_000 {
        return fail(
            key(&["routing", "wait_timeout_ms"]),
            format!("{} exceeds the maximum of 60000", r.wait_timeout_ms),
        );
    }
    if r.lag_hysteresis_ms >= r.max_lag_ms {
        return fail(
            key(&["routing", "lag_hysteresis_ms"]),
            format!(
                "{} must be less than routing.max_lag_ms ({})",
                r.lag_hysteresis_ms, r.max_lag_ms
            ),
        );
    }
    if let Some(z) = &r.zone {
        check_zone(z, || key(&["routing", "zone"]))?;
    }
    Ok(())
}

/// A zone name: 1 to 64 characters, letters, digits, `-`, `_`, `.`.
fn check_zone(z: &str, path: impl Fn() -> Vec<Seg>) -> Result<(), Problem> {
    let ok = !z.is_empty()
        && z.len() <= 64
        && z.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        fail(
            path(),
            format!("{z:?} is not a zone name (1-64 of letters, digits, '-', '_', '.')"),
        )
    }
}

/// The client-facing bounds of `[server]`.
fn check_client_limits(s: &crate::model::Server) -> Result<(), Problem> {
    if !(MIN_CLIENT_PACKET..=MAX_CLIENT_PACKET).contains(&s.max_client_packet) {
        return fail(
            key(&["server", "max_client_packet"]),
            format!(
                "{} is out of range ({MIN_CLIENT_PACKET}-{MAX_CLIENT_PACKET})",
                s.max_client_packet
            ),
        );
    }
    positive(s.login_timeout_ms, &["server", "login_timeout_ms"])?;
    positive(
        s.max_pending_logins.into(),
        &["server", "max_pending_logins"],
    )?;
    for (value, name) in [
        (s.login_timeout_ms, "login_timeout_ms"),
        (s.client_idle_timeout_ms, "client_idle_timeout_ms"),
    ] {
        if value > MAX_TIMEOUT_MS {
            return fail(
                key(&["server", name]),
                format!("{value} is out of range (at most {MAX_TIMEOUT_MS}, one year)"),
            );
        }
    }
    Ok(())
}

fn check_backend<'a>(
    b: &'a Backend,
    names: &mut HashSet<&'a str>,
    path: impl Fn(&str) -> Vec<Seg>,
) -> Result<(), Problem> {
    if b.name.trim().is_empty() {
        return fail(path("name"), "must not be empty");
    }
    if !names.insert(b.name.as_str()) {
        return fail(
            path("name"),
            format!(
                "duplicate backend name '{}' (names must be unique across [primary] and [[replicas]])",
                b.name
            ),
        );
    }
    if let Err(e) = check_connect_addr(&b.address) {
        return fail(path("address"), e);
    }
    Ok(())
}
