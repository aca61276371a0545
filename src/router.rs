//! Session routing: which backend runs a statement.
//!
//! An explicit state machine per session (`RouteState`), driven by the
//! classifier's verdict before a statement and by the backend's reply after
//! it. The backend's `SERVER_STATUS_IN_TRANS` / `SERVER_STATUS_AUTOCOMMIT`
//! flags are the ground truth; the parsed statement is only a hint.
//!
//! States and rules, in order:
//! 1. **In a transaction**: every statement goes to the backend that holds
//!    it (the primary, or the replica of a `START TRANSACTION READ ONLY`),
//!    and in `transaction` pool mode the session keeps that backend
//!    connection. A transaction is open while the last reply had `IN_TRANS`,
//!    and also, with `autocommit = 0`, from the first statement that may
//!    open one (anything but `SET`/`USE`/an empty query) until `COMMIT`,
//!    `ROLLBACK`, a statement that commits implicitly, or `SET autocommit =
//!    1`. MySQL does not flag every open transaction: with autocommit off,
//!    `SAVEPOINT` as the first statement, and a transaction that has only
//!    read, leave `IN_TRANS` clear while the savepoint or the read view
//!    lives on that connection. A failed statement keeps whatever was open.
//!    `SET TRANSACTION ...` without a scope (the next transaction only) keeps
//!    its connection for the statement that consumes it.
//! 2. **Starting a transaction**: `BEGIN` / `START TRANSACTION` go to the
//!    primary; `START TRANSACTION READ ONLY` goes to one replica (unless the
//!    session is pinned or autocommit is off) and the whole transaction
//!    stays there.
//! 3. **Pinned**: once a session creates state that lives on one backend
//!    connection and cannot be replayed — user variables (`SET @x`, `:=`,
//!    `INTO @x`), temporary tables, `LOCK TABLES`, named locks
//!    (`GET_LOCK`), SQL-level `PREPARE`, `XA`, `HANDLER`, or a `SET` that
//!    cannot be replayed alone — every later statement goes to the primary
//!    for the rest of the session (until COM_RESET_CONNECTION or
//!    COM_CHANGE_USER).
//! 4. **autocommit = 0**: every statement goes to the primary (each one
//!    opens or continues a transaction there).
//! 5. **Diagnostics** (`SHOW WARNINGS`, `GET DIAGNOSTICS`, ...): the backend
//!    that ran the previous statement.
//! 6. Otherwise the classifier decides: reads to a replica (subject to the
//!    consistency mode, see `crate::consistency`), everything else to the
//!    primary.

use causeway_classify::{Classification, Reason, Route};
use mysql_common::constants::StatusFlags;

/// Where a statement should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The primary.
    Primary,
    /// Some replica, chosen by weight and consistency.
    Replica,
    /// One replica for a whole read-only transaction.
    ReadOnlyTransaction,
    /// This backend (transaction or diagnostics continuity).
    Backend(String),
}

/// Why a session is pinned to the primary.
pub fn pin_reason(c: &Classification) -> Option<&'static str> {
    let e = &c.effects;
    if e.user_var_write {
        Some("user variable")
    } else if e.temp_table {
        Some("temporary table")
    } else if e.lock_tables {
        Some("LOCK TABLES")
    } else if e.get_lock {
        Some("named lock")
    } else if e.sql_prepare {
        Some("SQL PREPARE")
    } else if e.xa {
        Some("XA")
    } else if e.handler {
        Some("HANDLER")
    } else {
        None
    }
}

/// Whether statement `c` may open a transaction when autocommit is off:
/// anything but `SET`, `USE` and an empty query.
fn may_open(c: &Classification) -> bool {
    !matches!(c.reason, Reason::Set | Reason::Use | Reason::Empty)
}

/// Routing state of one session.
#[derive(Debug, Clone)]
pub struct RouteState {
    /// Backend holding the open transaction, if any.
    pub trx: Option<String>,
    /// Autocommit as last reported by the primary.
    pub autocommit: bool,
    /// Why the session is pinned to the primary, if it is.
    pub pinned: Option<&'static str>,
    /// Backend that ran the previous statement.
    pub last_backend: Option<String>,
}

impl Default for RouteState {
    fn default() -> Self {
        RouteState {
            trx: None,
            autocommit: true,
            pinned: None,
            last_backend: None,
        }
    }
}

