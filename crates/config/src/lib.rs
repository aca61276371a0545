//! causeway-config: the configuration file of the causeway proxy.
//!
//! This crate owns loading (`Config::from_file`, `Config::from_str_named`),
//! the data model (`model.rs`), `host:port` parsing (`address.rs`),
//! the TLS sections (`tls.rs`), semantic validation (`validate.rs`) and error reporting with file and
//! line (`error.rs`). The documented example lives in `conf/causeway.toml`
//! at the repository root.
//!
//! ```
//! let cfg = causeway_config::Config::from_str_named(
//!     r#"
//!     [[users]]
//!     name = "app"
//!     password = "apppw"
//!     [primary]
//!     name = "primary"
//!     address = "127.0.0.1:3306"
//!     [monitor]
//!     user = "monitor"
//!     password = "monitorpw"
//!     "#,
//!     "inline.toml",
//! )
//! .unwrap();
//! assert_eq!(cfg.user("app").unwrap().backend_user, "app");
//! assert_eq!(cfg.routing.consistency, causeway_config::Consistency::Causal);
//! ```

mod address;
mod binlog;
mod cache;
mod error;
mod failover;
mod model;
mod observe;
mod rules;
mod tls;
mod validate;

use std::path::Path;
use std::time::Duration;

pub use address::split_host_port;
pub use binlog::{Binlog, MAX_BINLOG_TABLES};
pub use cache::{Cache, Invalidation, MAX_CACHE_MEMORY_MB, MAX_REDIS_TIMEOUT_MS};
pub use error::ConfigError;
pub use failover::{Failover, FailoverMode};
pub use model::{
    Admin, AuthPlugin, Backend, Config, Consistency, Monitor, OnTimeout, ParseEnumError, PoolMode,
    ReadBalance, Routing, Server, User, MAX_CLIENT_PACKET, MAX_TIMEOUT_MS, MAX_WEIGHT,
    MIN_CLIENT_PACKET,
};
pub use observe::{DecisionLog, Digests, MAX_DIGESTS, MAX_EXPORT_TOP};
pub use rules::{
    compile_pattern, split_table_name, ParseRouteError, Pool, Rule, RuleRoute, DEFAULT_POOL,
    MAX_PATTERN_LEN, REGEX_SIZE_LIMIT,
};
pub use tls::{BackendTls, Tls, TlsMode};

impl Config {
    /// Read, parse and validate a configuration file. Messages name the
    /// file as given in `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str_named(&text, &path.display().to_string())
    }

    /// Parse and validate configuration text; `name` is used as the file
    /// name in error messages.
    pub fn from_str_named(text: &str, name: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| error::from_toml(name, text, &e))?;
        if let Err(problem) = validate::validate(&config) {
            let line = toml::de::DeTable::parse(text)
                .ok()
                .and_then(|doc| error::span_of(doc.get_ref(), &problem.path))
                .map(|span| error::line_of(text, span.start));
            return Err(ConfigError::Invalid {
                file: name.to_string(),
                line,
                key: error::path_string(&problem.path),
                message: problem.message,
            });
        }
        Ok(config)
    }

    /// Look up a client user by name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Look up a backend (primary or replica) by name.
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        std::iter::once(&self.primary)
            .chain(&self.replicas)
            .find(|b| b.name == name)
    }

    /// The settings of pool `name`: its `[[pools]]` entry or the defaults.
    pub fn pool(&self, name: &str) -> Pool {
        self.pools
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap_or_else(|| Pool::implicit(name))
    }

    /// The effective lag budget of a backend (its override or the routing default).
    pub fn max_lag_for(&self, backend: &Backend) -> Duration {
        backend.max_lag(&self.routing)
    }

    /// The effective configuration (all defaults filled in) as TOML.
    /// Includes passwords; see [`Config::to_toml_string_redacted`].
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("a Config always serializes to TOML")
    }

    /// Like [`Config::to_toml_string`] with every password replaced by
    /// `"<redacted>"`: safe to log or print.
    pub fn to_toml_string_redacted(&self) -> String {
        const R: &str = "<redacted>";
        let mut c = self.clone();
        for u in &mut c.users {
            u.password = R.to_string();
            u.backend_password = R.to_string();
        }
        c.monitor.password = R.to_string();
        c.to_toml_string()
    }
}

impl std::str::FromStr for Config {
    type Err = ConfigError;
    /// Same as `Config::from_str_named(s, "<config>")`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Config::from_str_named(s, "<config>")
    }
}
