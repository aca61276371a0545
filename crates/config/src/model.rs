//! The configuration data model: every section struct, its defaults, the
//! `Consistency` / `OnTimeout` enums and `Duration` helper methods.
//!
//! This module owns the *shape* of the TOML file (serde attributes, default
//! values). Semantic checks live in `validate.rs`; error translation in
//! `error.rs`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole, validated configuration. Obtain it through
/// [`Config::from_file`](crate::Config::from_file) or
/// [`Config::from_str_named`](crate::Config::from_str_named).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the client-facing MySQL listener and backend pools.
    #[serde(default)]
    pub server: Server,
    /// `[admin]`: the HTTP endpoint for metrics / healthz / readyz.
    #[serde(default)]
    pub admin: Admin,
    /// `[[users]]`: client accounts accepted by the proxy (at least one).
    #[serde(default)]
    pub users: Vec<User>,
    /// `[primary]`: the single writable backend. `weight` is always 1 and
    /// `max_lag_ms` always `None` for the primary (those keys are rejected
    /// in `[primary]`).
    #[serde(
        serialize_with = "serialize_primary",
        deserialize_with = "deserialize_primary"
    )]
    pub primary: Backend,
    /// `[[replicas]]`: zero or more GTID replicas used for reads.
    #[serde(default)]
    pub replicas: Vec<Backend>,
    /// `[monitor]`: credentials and cadence of health / lag / GTID checks.
    pub monitor: Monitor,
    /// `[routing]`: read-consistency policy.
    #[serde(default)]
    pub routing: Routing,
    /// `[cache]`: the result cache tier (off by default).
    #[serde(default)]
    pub cache: crate::cache::Cache,
    /// `[binlog]`: the binlog reader's account (cache invalidation, fresh
    /// reads).
    #[serde(default)]
    pub binlog: crate::binlog::Binlog,
    /// `[failover]`: follow the writer the monitor finds, or keep `[primary]`.
    #[serde(default)]
    pub failover: crate::failover::Failover,
    /// `[[pools]]`: optional settings of named replica pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::rules::Pool>,
    /// `[[rules]]`: query rules, evaluated in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<crate::rules::Rule>,
    /// `[tls]`: TLS towards clients; absent = no TLS offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::Tls>,
    /// `[backend_tls]`: TLS towards the MySQL servers.
    #[serde(default)]
    pub backend_tls: crate::tls::BackendTls,
    /// `[digests]`: per-digest statement statistics.
    #[serde(default)]
    pub digests: crate::observe::Digests,
    /// `[decision_log]`: JSON lines of routing decisions (off by default).
    #[serde(default)]
    pub decision_log: crate::observe::DecisionLog,
}

/// `[server]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Client listener, `host:port` (port 0 = ephemeral, useful in tests).
    pub listen: String,
    /// Maximum logged-in clients (> 0); sockets still in the handshake do
    /// not count (see `max_pending_logins`).
    pub max_connections: u32,
    /// Backend connect + auth timeout in ms (> 0).
    pub connect_timeout_ms: u64,
    /// Maximum pooled backend connections per backend server and per user (> 0).
    pub pool_max_per_backend: u32,
    /// Idle pooled backend connections are closed after this many ms (> 0).
    pub pool_idle_timeout_ms: u64,
    /// Graceful shutdown drain time in ms (0 = close immediately).
    pub shutdown_drain_ms: u64,
    /// Threads that run client sessions (0 = one per core). Changing it
    /// needs a restart.
    pub worker_threads: usize,
    /// Largest packet a logged-in client may send, in bytes (a payload
    /// split over several packets counts in total); larger ones get 1153
    /// and the connection is closed, as MySQL's `max_allowed_packet`.
    /// 1024..=1073741824.
    pub max_client_packet: u64,
    /// The whole client handshake (greeting to OK) must finish within this
    /// many ms, else the socket is closed (> 0).
    pub login_timeout_ms: u64,
    /// A logged-in client idle longer than this many ms outside a
    /// transaction gets 4031 and is closed, like MySQL's `wait_timeout`
    /// (0 = never).
    pub client_idle_timeout_ms: u64,
    /// Most sockets that may be in the handshake at once; more are refused
    /// with 1040. They never count against `max_connections` (> 0).
    pub max_pending_logins: u32,
    /// How clients share backend connections: `transaction` (a client
    /// holds one only for a statement or a transaction, or while pinned)
    /// or `session` (a client keeps its connections until it disconnects).
    pub pool_mode: PoolMode,
    /// Most commands in flight at once on one pipelined backend connection
    /// (1 = no pipelining; 1..=1024). Only safe autocommit reads of
    /// sessions in `transaction` pool mode are pipelined.
    pub pipeline_depth: u32,
    /// A pipelined statement running longer than this many ms stops new
    /// commands from queueing behind it on that connection (they take the
    /// ordinary path) (> 0).
    pub pipeline_stall_ms: u64,
}

