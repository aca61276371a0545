//! Whether a read's answer is a pure function of the data it reads (and of
//! what the cache key holds: text, default database, character set, session
//! variables, user), so a cached copy may answer it again.
//!
//! Conservative: a statement is cacheable only when [`crate::classify`]
//! sends it to a replica, it is a single `SELECT` / `WITH` / `TABLE` /
//! `VALUES` (possibly parenthesised), and none of its tokens (outside
//! strings, comments and quoted identifiers, under every lexing of
//! backslashes the text exercises) is a time, random, identity or
//! connection function, a user or system variable, a locking clause,
//! `INTO`, `SQL_NO_CACHE`, or a system schema.

use crate::lexer::{LexOptions, Lexer, Tok};
use crate::{classify, Route};

/// Why a statement is not cacheable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotCacheable {
    /// The classifier does not send it to a replica.
    #[error("not a replica read")]
    NotRead,
    /// Not a single SELECT/WITH/TABLE/VALUES statement (SHOW, EXPLAIN, ...).
    #[error("not a single SELECT")]
    NotSelect,
    /// Depends on the clock, randomness, the connection or the account.
    #[error("non-deterministic: {0}")]
    NonDeterministic(&'static str),
    /// Reads a user (`@x`) or system (`@@x`) variable.
    #[error("reads a variable")]
    Variable,
    /// A locking read (`FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`).
    #[error("locking read")]
    Locking,
    /// `SELECT ... INTO`.
    #[error("SELECT INTO")]
    Into,
    /// `SQL_NO_CACHE`.
    #[error("SQL_NO_CACHE")]
    NoCache,
    /// Reads a system schema (information_schema, performance_schema,
    /// mysql, sys), whose contents are not replicated table data.
    #[error("reads a system schema")]
    SystemSchema,
    /// Unterminated or empty text.
    #[error("not understood")]
    NotUnderstood,
}

/// Functions and keywords whose value is not a function of table data.
const NON_DETERMINISTIC: &[&str] = &[
    "NOW",
    "SYSDATE",
    "CURDATE",
    "CURTIME",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
    "UNIX_TIMESTAMP",
    "RAND",
    "RANDOM_BYTES",
    "UUID",
    "UUID_SHORT",
    "CURRENT_USER",
    "CURRENT_ROLE",
    "USER",
    "SESSION_USER",
    "SYSTEM_USER",
    "ROLES_GRAPHML",
    "DATABASE",
    "SCHEMA",
    "CONNECTION_ID",
    "LAST_INSERT_ID",
    "FOUND_ROWS",
    "ROW_COUNT",
    "SLEEP",
    "BENCHMARK",
    "GET_LOCK",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "LOAD_FILE",
    "PS_CURRENT_THREAD_ID",
    "PS_THREAD_ID",
    "WAIT_FOR_EXECUTED_GTID_SET",
    "SOURCE_POS_WAIT",
    "MASTER_POS_WAIT",
    "GTID_SUBTRACT_EXECUTED",
    "NEXTVAL",
    "LASTVAL",
    "SETVAL",
    "VERSION",
];

const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "performance_schema", "mysql", "sys"];

/// Whether `sql` may be answered from the cache; the first reason it may
/// not otherwise.
pub fn cacheable(sql: &str) -> Result<(), NotCacheable> {
    if classify(sql).route != Route::Replica {
        return Err(NotCacheable::NotRead);
    }
    let mut lex = Lexer::new(sql, LexOptions::default());
    check_tokens(&mut lex)?;
    if lex.flags.unterminated {
        return Err(NotCacheable::NotUnderstood);
    }
    if lex.flags.backslash {
        // under NO_BACKSLASH_ESCAPES the strings end elsewhere
        let opts = LexOptions {
            backslash_escapes: false,
            ..LexOptions::default()
        };
        let mut alt = Lexer::new(sql, opts);
        check_tokens(&mut alt)?;
        if alt.flags.unterminated {
            return Err(NotCacheable::NotUnderstood);
        }
    }
    Ok(())
}

