//! causeway-classify: decides, for one COM_QUERY text, whether it may run on
//! a replica, and what it does to session state. Pure functions, no I/O.
//!
//! # Entry points
//!
//! * [`classify`] — route + reason + [`Effects`] for a query text (which may
//!   hold several `;`-separated statements).
//! * [`causeway_command`] — recognises the proxy's own commands
//!   (`SELECT @@causeway.x`, `SET @@causeway.x = ...`,
//!   `SHOW CAUSEWAY BACKENDS`). Call it only when
//!   [`Effects::causeway_var`] is set; it allocates.
//! * [`leading_comment_options`] — `key=value` pairs from a leading
//!   `/* causeway ... */` comment.
//! * [`kill_check`] — whether (and how) a text would run a `KILL`.
//! * [`processlist_query`] — `SHOW [FULL] PROCESSLIST` and the subset of
//!   `SELECT ... FROM information_schema.PROCESSLIST` the proxy answers.
//! * [`set_targets`] — the variables a literal-only `SET` assigns (for the
//!   session's replay list).
//! * [`digest`] / [`digest_into`] — the normalised text of a statement
//!   (literals `?`, `IN` lists and repeated `VALUES` tuples folded) and its
//!   64-bit hash, for per-digest statistics.
//!
//! Every entry point is total: any input, including unterminated strings
//! and comments ending inside a multi-byte character, gives an answer.
//!
//! # How it works
//!
//! An allocation-free lexer (module `lexer`) skips whitespace and comments and
//! understands quoting, so keywords inside strings (`'for update'`),
//! backtick identifiers (`` `update` ``) and comments (`/* FOR UPDATE */`)
//! are never mistaken for SQL. The fast path (module `fast`, with `scan` and `session`) looks at the first
//! keyword and then scans the statement's tokens; it settles nearly every
//! statement without allocating. Only a read whose scan met an identifier
//! followed by `(` that is not a known built-in function goes to the
//! sqlparser path (module `parsed`), which decides whether it really is a call to
//! an unknown (possibly stored, possibly writing) function or just a CTE or
//! derived-table column list. Nothing ever fails: what is not understood goes
//! to the primary.
//!
//! # Routing rules
//!
//! The route is [`Route::Replica`] only when every statement in the text is
//! one of the following and nothing disqualifies it:
//!
//! * `SELECT`, `WITH ... SELECT`, `TABLE t`, `VALUES ROW(...)`, including
//!   `UNION`/`EXCEPT`/`INTERSECT`, subqueries and leading parentheses
//!   (`(SELECT 1) UNION (SELECT 2)`);
//! * `SHOW ...`, except the ones listed below;
//! * `DESCRIBE`/`DESC`/`EXPLAIN` (not `EXPLAIN ANALYZE`, which executes the
//!   query; not `EXPLAIN FOR CONNECTION`; not `EXPLAIN ... INTO @v`);
//! * `HELP '...'` (reads the help tables, which replicate).
//!
//! A read goes to the **primary** when it contains, outside strings,
//! comments and quoted identifiers:
//!
//! * a locking clause: `FOR UPDATE`, `FOR SHARE` (with `NOWAIT`/`SKIP
//!   LOCKED`/`OF t`), `LOCK IN SHARE MODE` — any unquoted `LOCK` word;
//! * `INTO` (`INTO @var`, `INTO OUTFILE`, `INTO DUMPFILE`);
//! * a user variable `@x`, read or written (`@x := ...`). User variables live
//!   on the backend connection where they were set, which is the primary
//!   connection (every `SET @x` goes there), so even a plain read of `@x` must
//!   run there to see the value. System variables `@@x` are fine on replicas,
//!   except `@@identity`/`@@last_insert_id` (same as `LAST_INSERT_ID()`) and
//!   `@@warning_count`/`@@error_count` (refer to the previous statement);
//! * a call to a named-lock function (`GET_LOCK`, `RELEASE_LOCK`,
//!   `RELEASE_ALL_LOCKS`, `IS_USED_LOCK`, `IS_FREE_LOCK`);
//! * a connection-state function: `LAST_INSERT_ID()`, `FOUND_ROWS()`,
//!   `ROW_COUNT()`, `CONNECTION_ID()`, or the `SQL_CALC_FOUND_ROWS` modifier
//!   (its `FOUND_ROWS()` must run on the same connection);
//! * sequences: `NEXTVAL`, `SETVAL`, `LASTVAL`, `NEXT VALUE FOR`,
//!   `PREVIOUS VALUE FOR`;
//! * a call to a function that is not a known pure built-in: it may be a
//!   stored function that writes (qualified calls `db.f()` always count);
//! * a DML keyword `INSERT`/`UPDATE`/`DELETE`/`REPLACE` not used as a function
//!   (`WITH c AS (...) DELETE ...`), or `PROCEDURE`;
//! * a reference to `@@causeway.*` (handled by the proxy itself).
//!
//! `SLEEP()`, `BENCHMARK()`, `RAND()`, `UUID()`, `UUID_SHORT()`, `NOW()` and
//! other pure or merely time/CPU-consuming built-ins stay on the replica.
//!
//! Always **primary**: `INSERT`/`UPDATE`/`DELETE`/`REPLACE`; DDL
//! (`CREATE`/`ALTER`/`DROP`/`TRUNCATE`/`RENAME`); `LOAD DATA`/`LOAD XML`;
//! `CALL`; account management (`GRANT`, `REVOKE`, `CREATE/ALTER/DROP/RENAME
//! USER`, `SET PASSWORD`, `SET DEFAULT ROLE`); `LOCK`/`UNLOCK`; admin
//! statements (`FLUSH`, `RESET`, `ANALYZE`, `OPTIMIZE`, `REPAIR`, `CHECK`,
//! `CHECKSUM`, `CACHE INDEX`, `LOAD INDEX`, `INSTALL`, `UNINSTALL`, `PURGE`,
//! `CHANGE`, `START/STOP REPLICA`, `KILL`, `SHUTDOWN`, `RESTART`, `CLONE`,
//! `IMPORT`, `BINLOG`); `DO`; `XA`; `HANDLER`; `PREPARE`/`EXECUTE`/
//! `DEALLOCATE`/`DROP PREPARE`; every `SET`; transaction control (`BEGIN`,
//! `START TRANSACTION`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE
//! SAVEPOINT`); `USE`; `GET DIAGNOSTICS`, `SIGNAL`, `RESIGNAL`; `SHOW
//! WARNINGS`/`ERRORS`/`PROFILE(S)` and `SHOW COUNT(*) WARNINGS` (they
//! describe the previous statement, see [`Effects::diagnostics`]); the
//! replication-position `SHOW`s (`SHOW MASTER/BINARY LOG STATUS`, `SHOW
//! BINARY/MASTER LOGS`, `SHOW BINLOG/RELAYLOG EVENTS`, `SHOW REPLICA/SLAVE
//! STATUS`, `SHOW REPLICAS`, `SHOW SLAVE HOSTS`: their answer depends on the
//! server's role, and a client asking means the primary); `SHOW CAUSEWAY
//! BACKENDS` and other causeway commands (answered by the proxy); reads
//! that mention `processlist` and that [`processlist_query`] does not
//! answer (`SELECT COUNT(*) FROM information_schema.PROCESSLIST`, a
//! prepared `SHOW PROCESSLIST`: a client asking means the primary); empty
//! queries; unterminated strings/comments; anything else.
//!
//! Session-affecting statements go to the primary and the session layer uses
//! [`Effects`] to track (and replay or pin) the state; in particular
//! `START TRANSACTION READ ONLY` is routed primary with
//! `begin.read_only = true`, and the session layer may choose to run the
//! transaction on a replica.
//!
//! **Multi-statements** (`;`-separated, outside quotes and comments) go to a
//! replica only if every statement would; effects are merged. Empty
//! statements (`SELECT 1;;`) are ignored.
//!
//! **Executable comments**: `/*! ... */` content is SQL. For versioned ones
//! (`/*!80000 ... */`, MariaDB `/*M!...*/`) the server may or may not run
//! the content, so both readings are classified and the replica is chosen
//! only if both allow it. Likewise a backslash inside a string is read both
//! with and without `NO_BACKSLASH_ESCAPES`. Effects come from the reading
//! with versioned content included and backslash escapes on.
//!
//! Temporary tables are not visible to the classifier: a `SELECT` from a
//! temporary table classifies as a read. The session layer pins sessions
//! that set [`Effects::temp_table`].