/// Largest `pipeline_depth`.
pub const MAX_PIPELINE_DEPTH: u32 = 1024;

/// Smallest `max_client_packet` (MySQL's minimum `max_allowed_packet`).
pub const MIN_CLIENT_PACKET: u64 = 1024;
/// Largest `max_client_packet` (MySQL's maximum `max_allowed_packet`).
pub const MAX_CLIENT_PACKET: u64 = 1 << 30;
/// Longest timeout in ms (one year, MySQL's maximum `wait_timeout`).
pub const MAX_TIMEOUT_MS: u64 = 31_536_000_000;

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:6033".to_string(),
            max_connections: 4096,
            connect_timeout_ms: 2000,
            pool_max_per_backend: 256,
            pool_idle_timeout_ms: 60_000,
            shutdown_drain_ms: 10_000,
            worker_threads: 0,
            max_client_packet: 64 * 1024 * 1024,
            login_timeout_ms: 10_000,
            client_idle_timeout_ms: 0,
            max_pending_logins: 1024,
            pool_mode: PoolMode::Transaction,
            pipeline_depth: 1,
            pipeline_stall_ms: 5,
        }
    }
}

impl Server {
    /// `connect_timeout_ms` as a `Duration`.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    /// `pool_idle_timeout_ms` as a `Duration`.
    pub fn pool_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_idle_timeout_ms)
    }
    /// `shutdown_drain_ms` as a `Duration`.
    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_ms)
    }
    /// `login_timeout_ms` as a `Duration`.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_millis(self.login_timeout_ms)
    }
    /// `client_idle_timeout_ms` as a `Duration`, `None` when off (0).
    pub fn client_idle_timeout(&self) -> Option<Duration> {
        (self.client_idle_timeout_ms > 0)
            .then(|| Duration::from_millis(self.client_idle_timeout_ms))
    }
    /// `max_client_packet` as a byte count for this platform.
    pub fn max_client_packet_bytes(&self) -> usize {
        usize::try_from(self.max_client_packet).unwrap_or(usize::MAX)
    }
}

/// `[admin]` section (optional).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Whether to serve the HTTP admin endpoint at all (default true).
    pub enabled: bool,
    /// HTTP listener, `host:port` (port 0 = ephemeral). Only validated when
    /// `enabled`.
    pub listen: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            enabled: true,
            listen: "127.0.0.1:6080".to_string(),
        }
    }
}

/// One `[[users]]` entry. After parsing, `backend_user` / `backend_password`
/// are always filled in (they default to `name` / `password`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawUser")]
pub struct User {
    /// Client-side user name (non-empty, unique).
    pub name: String,
    /// Client-side password (may be empty).
    pub password: String,
    /// May run `SHOW CAUSEWAY BACKENDS` and other admin statements.
    pub admin: bool,
    /// MySQL user the proxy logs in as on the backends.
    pub backend_user: String,
    /// MySQL password the proxy uses on the backends.
    pub backend_password: String,
    /// Authentication method causeway asks this client for.
    pub auth_plugin: AuthPlugin,
}

/// How a client proves its password to causeway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPlugin {
    /// `caching_sha2_password` (MySQL 8+ default; SHA-256 scramble).
    #[default]
    CachingSha2Password,
    /// `mysql_native_password` (SHA-1 scramble, for old clients).
    MysqlNativePassword,
}

impl AuthPlugin {
    /// MySQL's name of the plugin.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthPlugin::CachingSha2Password => "caching_sha2_password",
            AuthPlugin::MysqlNativePassword => "mysql_native_password",
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("admin", &self.admin)
            .field("backend_user", &self.backend_user)
            .field("backend_password", &"<redacted>")
            .field("auth_plugin", &self.auth_plugin)
            .finish()
    }
}

/// On-disk form of a user: backend credentials are optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: bool,
    backend_user: Option<String>,
    backend_password: Option<String>,
    #[serde(default)]
    auth_plugin: AuthPlugin,
}

impl From<RawUser> for User {
    fn from(r: RawUser) -> Self {
        User {
            backend_user: r.backend_user.unwrap_or_else(|| r.name.clone()),
            backend_password: r.backend_password.unwrap_or_else(|| r.password.clone()),
            name: r.name,
            password: r.password,
            admin: r.admin,
            auth_plugin: r.auth_plugin,
        }
    }
}

