//! What one backend's monitor task takes from the configuration
//! ([`Settings`]), replaced on reload; whether a change needs a new
//! connection.

use causeway_config::{Backend as BackendConfig, Config};
use std::time::Duration;

use crate::topology::Role;

/// Everything a task needs from the configuration; replaced on reload.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// Backend name.
    pub name: String,
    /// Primary or replica.
    pub role: Role,
    /// `host:port` as configured.
    pub address: String,
    /// Host part.
    pub host: String,
    /// Port part.
    pub port: u16,
    /// Monitor user.
    pub user: String,
    /// Monitor password.
    pub password: String,
    /// Health / lag period.
    pub interval: Duration,
    /// GTID poll period.
    pub gtid_interval: Duration,
    /// Connect timeout, also the bound of every query.
    pub connect_timeout: Duration,
    /// Lag budget in ms.
    pub budget_ms: u64,
    /// Lag hysteresis in ms.
    pub hysteresis_ms: u64,
    /// The `watermark_query` of the backend's pool: run instead of reading
    /// `@@gtid_executed`; the store is not a GTID replica (no read-only,
    /// replication or source checks).
    pub watermark_query: Option<String>,
    /// `[backend_tls]`: the monitor's connections follow the same mode.
    pub tls: causeway_config::BackendTls,
    /// `[failover] mode = "follow"`: every server's sources are read, and a
    /// replica takes reads only while it follows the writer.
    pub follow: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("address", &self.address)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("interval", &self.interval)
            .field("gtid_interval", &self.gtid_interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("budget_ms", &self.budget_ms)
            .field("hysteresis_ms", &self.hysteresis_ms)
            .field("watermark_query", &self.watermark_query)
            .finish()
    }
}

impl Settings {
    /// Settings of `backend` under `config`.
    pub fn new(config: &Config, backend: &BackendConfig, role: Role) -> Settings {
        let m = &config.monitor;
        Settings {
            name: backend.name.clone(),
            role,
            address: backend.address.clone(),
            host: backend.host().to_string(),
            port: backend.port(),
            user: m.user.clone(),
            password: m.password.clone(),
            interval: m.interval().max(Duration::from_millis(1)),
            gtid_interval: m.gtid_interval().max(Duration::from_millis(1)),
            connect_timeout: m.connect_timeout().max(Duration::from_millis(1)),
            budget_ms: config.max_lag_for(backend).as_millis() as u64,
            hysteresis_ms: config.routing.lag_hysteresis_ms,
            watermark_query: match role {
                Role::Replica if !backend.in_default_pool() => {
                    config.pool(&backend.pool).watermark_query
                }
                _ => None,
            },
            tls: config.backend_tls.clone(),
            follow: config.failover.mode == causeway_config::FailoverMode::Follow,
        }
    }

    /// Whether `other` reaches the same server as the same account (the
    /// task keeps its connection).
    pub(super) fn same_endpoint(&self, other: &Settings) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.user == other.user
            && self.password == other.password
            && self.tls == other.tls
    }
}