impl RouteState {
    /// Decides the target of a statement and says why.
    pub fn decide(&self, c: &Classification) -> (Target, &'static str) {
        if let Some(b) = &self.trx {
            return (Target::Backend(b.clone()), "open transaction");
        }
        if let Some(begin) = &c.effects.begin {
            if begin.read_only && self.pinned.is_none() && self.autocommit {
                return (Target::ReadOnlyTransaction, "read-only transaction");
            }
            return (Target::Primary, "transaction");
        }
        if let Some(p) = self.pinned {
            return (Target::Primary, p);
        }
        if !self.autocommit {
            return (Target::Primary, "autocommit=0");
        }
        if c.effects.diagnostics {
            if let Some(b) = &self.last_backend {
                return (
                    Target::Backend(b.clone()),
                    "diagnostics of previous statement",
                );
            }
        }
        match c.route {
            Route::Replica => (Target::Replica, c.reason.as_str()),
            Route::Primary => (Target::Primary, c.reason.as_str()),
        }
    }

    /// Updates the state after `backend` answered a statement. `status` is
    /// the reply's final status (None for an error reply, which carries no
    /// status).
    pub fn after(
        &mut self,
        c: &Classification,
        backend: &str,
        is_primary: bool,
        status: Option<u16>,
    ) {
        // no allocation when the backend did not change (most statements)
        if self.last_backend.as_deref() != Some(backend) {
            self.last_backend = Some(backend.to_string());
        }
        if self.pinned.is_none() {
            self.pinned = pin_reason(c);
        }
        let e = &c.effects;
        let ends = e.commit || e.rollback || e.implicit_commit || e.disconnect;
        // with autocommit off, a statement that may open a transaction
        // (MySQL flags it only once the transaction has written)
        let implicit = |s: &Self| !s.autocommit && !ends && (s.trx.is_some() || may_open(c));
        if e.next_transaction && status.is_some() {
            // characteristics pending on this connection for the next
            // transaction: the next statement runs here, and consumes them
            self.trx = Some(backend.to_string());
            return;
        }
        let Some(status) = status else {
            // an error: whatever was open stays open
            if self.trx.is_none() && implicit(self) {
                self.trx = Some(backend.to_string());
            }
            return;
        };
        if is_primary {
            self.autocommit = status & StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits() != 0;
        }
        if status & StatusFlags::SERVER_STATUS_IN_TRANS.bits() != 0 || implicit(self) {
            if self.trx.as_deref() != Some(backend) {
                self.trx = Some(backend.to_string());
            }
        } else {
            self.trx = None;
        }
    }