mod cacheable;
mod causeway;
mod digest;
mod fast;
mod funcs;
mod insert_id;
mod kill;
mod lexer;
mod parsed;
mod processlist;
mod replay;
mod scan;
mod session;
mod tables;

pub use cacheable::{cacheable, NotCacheable};
pub use causeway::{causeway_command, leading_comment_options, CausewayCommand, GetItem};
pub use digest::{digest, digest_into, fnv1a, Digest};
pub use insert_id::{calcs_found_rows, reads_last_insert_id};
pub use kill::{kill_check, KillCheck};
pub use parsed::ParseError;
pub use processlist::{
    like, numeric_column, processlist_query, PlColumn, PlFilter, PlTest, PlValue, ProcesslistQuery,
    ProcesslistSource, EXECUTION_ENGINE, PROCESSLIST_COLUMNS,
};
pub use replay::set_targets;
pub use tables::{tables, TableRef, Tables};

/// Where a statement may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Must run on the primary (writes, locks, session state, not understood).
    Primary,
    /// Safe to run on any replica.
    Replica,
}

/// Why a route was chosen; stable names via [`Reason::as_str`] (for logs and
/// metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Plain `SELECT`/`WITH`/`TABLE`/`VALUES` (replica).
    Read,
    /// `SHOW` (replica).
    Show,
    /// `DESCRIBE`/`EXPLAIN` (replica).
    Explain,
    /// `HELP` (replica).
    Help,
    /// Empty query (only whitespace/comments).
    Empty,
    /// Statement not understood.
    Unknown,
    /// Unterminated string, identifier or comment.
    Unterminated,
    /// `INSERT`/`UPDATE`/`DELETE`/`REPLACE` (also inside `WITH`).
    Write,
    /// DDL.
    Ddl,
    /// `LOAD DATA`/`LOAD XML`.
    LoadData,
    /// `CALL`.
    Call,
    /// Account management (`GRANT`, `CREATE USER`, `SET PASSWORD` ...).
    Account,
    /// `LOCK`/`UNLOCK`.
    LockTables,
    /// Administrative statement (`FLUSH`, `ANALYZE TABLE`, `KILL` ...).
    Admin,
    /// `FOR UPDATE`/`FOR SHARE`/`LOCK IN SHARE MODE`.
    LockingRead,
    /// Named-lock function (`GET_LOCK` ...).
    NamedLock,
    /// Connection-state function (`LAST_INSERT_ID()` ...).
    SessionFunction,
    /// User variable read or written.
    UserVariable,
    /// `SELECT ... INTO` (variables or files).
    SelectInto,
    /// Sequence function.
    Sequence,
    /// Call of a function that is not a known pure built-in.
    UnknownFunction,
    /// `EXPLAIN ANALYZE`, `EXPLAIN FOR CONNECTION`.
    ExplainAnalyze,
    /// `DO`.
    Do,
    /// `XA`.
    Xa,
    /// `HANDLER`.
    Handler,
    /// `PREPARE`/`EXECUTE`/`DEALLOCATE`.
    SqlPrepare,
    /// `SET`.
    Set,
    /// Transaction control.
    Transaction,
    /// `USE`.
    Use,
    /// Refers to the previous statement (`SHOW WARNINGS`, `GET DIAGNOSTICS`).
    Diagnostics,
    /// Replication-position `SHOW` (`SHOW MASTER STATUS` ...).
    ReplicationStatus,
    /// A read of a server's process list that the proxy does not answer
    /// itself (see [`processlist_query`]): the primary's.
    Processlist,
    /// A causeway command, answered by the proxy.
    Causeway,
}

