//! The `[binlog]` section: the account of the binlog reader (the
//! component that follows the primary's replication stream for the cache's
//! invalidation and for `consistency = "fresh"`) and the bound of its
//! per-table map. The reader needs REPLICATION SLAVE and REPLICATION
//! CLIENT; without `user` it uses `[cache] user`, else `[monitor]`'s.

use serde::{Deserialize, Serialize};

/// Largest `max_tables`.
pub const MAX_BINLOG_TABLES: usize = 1 << 20;

/// `[binlog]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Binlog {
    /// Reader account (empty: `[cache] user`, else `[monitor] user`).
    pub user: String,
    /// Its password (used with `user`).
    pub password: String,
    /// Tables whose last write is kept one by one (1..=1048576); older
    /// entries fold into one floor that every table then needs.
    pub max_tables: usize,
}

impl Default for Binlog {
    fn default() -> Self {
        Binlog {
            user: String::new(),
            password: String::new(),
            max_tables: 10_000,
        }
    }
}

impl crate::Config {
    /// The binlog reader's credentials: `[binlog]`, else `[cache]` (binlog
    /// invalidation), else `[monitor]`.
    pub fn binlog_credentials(&self) -> (String, String) {
        if !self.binlog.user.trim().is_empty() {
            (self.binlog.user.clone(), self.binlog.password.clone())
        } else if !self.cache.user.trim().is_empty() {
            (self.cache.user.clone(), self.cache.password.clone())
        } else {
            (self.monitor.user.clone(), self.monitor.password.clone())
        }
    }
}

/// The first problem of `[binlog]`: the key and the message.
pub(crate) fn check(b: &Binlog) -> Result<(), (&'static str, String)> {
    if b.max_tables == 0 || b.max_tables > MAX_BINLOG_TABLES {
        return Err((
            "max_tables",
            format!("{} is out of range (1-{MAX_BINLOG_TABLES})", b.max_tables),
        ));
    }
    Ok(())
}
