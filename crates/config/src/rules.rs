//! `[[pools]]` and `[[rules]]`: the data model of named read pools and
//! query rules, and their semantic checks (unknown pool in a route, invalid
//! regex, duplicate names). The proxy compiles the rules (`src/rules.rs`);
//! this module only guarantees that every rule compiles.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Seg;
use crate::model::{Config, Consistency, OnTimeout, MAX_TIMEOUT_MS};
use crate::validate::Problem;

/// Name of the general read pool (replicas without a `pool` key).
pub const DEFAULT_POOL: &str = "default";

/// Longest accepted `match_pattern`, in bytes.
pub const MAX_PATTERN_LEN: usize = 64 * 1024;

/// Compiled-size limit of one `match_pattern` (the `regex` crate's
/// `size_limit`), so a pattern cannot make the proxy allocate without bound.
pub const REGEX_SIZE_LIMIT: usize = 4 * 1024 * 1024;

pub(crate) fn default_pool_name() -> String {
    DEFAULT_POOL.to_string()
}

pub(crate) fn is_default_pool(p: &str) -> bool {
    p == DEFAULT_POOL
}

/// One `[[pools]]` entry: settings of a named read pool. A pool exists as
/// soon as a replica names it; this entry is only needed to change the
/// defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The pool name (non-empty, unique, not `"default"`).
    pub name: String,
    /// For stores that are not GTID replicas of the primary (a read model
    /// fed by CDC): the monitor runs this query on each member instead of
    /// reading `@@gtid_executed`; its single value is the primary GTID set
    /// the store reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_query: Option<String>,
    /// What a causal read routed to the pool does when no member has its
    /// token in time (default `error`: the primary may not even have the
    /// read model's tables).
    #[serde(default = "default_pool_on_timeout")]
    pub on_timeout: OnTimeout,
}

fn default_pool_on_timeout() -> OnTimeout {
    OnTimeout::Error
}

impl Pool {
    /// The settings of a pool that has no `[[pools]]` entry.
    pub fn implicit(name: &str) -> Pool {
        Pool {
            name: name.to_string(),
            watermark_query: None,
            on_timeout: default_pool_on_timeout(),
        }
    }
}

/// Where a matching rule sends a statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleRoute {
    /// `pool:NAME`: the members of a named pool.
    Pool(String),
    /// `primary`.
    Primary,
    /// `replicas`: the general (default) read pool.
    Replicas,
    /// `reject`: answer an error naming the rule; nothing reaches a backend.
    Reject,
}

impl fmt::Display for RuleRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRoute::Pool(p) => write!(f, "pool:{p}"),
            RuleRoute::Primary => f.write_str("primary"),
            RuleRoute::Replicas => f.write_str("replicas"),
            RuleRoute::Reject => f.write_str("reject"),
        }
    }
}

/// Error of [`RuleRoute::from_str`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid route '{0}' (expected pool:NAME, primary, replicas or reject)")]
pub struct ParseRouteError(pub String);

impl FromStr for RuleRoute {
    type Err = ParseRouteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.strip_prefix("pool:") {
            if p.trim().is_empty() {
                return Err(ParseRouteError(s.to_string()));
            }
            return Ok(RuleRoute::Pool(p.to_string()));
        }
        match s {
            "primary" => Ok(RuleRoute::Primary),
            "replicas" => Ok(RuleRoute::Replicas),
            "reject" => Ok(RuleRoute::Reject),
            _ => Err(ParseRouteError(s.to_string())),
        }
    }
}

impl Serialize for RuleRoute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for RuleRoute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One `[[rules]]` entry. Rules are evaluated in order; the first whose
/// conditions all hold applies. A rule without conditions matches every
/// statement it is evaluated for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Required, unique; appears in metrics and errors.
    pub name: String,
    /// Matches when the statement reads any of these tables (`db.table`;
    /// compared ASCII case-insensitively). A statement whose tables cannot
    /// be determined never matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_tables: Vec<String>,
    /// A regular expression (`regex` crate syntax) over the statement text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_pattern: Option<String>,
    /// Matches when the client user is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_users: Vec<String>,
    /// Where a matching statement goes; absent: routing is unchanged (a
    /// rule that only sets `consistency` or `cache_ttl_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RuleRoute>,
    /// Read consistency for matching statements (overrides the session's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// Cache what the rule matches for this long (the cache tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_ms: Option<u64>,
}

