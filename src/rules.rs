//! Query rules, compiled: the `[[rules]]` list of the configuration turned
//! into a matcher that is built once per topology snapshot (at load and on
//! every reload) and asked, per statement, which rule applies.
//!
//! Cost model: a statement that no rule can apply to costs one branch. Only
//! `route = "reject"` rules apply to every statement; every other rule
//! applies only where routing is free to choose (a read outside a
//! transaction, in a session that is not pinned), so writes, transactions
//! and pinned sessions skip the whole list unless a reject rule exists.
//! Conditions are checked cheapest first (users, then tables — extracted
//! once, lazily — then the regex), and all patterns are compiled into one
//! `RegexSet` that runs at most once per statement.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use causeway_classify::{Classification, Route, Tables};
use causeway_config::{Config, Consistency, Rule, RuleRoute};
use regex::RegexSet;

use crate::balance::PoolPick;

/// Errors compiling the rules.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The patterns do not compile together (the config loader checks
    /// each pattern alone; the set may still exceed the size limit).
    #[error("rules: match_pattern set does not compile: {0}")]
    Regex(#[from] regex::Error),
}

/// What the matcher knows about one statement.
pub struct StatementFacts<'a> {
    /// The statement text as the client sent it.
    pub sql: &'a str,
    /// The classifier's answer for it.
    pub class: &'a Classification,
    /// The client user.
    pub user: &'a str,
    /// The session's default database.
    pub session_db: Option<&'a str>,
    /// Routing is free to choose: outside a transaction, session not pinned.
    pub free: bool,
    tables: OnceCell<Tables<'a>>,
}

impl<'a> StatementFacts<'a> {
    /// Facts for a statement; its tables are extracted on first need.
    pub fn new(
        sql: &'a str,
        class: &'a Classification,
        user: &'a str,
        session_db: Option<&'a str>,
        free: bool,
    ) -> Self {
        StatementFacts {
            sql,
            class,
            user,
            session_db,
            free,
            tables: OnceCell::new(),
        }
    }

    /// The same facts with the tables already extracted (e.g. by the cache).
    pub fn with_tables(self, tables: Tables<'a>) -> Self {
        let _ = self.tables.set(tables);
        self
    }

    /// A read that routing may send anywhere.
    pub fn free_read(&self) -> bool {
        self.free && self.class.route == Route::Replica
    }

    /// The tables the statement names (extracted once).
    pub fn tables(&self) -> &Tables<'a> {
        self.tables
            .get_or_init(|| causeway_classify::tables(self.sql))
    }
}

/// One compiled rule.
#[derive(Debug)]
pub struct CompiledRule {
    name: String,
    route: Option<RuleRoute>,
    consistency: Option<Consistency>,
    cache_ttl: Option<Duration>,
    /// `db.table` pairs, as configured (compared ASCII case-insensitively).
    tables: Vec<(String, String)>,
    users: Vec<String>,
    /// Index of its pattern in the set.
    pattern: Option<usize>,
    /// Index of its table-name prefilter in `Rules::table_names` (None:
    /// no `match_tables`, or a name the prefilter cannot look for).
    table_names: Option<usize>,
    /// `route = "pool:NAME"`: the pool and its settings.
    pool: Option<Arc<PoolPick>>,
    /// The configured rule (for `SHOW CAUSEWAY RULES`).
    config: Rule,
    matches: Arc<AtomicU64>,
    metric: OnceLock<metrics::Counter>,
}

impl CompiledRule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Where it sends what it matches (`None`: routing unchanged).
    pub fn route(&self) -> Option<&RuleRoute> {
        self.route.as_ref()
    }
    /// The named pool it routes to, with that pool's settings.
    pub fn pool(&self) -> Option<&Arc<PoolPick>> {
        self.pool.as_ref()
    }
    /// Its consistency override.
    pub fn consistency(&self) -> Option<Consistency> {
        self.consistency
    }
    /// How long what it matches may be cached.
    pub fn cache_ttl(&self) -> Option<Duration> {
        self.cache_ttl
    }
    /// The rule as configured.
    pub fn config(&self) -> &Rule {
        &self.config
    }
    /// Statements it applied to (kept across reloads while the rule keeps
    /// its name).
    pub fn matches(&self) -> u64 {
        self.matches.load(Ordering::Relaxed)
    }
    /// Count one statement it applied to (the counter and
    /// `causeway_rule_matches_total{rule}`).
    pub fn count_match(&self) {
        self.matches.fetch_add(1, Ordering::Relaxed);
        self.metric
            .get_or_init(
                || metrics::counter!(crate::metrics::RULE_MATCHES, "rule" => self.name.clone()),
            )
            .increment(1);
    }
    /// Whether the rule applies to statements routing may not redirect
    /// (writes, transactions, pinned sessions): only `reject` does.
    pub fn applies_anywhere(&self) -> bool {
        self.route == Some(RuleRoute::Reject)
    }

    /// Its `match_tables`, as `(db, table)` pairs.
    pub fn tables(&self) -> &[(String, String)] {
        &self.tables
    }

    /// Whether every table the statement names is one of the rule's
    /// `match_tables` (false when none is named, when they are unknown, or
    /// when an unqualified one has no session database): what a cache needs
    /// before caching a statement under this rule.
    pub fn covers_all_tables(&self, facts: &StatementFacts<'_>) -> bool {
        let Tables::Known(list) = facts.tables() else {
            return false;
        };
        !list.is_empty()
            && list.iter().all(|t| {
                t.resolve(facts.session_db).is_some_and(|(db, name)| {
                    self.tables
                        .iter()
                        .any(|(d, n)| d.eq_ignore_ascii_case(db) && n.eq_ignore_ascii_case(name))
                })
            })
    }

    fn tables_hold(&self, facts: &StatementFacts<'_>) -> bool {
        if self.tables.is_empty() {
            return true;
        }
        let Tables::Known(list) = facts.tables() else {
            return false;
        };
        list.iter().any(|t| {
            t.resolve(facts.session_db).is_some_and(|(db, name)| {
                self.tables
                    .iter()
                    .any(|(d, n)| d.eq_ignore_ascii_case(db) && n.eq_ignore_ascii_case(name))
            })
        })
    }
}

