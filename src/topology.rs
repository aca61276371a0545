//! The topology snapshot: configuration plus one connection pool per
//! backend, published as one `Arc` through an `ArcSwap`.
//!
//! Sessions load the current snapshot when they need a backend and keep
//! using that `Arc` while they hold connections from it; a reload builds a
//! whole new snapshot (reusing the pools of unchanged backends) and swaps it
//! in with one store, so a session never sees half of a change.

use arc_swap::ArcSwap;
use causeway_config::{Backend as BackendConfig, Config};
use causeway_gtid::GtidSet;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

use crate::backend::{Pool, PoolConfig};

/// Errors building a topology.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A backend is configured twice.
    #[error("backend '{0}' appears twice")]
    Duplicate(String),
    /// The query rules do not compile.
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// A `[tls]` or `[backend_tls]` file could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Role of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The writable primary.
    Primary,
    /// A read replica.
    Replica,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// What the monitor last measured on a backend. Replaced as a whole.
#[derive(Debug, Clone)]
pub struct View {
    /// The last check reached the server.
    pub reachable: bool,
    /// `@@read_only` or `@@super_read_only` is on.
    pub read_only: bool,
    /// Replication receiver and applier threads both run (replicas).
    pub replicating: bool,
    /// The server's executed GTID set.
    pub gtid_executed: Arc<GtidSet>,
    /// Replication lag in milliseconds (0 when caught up); None if unknown.
    pub lag_ms: Option<u64>,
    /// Last error seen by the monitor.
    pub last_error: Option<String>,
    /// When this view was measured (None: never).
    pub measured_at: Option<Instant>,
    /// Whether routing may use the server (health and lag budget, with
    /// hysteresis), as decided by the monitor.
    pub eligible: bool,
    /// The server's `@@server_uuid` (None until read).
    pub server_uuid: Option<String>,
    /// Replicas: the UUIDs of the sources its receivers are connected to
    /// (None until read, or when the monitor may not read them).
    pub source_uuids: Option<Vec<String>>,
    /// Replicas: whether none of `source_uuids` is the configured primary's
    /// `server_uuid` (None while either is unknown). See
    /// `monitor::source_mismatch`.
    pub source_mismatch: Option<bool>,
    /// MySQL or MariaDB, as the monitor detected (None until connected).
    pub flavor: Option<causeway_gtid::Flavor>,
}

impl View {
    /// `down` (last check failed), `unknown` (never measured), `excluded`
    /// (reachable but not eligible) or `up`.
    pub fn state(&self) -> &'static str {
        if !self.reachable {
            "down"
        } else if self.measured_at.is_none() {
            "unknown"
        } else if !self.eligible {
            "excluded"
        } else {
            "up"
        }
    }
}

impl Default for View {
    fn default() -> Self {
        // Until measured, a backend is assumed usable (fail open) but its
        // GTID set is unknown (empty), so causal reads will not trust it.
        View {
            reachable: true,
            read_only: false,
            replicating: true,
            gtid_executed: Arc::new(GtidSet::new()),
            lag_ms: None,
            last_error: None,
            measured_at: None,
            eligible: true,
            server_uuid: None,
            source_uuids: None,
            source_mismatch: None,
            flavor: None,
        }
    }
}

/// Live state of one backend, shared by every snapshot that contains it
/// unchanged (like its pool) and written only by its monitor task.
#[derive(Debug)]
pub struct BackendState {
    /// Latest view.
    pub view: ArcSwap<View>,
    /// Woken whenever the view changes (causal reads wait on it).
    pub changed: Notify,
    /// Statements sent to this backend.
    pub queries: AtomicU64,
    /// Metric handles, made on first use (after the recorder is installed)
    /// so the per-statement path does no registry lookup.
    pub metrics: std::sync::OnceLock<BackendMetrics>,
    /// Bumped (after the view is stored) whenever the view's `eligible`
    /// flag flips: sessions compare the sum over the replicas with the one
    /// their cached replica choice was made at (`crate::balance`).
    pub flips: AtomicU64,
    /// Sessions homed on this replica (`read_balance = "session"`, counted
    /// by `crate::balance::ledger`).
    pub homed: AtomicU64,
    /// When the monitor last confirmed the view's GTID set: the instant its
    /// probe query was *sent*, in ns since `born`, plus 1 (0: never). The
    /// published set is a superset of everything the server had executed
    /// before that instant.
    confirmed: AtomicU64,
    born: Instant,
}