impl Rule {
    /// `cache_ttl_ms` as a `Duration`.
    pub fn cache_ttl(&self) -> Option<Duration> {
        self.cache_ttl_ms.map(Duration::from_millis)
    }
}

/// Split a `match_tables` entry into (db, table); `None` unless it is
/// exactly `db.table` with both parts non-empty.
pub fn split_table_name(s: &str) -> Option<(&str, &str)> {
    let (db, table) = s.split_once('.')?;
    if db.is_empty() || table.is_empty() || table.contains('.') {
        return None;
    }
    Some((db, table))
}

/// Compile a `match_pattern` as the proxy does.
pub fn compile_pattern(p: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

fn at(section: &str, i: usize, field: &str) -> Vec<Seg> {
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

/// Check `replicas[].pool`, `[[pools]]` and `[[rules]]`.
pub(crate) fn validate(c: &Config) -> Result<(), Problem> {
    let mut known: HashSet<&str> = HashSet::from([DEFAULT_POOL]);
    for (i, r) in c.replicas.iter().enumerate() {
        if r.pool.trim().is_empty() {
            return fail(at("replicas", i, "pool"), "must not be empty");
        }
        known.insert(r.pool.as_str());
    }
    let mut pool_names = HashSet::new();
    for (i, p) in c.pools.iter().enumerate() {
        if p.name.trim().is_empty() {
            return fail(at("pools", i, "name"), "must not be empty");
        }
        if p.name == DEFAULT_POOL {
            return fail(
                at("pools", i, "name"),
                "the default pool is configured by [routing]",
            );
        }
        if !pool_names.insert(p.name.as_str()) {
            return fail(
                at("pools", i, "name"),
                format!("duplicate pool name '{}'", p.name),
            );
        }
        if p.watermark_query
            .as_deref()
            .is_some_and(|q| q.trim().is_empty())
        {
            return fail(at("pools", i, "watermark_query"), "must not be empty");
        }
        known.insert(p.name.as_str());
    }
    let mut rule_names = HashSet::new();
    for (i, r) in c.rules.iter().enumerate() {
        check_rule(i, r, &known)?;
        if !rule_names.insert(r.name.as_str()) {
            return fail(
                at("rules", i, "name"),
                format!("duplicate rule name '{}'", r.name),
            );
        }
    }
    Ok(())
}

fn check_rule(i: usize, r: &Rule, pools: &HashSet<&str>) -> Result<(), Problem> {
    if r.name.trim().is_empty() {
        return fail(at("rules", i, "name"), "must not be empty");
    }
    for t in &r.match_tables {
        if split_table_name(t).is_none() {
            return fail(
                at("rules", i, "match_tables"),
                format!("'{t}' is not of the form db.table"),
            );
        }
    }
    if let Some(p) = &r.match_pattern {
        if p.len() > MAX_PATTERN_LEN {
            return fail(
                at("rules", i, "match_pattern"),
                format!("longer than {MAX_PATTERN_LEN} bytes"),
            );
        }
        if let Err(e) = compile_pattern(p) {
            // regex errors span several lines; keep the message on one.
            let msg = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            return fail(
                at("rules", i, "match_pattern"),
                format!("invalid regex: {msg}"),
            );
        }
    }
    for u in &r.match_users {
        if u.trim().is_empty() {
            return fail(
                at("rules", i, "match_users"),
                "user names must not be empty",
            );
        }
    }
    if let Some(RuleRoute::Pool(p)) = &r.route {
        if !pools.contains(p.as_str()) {
            return fail(
                at("rules", i, "route"),
                format!("unknown pool '{p}' (no replica has pool = \"{p}\" and no [[pools]] entry names it)"),
            );
        }
    }
    if let Some(ttl) = r.cache_ttl_ms {
        if ttl == 0 || ttl > MAX_TIMEOUT_MS {
            return fail(
                at("rules", i, "cache_ttl_ms"),
                format!("{ttl} is out of range (1-{MAX_TIMEOUT_MS})"),
            );
        }
        if r.route == Some(RuleRoute::Reject) {
            return fail(
                at("rules", i, "cache_ttl_ms"),
                "a rule with route = \"reject\" caches nothing",
            );
        }
    }
    Ok(())
}