    /// Pins the session (state the proxy cannot replay).
    pub fn pin(&mut self, reason: &'static str) {
        if self.pinned.is_none() {
            self.pinned = Some(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_classify::classify;

    const IN_TRANS: u16 = 0x0001;
    const AUTOCOMMIT: u16 = 0x0002;

    #[test]
    fn reads_go_to_replicas_and_writes_to_primary() {
        let s = RouteState::default();
        assert_eq!(s.decide(&classify("SELECT 1")).0, Target::Replica);
        assert_eq!(
            s.decide(&classify("INSERT INTO t VALUES (1)")).0,
            Target::Primary
        );
        assert_eq!(
            s.decide(&classify("SELECT * FROM t FOR UPDATE")).0,
            Target::Primary
        );
    }

    #[test]
    fn transaction_follows_the_backend_status() {
        let mut s = RouteState::default();
        let begin = classify("BEGIN");
        assert_eq!(s.decide(&begin).0, Target::Primary);
        s.after(&begin, "primary", true, Some(IN_TRANS | AUTOCOMMIT));
        let read = classify("SELECT 1");
        assert_eq!(s.decide(&read).0, Target::Backend("primary".into()));
        let commit = classify("COMMIT");
        s.after(&commit, "primary", true, Some(AUTOCOMMIT));
        assert_eq!(s.decide(&read).0, Target::Replica);
    }

    #[test]
    fn read_only_transaction_stays_on_its_replica() {
        let mut s = RouteState::default();
        let begin = classify("START TRANSACTION READ ONLY");
        assert_eq!(s.decide(&begin).0, Target::ReadOnlyTransaction);
        s.after(&begin, "r2", false, Some(IN_TRANS | AUTOCOMMIT));
        assert_eq!(
            s.decide(&classify("SELECT 1")).0,
            Target::Backend("r2".into())
        );
        s.after(&classify("COMMIT"), "r2", false, Some(AUTOCOMMIT));
        assert_eq!(s.trx, None);
    }

    /// Autocommit off: the transaction is open from the first statement
    /// that may open one, whatever `IN_TRANS` says (the server reports it
    /// clear after a first `SAVEPOINT` or a read), until it ends.
    #[test]
    fn autocommit_off_holds_the_transaction_until_it_ends() {
        let mut s = RouteState::default();
        s.after(&classify("SET autocommit = 0"), "primary", true, Some(0));
        assert_eq!(s.trx, None, "SET alone opens nothing");
        assert_eq!(s.decide(&classify("SELECT 1")).0, Target::Primary);
        // (statement, reply status with autocommit off, open afterwards)
        let steps: &[(&str, Option<u16>, bool)] = &[
            ("SAVEPOINT a", Some(0), true),
            ("SELECT * FROM t", Some(0), true),
            ("SET NAMES utf8mb4", Some(0), true),
            ("SELECT nope FROM t", None, true),
            ("ROLLBACK TO SAVEPOINT a", Some(0), true),
            ("INSERT INTO t VALUES (1)", Some(IN_TRANS), true),
            ("COMMIT", Some(0), false),
            ("USE db", Some(0), false),
            ("SELECT 1", Some(0), true),
            ("ROLLBACK", Some(0), false),
            ("SELECT * FROM t", Some(0), true),
            ("CREATE TABLE u (a INT)", Some(0), false),
            ("DELETE FROM t", None, true),
            ("ROLLBACK AND CHAIN", Some(IN_TRANS), true),
            ("SET autocommit = 1", Some(AUTOCOMMIT), false),
        ];
        for (sql, status, open) in steps {
            s.after(&classify(sql), "primary", true, *status);
            assert_eq!(s.trx.is_some(), *open, "open after {sql}");
            if *open {
                let target = s.decide(&classify("SELECT 1")).0;
                assert_eq!(target, Target::Backend("primary".into()), "{sql}");
            }
        }
        assert_eq!(s.decide(&classify("SELECT 1")).0, Target::Replica);
    }

    /// `SET TRANSACTION` (next transaction only) keeps its connection for
    /// the statement that consumes it, with autocommit on or off.
    #[test]
    fn set_transaction_holds_until_the_next_transaction() {
        for ac in [AUTOCOMMIT, 0] {
            let mut s = RouteState {
                autocommit: ac != 0,
                ..RouteState::default()
            };
            let set = classify("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
            s.after(&set, "primary", true, Some(ac));
            let read = classify("SELECT * FROM t");
            assert_eq!(s.decide(&read).0, Target::Backend("primary".into()));
            s.after(&read, "primary", true, Some(ac));
            s.after(&classify("COMMIT"), "primary", true, Some(ac));
            assert_eq!(s.trx, None, "released once the transaction ended");
        }
    }

    /// Autocommit on: only the server's flag opens a transaction.
    #[test]
    fn autocommit_on_follows_the_flag_only() {
        let mut s = RouteState::default();
        s.after(&classify("SAVEPOINT a"), "primary", true, Some(AUTOCOMMIT));
        assert_eq!(s.trx, None);
        s.after(&classify("SELECT nope"), "r1", false, None);
        assert_eq!(s.trx, None, "an error opens nothing with autocommit on");
    }

    #[test]
    fn session_state_pins_to_primary() {
        for sql in [
            "SET @x = 1",
            "CREATE TEMPORARY TABLE t (a INT)",
            "LOCK TABLES t READ",
            "SELECT GET_LOCK('a', 1)",
            "PREPARE s FROM 'SELECT 1'",
        ] {
            let mut s = RouteState::default();
            let c = classify(sql);
            s.after(&c, "primary", true, Some(AUTOCOMMIT));
            assert!(s.pinned.is_some(), "{sql} pins");
            assert_eq!(s.decide(&classify("SELECT 1")).0, Target::Primary, "{sql}");
        }
    }

    #[test]
    fn diagnostics_go_where_the_previous_statement_ran() {
        let mut s = RouteState::default();
        s.after(&classify("SELECT 1"), "r1", false, Some(AUTOCOMMIT));
        assert_eq!(
            s.decide(&classify("SHOW WARNINGS")).0,
            Target::Backend("r1".into())
        );
    }

    #[test]
    fn errors_keep_the_transaction_state() {
        let mut s = RouteState::default();
        s.after(
            &classify("BEGIN"),
            "primary",
            true,
            Some(IN_TRANS | AUTOCOMMIT),
        );
        s.after(&classify("SELECT x FROM nope"), "primary", true, None);
        assert_eq!(s.trx.as_deref(), Some("primary"));
    }
}
