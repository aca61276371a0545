//! The `[failover]` section: whether causeway follows the writer the
//! monitor finds (`mode = "follow"`, the default) or keeps `[primary]` as
//! the writer until a reload says otherwise (`"static"`), and how long a
//! write waits for a writer when there is none.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{ParseEnumError, MAX_TIMEOUT_MS};

/// `[failover]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Failover {
    /// Who the writer is.
    pub mode: FailoverMode,
    /// How long a write or transaction waits for a writer while no
    /// reachable server is writable (0: fail at once).
    pub write_wait_ms: u64,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            mode: FailoverMode::Follow,
            write_wait_ms: 10_000,
        }
    }
}

impl Failover {
    /// `write_wait_ms` as a `Duration`.
    pub fn write_wait(&self) -> Duration {
        Duration::from_millis(self.write_wait_ms)
    }
}

/// Who the writer is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FailoverMode {
    /// The single reachable writable server among `[primary]` and
    /// `[[replicas]]`, as the monitor sees it; no reload needed.
    #[default]
    Follow,
    /// `[primary]`, until a reload names another.
    Static,
}

impl FailoverMode {
    /// The spelling used in the config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailoverMode::Follow => "follow",
            FailoverMode::Static => "static",
        }
    }
}

impl FromStr for FailoverMode {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("follow") {
            Ok(FailoverMode::Follow)
        } else if s.eq_ignore_ascii_case("static") {
            Ok(FailoverMode::Static)
        } else {
            Err(ParseEnumError {
                what: "failover mode",
                value: s.to_string(),
                expected: "follow, static",
            })
        }
    }
}

impl fmt::Display for FailoverMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FailoverMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FailoverMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The first problem of `[failover]`: the key and the message.
pub(crate) fn check(f: &Failover) -> Result<(), (&'static str, String)> {
    if f.write_wait_ms > MAX_TIMEOUT_MS {
        return Err((
            "write_wait_ms",
            format!("{} is out of range (0-{MAX_TIMEOUT_MS})", f.write_wait_ms),
        ));
    }
    Ok(())
}