impl Default for BackendState {
    fn default() -> Self {
        BackendState {
            view: ArcSwap::default(),
            changed: Notify::new(),
            queries: AtomicU64::new(0),
            metrics: std::sync::OnceLock::new(),
            flips: AtomicU64::new(0),
            homed: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

/// Per-backend metric handles.
#[derive(Debug)]
pub struct BackendMetrics {
    /// `causeway_statements_total{route=primary|replica, backend}`.
    pub statements: metrics::Counter,
    /// `causeway_statements_total{route=fallback, backend}`.
    pub fallbacks: metrics::Counter,
    /// `causeway_statements_total{route=primary_read, backend}`: reads the
    /// classifier allows on a replica that ran on the primary by routing
    /// rule (transaction, pinned session) or strong consistency (a no-op
    /// handle for replicas).
    pub primary_reads: metrics::Counter,
    /// `causeway_statement_duration_seconds{tier}`.
    pub latency: metrics::Histogram,
}

impl BackendMetrics {
    /// Handles for backend `name` of `role`.
    pub fn new(name: &str, role: Role) -> BackendMetrics {
        use crate::metrics as m;
        let tier = role.as_str();
        let route = match role {
            Role::Primary => m::route::PRIMARY,
            Role::Replica => m::route::REPLICA,
        };
        BackendMetrics {
            statements: metrics::counter!(m::STATEMENTS, "route" => route, "backend" => name.to_string()),
            fallbacks: metrics::counter!(m::STATEMENTS, "route" => m::route::FALLBACK, "backend" => name.to_string()),
            primary_reads: match role {
                Role::Primary => {
                    metrics::counter!(m::STATEMENTS, "route" => m::route::PRIMARY_READ, "backend" => name.to_string())
                }
                Role::Replica => metrics::Counter::noop(),
            },
            latency: metrics::histogram!(m::STATEMENT_SECONDS, "tier" => tier),
        }
    }
}

impl BackendState {
    /// Publishes a new view and wakes waiters.
    pub fn publish(&self, view: View) {
        let flipped = self.view.load().eligible != view.eligible;
        self.view.store(Arc::new(view));
        if flipped {
            self.flips.fetch_add(1, Ordering::Release);
        }
        self.changed.notify_waiters();
    }

    /// Records that a probe sent at `sent` returned the GTID set of the
    /// current view (call after publishing that view).
    pub fn confirm(&self, sent: Instant) {
        let ns = u64::try_from(sent.saturating_duration_since(self.born).as_nanos())
            .unwrap_or(u64::MAX - 1);
        self.confirmed
            .fetch_max(ns.saturating_add(1), Ordering::Release);
    }

    /// Whether the view's GTID set was confirmed by a probe sent at or after
    /// `t`: then it contains everything the server executed before `t`.
    pub fn confirmed_since(&self, t: Instant) -> bool {
        let c = self.confirmed.load(Ordering::Acquire);
        let t_ns = u64::try_from(t.saturating_duration_since(self.born).as_nanos())
            .unwrap_or(u64::MAX - 1);
        c > t_ns
    }
}

/// One backend server in a snapshot.
#[derive(Debug)]
pub struct Backend {
    /// Its configuration.
    pub config: BackendConfig,
    /// Its role.
    pub role: Role,
    /// Its connection pool (shared with later snapshots while unchanged).
    pub pool: Arc<Pool>,
    /// Its monitored state (shared with later snapshots while unchanged).
    pub state: Arc<BackendState>,
}

impl Backend {
    /// Name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// This backend's metric handles.
    pub fn metrics(&self) -> &BackendMetrics {
        self.state
            .metrics
            .get_or_init(|| BackendMetrics::new(self.name(), self.role))
    }
}

/// An immutable view of the configured servers.
#[derive(Debug)]
pub struct Topology {
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// The primary.
    pub primary: Arc<Backend>,
    /// Replicas in configuration order.
    pub replicas: Vec<Arc<Backend>>,
    /// Snapshot generation (1 for the first, +1 per reload).
    pub generation: u64,
    /// The compiled `[[rules]]`.
    pub rules: crate::rules::Rules,
    /// TLS offered to clients (`[tls]`, its files read by this build).
    pub client_tls: Option<crate::tls::ServerTls>,
    /// The instance's session counts (`crate::balance::ledger`), carried
    /// over from the previous snapshot.
    pub ledger: Arc<crate::balance::Ledger>,
}

impl Topology {
    /// Builds a snapshot from `config` whose primary is `[primary]`; see
    /// [`Topology::build_with`].
    pub fn build(
        config: Arc<Config>,
        previous: Option<&Topology>,
    ) -> Result<Topology, TopologyError> {
        Topology::build_with(config, previous, None)
    }

    /// Builds a snapshot from `config` whose primary (the writer) is the
    /// configured server named `writer` (`[primary]` when `None` or not
    /// configured); every other configured server is a replica, in
    /// configuration order. A backend keeps its monitored state while its
    /// name and address are unchanged (a role change included), and its
    /// pool while its role and pool settings are unchanged too: a server
    /// that stops or starts being the writer gets a new pool, and the old
    /// one's idle connections are closed (`crate::reload::release_left_pools`).
    pub fn build_with(
        config: Arc<Config>,
        previous: Option<&Topology>,
        writer: Option<&str>,
    ) -> Result<Topology, TopologyError> {
        let pool_cfg = PoolConfig {
            max: config.server.pool_max_per_backend as usize,
            connect_timeout: config.server.connect_timeout(),
            idle_timeout: config.server.pool_idle_timeout(),
            tls: crate::tls::BackendTls::from_config(&config.backend_tls)?,
        };
        let client_tls = config
            .tls
            .as_ref()
            .map(crate::tls::ServerTls::load)
            .transpose()?;
        let mut old: HashMap<&str, &Arc<Backend>> = HashMap::new();
        if let Some(prev) = previous {
            for b in prev.backends() {
                old.insert(b.name(), b);
            }
        }
        let make = |cfg: &BackendConfig, role: Role| -> Arc<Backend> {
            let same = old
                .get(cfg.name.as_str())
                .filter(|b| b.config.address == cfg.address);
            let state = match same {
                Some(b) => Arc::clone(&b.state),
                None => Arc::new(BackendState::default()),
            };
            let pool = match same
                .filter(|b| b.role == role && same_pool_settings(b.pool.config(), &pool_cfg))
            {
                Some(b) => Arc::clone(&b.pool),
                None => Pool::new(&cfg.name, &cfg.address, pool_cfg.clone()),
            };
            Arc::new(Backend {
                config: cfg.clone(),
                role,
                pool,
                state,
            })
        };
        let all: Vec<&BackendConfig> = std::iter::once(&config.primary)
            .chain(config.replicas.iter())
            .collect();
        for (i, b) in all.iter().enumerate() {
            if all[..i].iter().any(|o| o.name == b.name) {
                return Err(TopologyError::Duplicate(b.name.clone()));
            }
        }
        let writer = writer
            .filter(|w| all.iter().any(|b| b.name == *w))
            .unwrap_or(config.primary.name.as_str());
        let mut primary = None;
        let mut replicas = Vec::with_capacity(config.replicas.len());
        for b in &all {
            if b.name == writer {
                primary = Some(make(b, Role::Primary));
            } else {
                replicas.push(make(b, Role::Replica));
            }
        }
        let primary = primary.unwrap_or_else(|| make(&config.primary, Role::Primary));
        let rules = crate::rules::Rules::compile(&config, previous.map(|p| &p.rules))?;
        Ok(Topology {
            rules,
            generation: previous.map(|p| p.generation + 1).unwrap_or(1),
            config,
            primary,
            replicas,
            client_tls,
            ledger: previous.map(|p| Arc::clone(&p.ledger)).unwrap_or_default(),
        })
    }

    /// Every backend, primary first.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    /// A backend by name.
    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        if self.primary.name() == name {
            return Some(&self.primary);
        }
        self.replicas.iter().find(|r| r.name() == name)
    }
}

/// Whether a pool made with `have` serves a snapshot that asks for `want`.
/// Every setting counts (the destructuring makes a new one a compile error
/// here until it is decided).
fn same_pool_settings(have: &PoolConfig, want: &PoolConfig) -> bool {
    let PoolConfig {
        max,
        connect_timeout,
        idle_timeout,
        tls,
    } = want;
    have.max == *max
        && have.connect_timeout == *connect_timeout
        && have.idle_timeout == *idle_timeout
        && have.tls == *tls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(server: &str, prev: Option<&Topology>) -> Topology {
        let text = format!(
            "[server]\nlisten='127.0.0.1:0'\n{server}\n[[users]]\nname='a'\n\
             [primary]\nname='p'\naddress='127.0.0.1:1'\n\
             [[replicas]]\nname='r1'\naddress='127.0.0.1:2'\n\
             [monitor]\nuser='m'\n"
        );
        let cfg = Config::from_str_named(&text, "t.toml").unwrap();
        Topology::build(Arc::new(cfg), prev).unwrap()
    }

    fn reused(old: &Topology, new: &Topology) -> Vec<bool> {
        old.backends()
            .zip(new.backends())
            .map(|(o, n)| Arc::ptr_eq(&o.pool, &n.pool) && Arc::ptr_eq(&o.state, &n.state))
            .collect()
    }

    #[test]
    fn every_pool_setting_decides_whether_a_pool_is_reused() {
        let base = build("pool_idle_timeout_ms = 60000", None);
        let same = build("pool_idle_timeout_ms = 60000", Some(&base));
        assert_eq!(reused(&base, &same), [true, true]);
        assert_eq!(same.generation, 2);
        for changed in [
            "pool_idle_timeout_ms = 1000",
            "pool_idle_timeout_ms = 60000\npool_max_per_backend = 3",
            "pool_idle_timeout_ms = 60000\nconnect_timeout_ms = 777",
        ] {
            let next = build(changed, Some(&base));
            assert_eq!(reused(&base, &next), [false, false], "{changed}");
        }
        let idle = build("pool_idle_timeout_ms = 1000", Some(&base));
        assert_eq!(
            idle.primary.pool.config().idle_timeout,
            std::time::Duration::from_millis(1000)
        );
    }
}