impl Reason {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Read => "read",
            Reason::Show => "show",
            Reason::Explain => "explain",
            Reason::Help => "help",
            Reason::Empty => "empty",
            Reason::Unknown => "unknown",
            Reason::Unterminated => "unterminated",
            Reason::Write => "write",
            Reason::Ddl => "ddl",
            Reason::LoadData => "load_data",
            Reason::Call => "call",
            Reason::Account => "account",
            Reason::LockTables => "lock_tables",
            Reason::Admin => "admin",
            Reason::LockingRead => "locking_read",
            Reason::NamedLock => "named_lock",
            Reason::SessionFunction => "session_function",
            Reason::UserVariable => "user_variable",
            Reason::SelectInto => "select_into",
            Reason::Sequence => "sequence",
            Reason::UnknownFunction => "unknown_function",
            Reason::ExplainAnalyze => "explain_analyze",
            Reason::Do => "do",
            Reason::Xa => "xa",
            Reason::Handler => "handler",
            Reason::SqlPrepare => "sql_prepare",
            Reason::Set => "set",
            Reason::Transaction => "transaction",
            Reason::Use => "use",
            Reason::Diagnostics => "diagnostics",
            Reason::ReplicationStatus => "replication_status",
            Reason::Processlist => "processlist",
            Reason::Causeway => "causeway",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transaction start (`BEGIN`, `START TRANSACTION`, `COMMIT AND CHAIN`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BeginTx {
    /// `START TRANSACTION READ ONLY`.
    pub read_only: bool,
    /// `WITH CONSISTENT SNAPSHOT`.
    pub consistent_snapshot: bool,
    /// `COMMIT/ROLLBACK AND CHAIN`: characteristics are inherited from the
    /// transaction that just ended (`read_only` is then meaningless).
    pub chained: bool,
}

/// New value of `autocommit` in a `SET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Autocommit {
    /// `1`, `ON`, `TRUE`, `'ON'`.
    On,
    /// `0`, `OFF`, `FALSE`, `'OFF'`.
    Off,
    /// Any other expression (`DEFAULT`, `@v`, `1+0`).
    Unknown,
}

/// What a statement does to the session. All false/`None` for a plain read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Starts a transaction.
    pub begin: Option<BeginTx>,
    /// `COMMIT`.
    pub commit: bool,
    /// `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`).
    pub rollback: bool,
    /// `SAVEPOINT`, `ROLLBACK TO SAVEPOINT`, `RELEASE SAVEPOINT`.
    pub savepoint: bool,
    /// Commits an open transaction (MySQL's implicit-commit list: DDL other
    /// than temporary tables, account management, `LOCK TABLES`, `UNLOCK
    /// TABLES`, `BEGIN`/`START TRANSACTION`, `SET autocommit = 1` (or
    /// unknown value), `FLUSH`/`RESET`/`ANALYZE`/`OPTIMIZE`/`REPAIR`/`CHECK`
    /// /`CACHE INDEX`/`LOAD INDEX`, `INSTALL`/`UNINSTALL`, replication
    /// control). Some are conditional in MySQL (`UNLOCK TABLES` only with
    /// tables locked, `SET autocommit=1` only when it was 0); they are
    /// reported unconditionally.
    pub implicit_commit: bool,
    /// `COMMIT/ROLLBACK ... RELEASE`: the server closes the connection.
    pub disconnect: bool,
    /// Sets replayable session state: session system variables, `SET
    /// NAMES`, `SET CHARACTER SET`, `SET [SESSION] TRANSACTION ...`,
    /// `SET ROLE`, `SET RESOURCE GROUP`. Not set for `autocommit` alone
    /// (see `set_autocommit`), `causeway.*`, user variables or `GLOBAL`/
    /// `PERSIST` scope.
    pub set_session: bool,
    /// `SET TRANSACTION ...` without a scope: characteristics of the next
    /// transaction only, pending on the connection until it runs.
    pub next_transaction: bool,
    /// `SET [SESSION|@@[session.]]autocommit = ...`.
    pub set_autocommit: Option<Autocommit>,
    /// `USE db`: the database name, unquoted.
    pub use_db: Option<String>,
    /// Writes a user variable (`SET @x`, `@x :=`, `INTO @x`).
    pub user_var_write: bool,
    /// `CREATE TEMPORARY TABLE`/`DROP TEMPORARY TABLE`.
    pub temp_table: bool,
    /// `LOCK TABLES` (also `LOCK INSTANCE FOR BACKUP`).
    pub lock_tables: bool,
    /// `UNLOCK TABLES` (also `UNLOCK INSTANCE`).
    pub unlock_tables: bool,
    /// Calls `GET_LOCK()` (the session may now hold a named lock).
    pub get_lock: bool,
    /// `PREPARE`/`EXECUTE`/`DEALLOCATE PREPARE`/`DROP PREPARE`.
    pub sql_prepare: bool,
    /// `XA ...` (XA state lives on the connection).
    pub xa: bool,
    /// `HANDLER ...` (open handlers live on the connection).
    pub handler: bool,
    /// Refers to the previous statement's outcome (`SHOW WARNINGS`, `SHOW
    /// ERRORS`, `SHOW PROFILE(S)`, `GET DIAGNOSTICS`, `@@warning_count`,
    /// `@@error_count`): should run where the previous statement ran.
    pub diagnostics: bool,
    /// Touches `@@causeway.*` or is `SHOW CAUSEWAY ...`: see
    /// [`causeway_command`].
    pub causeway_var: bool,
}