/// A MySQL server: the `[primary]` or one `[[replicas]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Unique (across primary and replicas), non-empty name.
    pub name: String,
    /// `host:port`; host may be an IP, `[v6]` or a hostname; port 1..=65535.
    pub address: String,
    /// Read weight, 0..=1_000_000 (0 = drained: no reads). Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Per-replica override of `[routing] max_lag_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_ms: Option<u64>,
    /// The read pool this replica belongs to (default `"default"`, the
    /// general read pool). A replica in a named pool takes no general
    /// reads: only statements a `[[rules]]` entry routes to `pool:NAME`.
    /// Always `"default"` for the primary.
    #[serde(
        default = "crate::rules::default_pool_name",
        skip_serializing_if = "crate::rules::is_default_pool"
    )]
    pub pool: String,
    /// The availability zone (or region) this replica is in. Reads prefer
    /// replicas in `[routing] zone`. Never set on the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Maximum allowed replica weight.
pub const MAX_WEIGHT: u32 = 1_000_000;

fn default_weight() -> u32 {
    1
}

impl Backend {
    /// Whether this backend belongs to the general read pool.
    pub fn in_default_pool(&self) -> bool {
        self.pool == crate::rules::DEFAULT_POOL
    }

    /// The lag budget for this backend: its own `max_lag_ms` or the routing
    /// default.
    pub fn max_lag(&self, routing: &Routing) -> Duration {
        Duration::from_millis(self.max_lag_ms.unwrap_or(routing.max_lag_ms))
    }

    /// Host part of `address` (brackets of an IPv6 literal removed).
    /// `address` is validated, so this never fails on a loaded config.
    pub fn host(&self) -> &str {
        crate::address::split_host_port(&self.address)
            .map(|(h, _)| h)
            .unwrap_or(&self.address)
    }

    /// Port part of `address` (0 if unparsable, which a loaded config never is).
    pub fn port(&self) -> u16 {
        crate::address::split_host_port(&self.address)
            .map(|(_, p)| p)
            .unwrap_or(0)
    }
}

/// `[primary]` accepts only `name` and `address`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrimary {
    name: String,
    address: String,
}

fn deserialize_primary<'de, D: Deserializer<'de>>(d: D) -> Result<Backend, D::Error> {
    let p = RawPrimary::deserialize(d)?;
    Ok(Backend {
        name: p.name,
        address: p.address,
        weight: 1,
        max_lag_ms: None,
        pool: crate::rules::DEFAULT_POOL.to_string(),
        zone: None,
    })
}

fn serialize_primary<S: Serializer>(b: &Backend, s: S) -> Result<S::Ok, S::Error> {
    RawPrimary {
        name: b.name.clone(),
        address: b.address.clone(),
    }
    .serialize(s)
}

/// `[monitor]` section (required: the credentials have no default).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    /// MySQL user for health / lag / GTID checks (non-empty).
    pub user: String,
    /// Its password (may be empty).
    #[serde(default)]
    pub password: String,
    /// Health and lag check period in ms (> 0).
    #[serde(default = "default_monitor_interval")]
    pub interval_ms: u64,
    /// Executed-GTID-set refresh period in ms (> 0).
    #[serde(default = "default_gtid_interval")]
    pub gtid_interval_ms: u64,
    /// Monitor connect timeout in ms (> 0).
    #[serde(default = "default_monitor_connect_timeout")]
    pub connect_timeout_ms: u64,
}