/// The compiled `[[rules]]` list of one topology snapshot.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<CompiledRule>,
    set: Option<RegexSet>,
    /// Per rule with `match_tables`: its table names, case-insensitively,
    /// anywhere in the text. A statement that does not even contain one
    /// cannot read it, so the table extractor need not run.
    table_names: Option<RegexSet>,
    any_reject: bool,
}

impl Rules {
    /// Compile the `[[rules]]` of `config`; match counters of rules with
    /// the same name in `previous` carry over.
    pub fn compile(config: &Config, previous: Option<&Rules>) -> Result<Rules, RulesError> {
        let rules = &config.rules;
        let old: HashMap<&str, &Arc<AtomicU64>> = previous
            .map(|p| {
                p.rules
                    .iter()
                    .map(|r| (r.name.as_str(), &r.matches))
                    .collect()
            })
            .unwrap_or_default();
        let mut patterns = Vec::new();
        let mut names = Vec::new();
        let mut out = Vec::with_capacity(rules.len());
        for r in rules {
            let pattern = r.match_pattern.as_ref().map(|p| {
                patterns.push(p.as_str());
                patterns.len() - 1
            });
            // `a``b` is written with a doubled backtick: no prefilter then
            let table_names = (!r.match_tables.is_empty()
                && !r.match_tables.iter().any(|t| t.contains('`')))
            .then(|| {
                let alts: Vec<String> = r
                    .match_tables
                    .iter()
                    .filter_map(|t| causeway_config::split_table_name(t))
                    .map(|(_, n)| regex::escape(n))
                    .collect();
                names.push(format!("(?i){}", alts.join("|")));
                names.len() - 1
            });
            out.push(CompiledRule {
                name: r.name.clone(),
                route: r.route.clone(),
                consistency: r.consistency,
                cache_ttl: r.cache_ttl(),
                tables: r
                    .match_tables
                    .iter()
                    .filter_map(|t| causeway_config::split_table_name(t))
                    .map(|(d, n)| (d.to_string(), n.to_string()))
                    .collect(),
                users: r.match_users.clone(),
                pattern,
                table_names,
                pool: match &r.route {
                    Some(RuleRoute::Pool(name)) => {
                        let p = config.pool(name);
                        Some(Arc::new(PoolPick {
                            name: Arc::from(name.as_str()),
                            on_timeout: p.on_timeout,
                            watermark: p.watermark_query.is_some(),
                        }))
                    }
                    _ => None,
                },
                config: r.clone(),
                matches: old
                    .get(r.name.as_str())
                    .map(|m| Arc::clone(m))
                    .unwrap_or_default(),
                metric: OnceLock::new(),
            });
        }
        let set = if patterns.is_empty() {
            None
        } else {
            Some(
                regex::RegexSetBuilder::new(&patterns)
                    .size_limit(
                        causeway_config::REGEX_SIZE_LIMIT.saturating_mul(patterns.len().max(1)),
                    )
                    .build()?,
            )
        };
        let table_names = if names.is_empty() {
            None
        } else {
            Some(RegexSet::new(&names)?)
        };
        Ok(Rules {
            any_reject: out.iter().any(CompiledRule::applies_anywhere),
            rules: out,
            set,
            table_names,
        })
    }

    /// The rules in order.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledRule> {
        self.rules.iter()
    }

    /// No rules configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule that applies to the statement: all its conditions
    /// hold and it may act there (only `reject` rules act on statements
    /// that are not free reads). Does not count the match.
    pub fn first_match(&self, facts: &StatementFacts<'_>) -> Option<&CompiledRule> {
        let free_read = facts.free_read();
        if self.rules.is_empty() || (!free_read && !self.any_reject) {
            return None;
        }
        let matched: OnceCell<regex::SetMatches> = OnceCell::new();
        let named: OnceCell<regex::SetMatches> = OnceCell::new();
        self.rules.iter().find(|r| {
            (free_read || r.applies_anywhere())
                && (r.users.is_empty() || r.users.iter().any(|u| u == facts.user))
                && r.table_names.map_or(true, |i| {
                    self.table_names
                        .as_ref()
                        .is_some_and(|set| named.get_or_init(|| set.matches(facts.sql)).matched(i))
                })
                && r.tables_hold(facts)
                && r.pattern.map_or(true, |i| {
                    self.set.as_ref().is_some_and(|set| {
                        matched.get_or_init(|| set.matches(facts.sql)).matched(i)
                    })
                })
        })
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