impl Effects {
    /// True when the statement has no session effect at all.
    pub fn is_empty(&self) -> bool {
        *self == Effects::default()
    }

    /// Fold the effects of a later statement into these.
    pub fn merge(&mut self, o: Effects) {
        if o.begin.is_some() {
            self.begin = o.begin;
        }
        self.commit |= o.commit;
        self.rollback |= o.rollback;
        self.savepoint |= o.savepoint;
        self.implicit_commit |= o.implicit_commit;
        self.disconnect |= o.disconnect;
        self.set_session |= o.set_session;
        self.next_transaction |= o.next_transaction;
        if o.set_autocommit.is_some() {
            self.set_autocommit = o.set_autocommit;
        }
        if o.use_db.is_some() {
            self.use_db = o.use_db;
        }
        self.user_var_write |= o.user_var_write;
        self.temp_table |= o.temp_table;
        self.lock_tables |= o.lock_tables;
        self.unlock_tables |= o.unlock_tables;
        self.get_lock |= o.get_lock;
        self.sql_prepare |= o.sql_prepare;
        self.xa |= o.xa;
        self.handler |= o.handler;
        self.diagnostics |= o.diagnostics;
        self.causeway_var |= o.causeway_var;
    }
}

/// The classifier's answer for one query text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// Where the query may run.
    pub route: Route,
    /// Why (for a multi-statement: the first statement that forced the
    /// primary, or the first statement when all are reads).
    pub reason: Reason,
    /// Session effects of all statements, merged in order.
    pub effects: Effects,
}