fn default_monitor_interval() -> u64 {
    1000
}
fn default_gtid_interval() -> u64 {
    50
}
fn default_monitor_connect_timeout() -> u64 {
    1000
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("interval_ms", &self.interval_ms)
            .field("gtid_interval_ms", &self.gtid_interval_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

impl Monitor {
    /// A monitor section with the given credentials and default timings.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Monitor {
            user: user.into(),
            password: password.into(),
            interval_ms: default_monitor_interval(),
            gtid_interval_ms: default_gtid_interval(),
            connect_timeout_ms: default_monitor_connect_timeout(),
        }
    }
    /// `interval_ms` as a `Duration`.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    /// `gtid_interval_ms` as a `Duration`.
    pub fn gtid_interval(&self) -> Duration {
        Duration::from_millis(self.gtid_interval_ms)
    }
    /// `connect_timeout_ms` as a `Duration`.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// `[routing]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Default read consistency for new sessions.
    pub consistency: Consistency,
    /// How long a read waits for a replica to catch up, in ms
    /// (0 = do not wait; apply `on_timeout` at once).
    pub wait_timeout_ms: u64,
    /// What to do when no replica caught up within `wait_timeout_ms`.
    pub on_timeout: OnTimeout,
    /// Lag budget in ms (> 0); replicas lagging more get no reads.
    pub max_lag_ms: u64,
    /// A replica excluded for lag returns only when
    /// lag < max_lag_ms - lag_hysteresis_ms. Must be < every effective max_lag_ms.
    pub lag_hysteresis_ms: u64,
    /// How reads are spread over replicas: per session or per statement.
    pub read_balance: ReadBalance,
    /// `consistency = "fresh"`: ask the primary for `@@gtid_executed`
    /// before each fresh read and wait for it (closes the binlog reader's
    /// window, one primary round trip per read).
    pub fresh_sync: bool,
    /// The zone this instance runs in: reads prefer qualifying replicas
    /// whose `zone` is this one (unset: no preference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            consistency: Consistency::Causal,
            wait_timeout_ms: 1000,
            on_timeout: OnTimeout::Primary,
            max_lag_ms: 5000,
            lag_hysteresis_ms: 500,
            read_balance: ReadBalance::Session,
            fresh_sync: false,
            zone: None,
        }
    }
}

impl Routing {
    /// `wait_timeout_ms` as a `Duration`.
    pub fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.wait_timeout_ms)
    }
    /// `max_lag_ms` as a `Duration`.
    pub fn max_lag(&self) -> Duration {
        Duration::from_millis(self.max_lag_ms)
    }
    /// `lag_hysteresis_ms` as a `Duration`.
    pub fn lag_hysteresis(&self) -> Duration {
        Duration::from_millis(self.lag_hysteresis_ms)
    }
}

/// Error returned by `Consistency::from_str` / `OnTimeout::from_str`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{value}' (expected one of {expected})")]
pub struct ParseEnumError {
    /// `"consistency"` or `"on_timeout"`.
    pub what: &'static str,
    /// The rejected input.
    pub value: String,
    /// Comma-separated accepted values.
    pub expected: &'static str,
}

/// Implements `ALL`, `as_str`, case-insensitive `FromStr`, `Display` and
/// serde as a lowercase string for a fieldless enum.
macro_rules! string_enum {
    ($ty:ident, $what:literal, $expected:literal, $($var:ident => $s:literal),+ $(,)?) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$var),+];

            /// The lowercase spelling used in the config file and in `SET`.
            pub fn as_str(&self) -> &'static str {
                match self { $($ty::$var => $s),+ }
            }
        }

        impl FromStr for $ty {
            type Err = ParseEnumError;
            /// Case-insensitive; surrounding whitespace is not accepted.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s.eq_ignore_ascii_case($s) { return Ok($ty::$var); })+
                Err(ParseEnumError { what: $what, value: s.to_string(), expected: $expected })
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Read consistency level. Ordered from weakest to strongest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Consistency {
    /// Any healthy replica within the lag budget.
    Eventual,
    /// Read-your-writes: a replica that has applied the session's last GTID.
    #[default]
    Causal,
    /// Read-the-latest per table: a replica that has applied the last
    /// write to every table the read names (known from writes relayed here
    /// and from the binlog reader), plus the session's token.
    Fresh,
    /// A replica that has applied everything the primary had executed when
    /// the read arrived (or the primary).
    Strong,
}

pub(crate) use string_enum;

string_enum!(Consistency, "consistency", "eventual, causal, fresh, strong",
    Eventual => "eventual", Causal => "causal", Fresh => "fresh", Strong => "strong");

/// What to do when a consistent replica cannot be found in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnTimeout {
    /// Send the read to the primary.
    #[default]
    Primary,
    /// Return an error to the client.
    Error,
}

string_enum!(OnTimeout, "on_timeout", "primary, error",
    Primary => "primary", Error => "error");

/// How plain reads are spread over the eligible replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadBalance {
    /// Each session picks a replica by weight (sessions in turn) and keeps
    /// it while it qualifies, as MySQL Router does per connection.
    #[default]
    Session,
    /// Every read picks again by weight.
    Statement,
}

string_enum!(ReadBalance, "read_balance", "session, statement",
    Session => "session", Statement => "statement");

/// `[server] pool_mode`: how clients share backend connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// A client holds a backend connection only for one autocommit
    /// statement or one transaction (or while its session is pinned).
    #[default]
    Transaction,
    /// A client keeps its backend connections until it disconnects.
    Session,
}

string_enum!(PoolMode, "pool_mode", "transaction, session",
    Transaction => "transaction", Session => "session");