fn check_tokens(lex: &mut Lexer<'_>) -> Result<(), NotCacheable> {
    let mut first = true;
    let mut statements = 1u32;
    let mut prev_for = false;
    for t in lex.by_ref() {
        if statements > 1 {
            return Err(NotCacheable::NotSelect);
        }
        let tok = t.tok;
        if first {
            first = false;
            let ok = match tok {
                Tok::Punct(b'(') => true,
                Tok::Word(w) => ["SELECT", "WITH", "TABLE", "VALUES"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)),
                _ => false,
            };
            if !ok {
                return Err(NotCacheable::NotSelect);
            }
        }
        match tok {
            Tok::Punct(b';') => statements += 1,
            Tok::UserVar(_) | Tok::SysVar(_) | Tok::Assign => return Err(NotCacheable::Variable),
            Tok::Word(w) => {
                if let Some(f) = NON_DETERMINISTIC.iter().find(|f| w.eq_ignore_ascii_case(f)) {
                    return Err(NotCacheable::NonDeterministic(f));
                }
                if w.eq_ignore_ascii_case("LOCK")
                    || (prev_for
                        && (w.eq_ignore_ascii_case("UPDATE") || w.eq_ignore_ascii_case("SHARE")))
                {
                    return Err(NotCacheable::Locking);
                }
                if w.eq_ignore_ascii_case("INTO") {
                    return Err(NotCacheable::Into);
                }
                if w.eq_ignore_ascii_case("SQL_NO_CACHE") {
                    return Err(NotCacheable::NoCache);
                }
                if SYSTEM_SCHEMAS.iter().any(|s| w.eq_ignore_ascii_case(s)) {
                    return Err(NotCacheable::SystemSchema);
                }
            }
            Tok::Quoted(q) if SYSTEM_SCHEMAS.iter().any(|s| q.eq_ignore_ascii_case(s)) => {
                return Err(NotCacheable::SystemSchema);
            }
            _ => {}
        }
        prev_for = matches!(tok, Tok::Word(w) if w.eq_ignore_ascii_case("FOR"));
    }
    if first {
        return Err(NotCacheable::NotUnderstood);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cacheable_reads() {
        for sql in [
            "SELECT * FROM shop.products WHERE id = 1",
            "select name, price from products where id in (1,2,3) order by name",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH c AS (SELECT id FROM t) SELECT * FROM c",
            "TABLE shop.products",
            "SELECT 'now()', `now` FROM t /* NOW() */",
            "SELECT COUNT(*) FROM t WHERE name = 'for update'",
            "SELECT * FROM t;",
            "SELECT JSON_EXTRACT(doc, '$.a') FROM t",
        ] {
            assert_eq!(cacheable(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn not_cacheable() {
        use NotCacheable::*;
        let cases: &[(&str, NotCacheable)] = &[
            ("SELECT NOW()", NonDeterministic("NOW")),
            ("SELECT * FROM t WHERE d > now()", NonDeterministic("NOW")),
            (
                "SELECT CURRENT_TIMESTAMP",
                NonDeterministic("CURRENT_TIMESTAMP"),
            ),
            ("SELECT * FROM t ORDER BY RAND()", NonDeterministic("RAND")),
            ("SELECT UUID()", NonDeterministic("UUID")),
            ("SELECT CURRENT_USER()", NonDeterministic("CURRENT_USER")),
            ("SELECT current_user", NonDeterministic("CURRENT_USER")),
            ("SELECT SYSDATE()", NonDeterministic("SYSDATE")),
            (
                "SELECT UNIX_TIMESTAMP()",
                NonDeterministic("UNIX_TIMESTAMP"),
            ),
            ("SELECT SLEEP(1)", NonDeterministic("SLEEP")),
            ("SELECT DATABASE()", NonDeterministic("DATABASE")),
            ("SELECT @@version", Variable),
            ("SELECT * FROM t WHERE a = @@sql_mode", Variable),
            ("SELECT * FROM t FOR UPDATE", NotRead),
            ("SELECT * FROM t LOCK IN SHARE MODE", NotRead),
            ("SELECT SQL_NO_CACHE * FROM t", NoCache),
            ("SELECT * FROM information_schema.tables", SystemSchema),
            ("SELECT * FROM `mysql`.`user`", SystemSchema),
            ("SHOW TABLES", NotSelect),
            ("EXPLAIN SELECT 1", NotSelect),
            ("SELECT 1; SELECT 2", NotSelect),
            ("INSERT INTO t VALUES (1)", NotRead),
            ("UPDATE t SET a = 1", NotRead),
            ("BEGIN", NotRead),
            ("SELECT 1 INTO @x", NotRead),
            ("", NotRead),
            // backslash readings: under NO_BACKSLASH_ESCAPES, NOW() is SQL
            (
                "SELECT * FROM t WHERE a = 'x\\' OR NOW() -- '",
                NonDeterministic("NOW"),
            ),
        ];
        for (sql, why) in cases {
            assert_eq!(cacheable(sql), Err(*why), "{sql}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = cacheable(&s);
        }

        #[test]
        fn a_nondeterministic_call_is_never_cacheable(
            f in proptest::sample::select(NON_DETERMINISTIC),
            pre in "[a-z ]{0,10}",
        ) {
            let sql = format!("SELECT {f}() FROM t WHERE {pre}x = 1");
            proptest::prop_assert!(cacheable(&sql).is_err());
        }
    }
}