impl Classification {
    pub(crate) fn primary(reason: Reason) -> Self {
        Classification {
            route: Route::Primary,
            reason,
            effects: Effects::default(),
        }
    }

    pub(crate) fn replica(reason: Reason) -> Self {
        Classification {
            route: Route::Replica,
            reason,
            effects: Effects::default(),
        }
    }
}

/// Classify a query text (one or more `;`-separated statements).
///
/// Never panics and never fails; see the crate documentation for the rules.
pub fn classify(sql: &str) -> Classification {
    let (mut base, flags) = fast::classify_with(sql, lexer::LexOptions::default());
    if flags.unterminated {
        base.route = Route::Primary;
        base.reason = Reason::Unterminated;
        return base;
    }
    if base.route == Route::Replica && processlist::mentions_processlist(sql.as_bytes()) {
        // a server's process list the proxy does not answer: the primary's
        base.route = Route::Primary;
        base.reason = Reason::Processlist;
        return base;
    }
    if base.route == Route::Primary || !(flags.versioned || flags.backslash) {
        return base;
    }
    // The text depends on server state we cannot see: the replica is chosen
    // only if every reading the text exercises allows it.
    for include_versioned in [true, false] {
        for backslash_escapes in [true, false] {
            if (!include_versioned && !flags.versioned) || (!backslash_escapes && !flags.backslash)
            {
                continue;
            }
            let opts = lexer::LexOptions {
                include_versioned,
                backslash_escapes,
            };
            if opts == lexer::LexOptions::default() {
                continue;
            }
            let (alt, _) = fast::classify_with(sql, opts);
            // An empty reading (everything was version-gated or
            // unterminated) runs nothing.
            if alt.route == Route::Primary && alt.reason != Reason::Empty {
                base.route = Route::Primary;
                base.reason = alt.reason;
                return base;
            }
        }
    }
    base
}
