//! The `[cache]` section: the result cache tier (opt-in), its memory
//! budget, how entries are kept fresh, the binlog reader's account, and the
//! optional shared second level (`redis_url`, `redis_timeout_ms`).
//! Which statements are cached is said by `[[rules]]` with `cache_ttl_ms`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::ParseEnumError;

/// Largest `max_memory_mb` (1 TiB).
pub const MAX_CACHE_MEMORY_MB: u64 = 1 << 20;
/// Largest `redis_timeout_ms`.
pub const MAX_REDIS_TIMEOUT_MS: u64 = 10_000;

/// `[cache]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Whether results are cached at all (default false).
    pub enabled: bool,
    /// Total size of the cached result packets in MiB (1..=1048576);
    /// beyond it entries are evicted (TinyLFU admission, LRU eviction).
    pub max_memory_mb: u64,
    /// How entries are kept fresh.
    pub invalidation: Invalidation,
    /// Binlog reader account (REPLICATION SLAVE, REPLICATION CLIENT), used
    /// when `[binlog] user` is not set (neither: `[monitor]`'s).
    pub user: String,
    /// Its password.
    pub password: String,
    /// The shared second level: `redis://[user:password@]host:port[/db]`
    /// of a Redis or Valkey server that every instance consults after a
    /// local miss (empty: off). Needs `invalidation = "binlog"`.
    pub redis_url: String,
    /// How long a lookup waits for Redis before it counts as a miss
    /// (1..=10000 ms; default 5).
    pub redis_timeout_ms: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            enabled: false,
            max_memory_mb: 256,
            invalidation: Invalidation::Binlog,
            user: String::new(),
            password: String::new(),
            redis_url: String::new(),
            redis_timeout_ms: 5,
        }
    }
}

impl Cache {
    /// `max_memory_mb` in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_memory_mb.saturating_mul(1024 * 1024)
    }
}

/// How cached entries are kept fresh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// A replication stream from the primary invalidates entries by table;
    /// causal reads may use the cache.
    #[default]
    Binlog,
    /// Expiry only; only eventual reads use the cache.
    Ttl,
}

impl Invalidation {
    /// The spelling used in the config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Invalidation::Binlog => "binlog",
            Invalidation::Ttl => "ttl",
        }
    }
}

impl FromStr for Invalidation {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("binlog") {
            Ok(Invalidation::Binlog)
        } else if s.eq_ignore_ascii_case("ttl") {
            Ok(Invalidation::Ttl)
        } else {
            Err(ParseEnumError {
                what: "invalidation",
                value: s.to_string(),
                expected: "binlog, ttl",
            })
        }
    }
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Invalidation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Invalidation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The first problem of an enabled `[cache]`: the key and the message.
pub(crate) fn check(c: &Cache) -> Result<(), (&'static str, String)> {
    if !c.enabled {
        return Ok(());
    }
    if c.max_memory_mb == 0 || c.max_memory_mb > MAX_CACHE_MEMORY_MB {
        return Err((
            "max_memory_mb",
            format!(
                "{} is out of range (1-{MAX_CACHE_MEMORY_MB})",
                c.max_memory_mb
            ),
        ));
    }
    check_redis(c)
}

fn check_redis(c: &Cache) -> Result<(), (&'static str, String)> {
    if c.redis_timeout_ms == 0 || c.redis_timeout_ms > MAX_REDIS_TIMEOUT_MS {
        return Err((
            "redis_timeout_ms",
            format!(
                "{} is out of range (1-{MAX_REDIS_TIMEOUT_MS})",
                c.redis_timeout_ms
            ),
        ));
    }
    if c.redis_url.is_empty() {
        return Ok(());
    }
    let scheme_ok = ["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|s| c.redis_url.len() > s.len() && c.redis_url[..s.len()].eq_ignore_ascii_case(s));
    if !scheme_ok {
        return Err((
            "redis_url",
            "must start with redis://, redis+unix:// or unix:// (TLS is not supported)".to_string(),
        ));
    }
    if c.invalidation != Invalidation::Binlog {
        return Err((
            "redis_url",
            "needs invalidation = \"binlog\": each instance checks shared entries against its own binlog reader".to_string(),
        ));
    }
    Ok(())
}
