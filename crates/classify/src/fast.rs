//! The fast path: splits the text into statements, dispatches each on its
//! first keyword (after leading `(`), and merges per-statement results.
//! Allocation free except `USE db` (the name) and the rare sqlparser
//! fallback for reads with unknown function-like names.

use crate::lexer::{is_any_kw, is_kw, LexFlags, LexOptions, Lexer, Stmt, Tok};
use crate::scan::{effects_only, scan_tokens, Scan};
use crate::{parsed, session, Classification, Effects, Reason, Route};

/// Classify all statements of `sql` lexed with `opts`.
pub(crate) fn classify_with(sql: &str, opts: LexOptions) -> (Classification, LexFlags) {
    let mut lex = Lexer::new(sql, opts);
    let mut out: Option<Classification> = None;
    loop {
        let mut st = Stmt::new(lex);
        let c = classify_stmt(&mut st);
        st.drain();
        lex = st.lex;
        // An unterminated statement is a syntax error on the server; the
        // caller decides what that means for this reading.
        if let Some(c) = c.filter(|_| !lex.flags.unterminated) {
            match out.as_mut() {
                None => out = Some(c),
                Some(o) => {
                    if o.route == Route::Replica && c.route == Route::Primary {
                        o.route = Route::Primary;
                        o.reason = c.reason;
                    }
                    o.effects.merge(c.effects);
                }
            }
        }
        // (lexing to the end may find an unclosed executable comment)
        let mut probe = lex.clone();
        if probe.next().is_none() {
            lex.flags = probe.flags;
            break;
        }
    }
    let flags = lex.flags;
    (
        out.unwrap_or_else(|| Classification::primary(Reason::Empty)),
        flags,
    )
}

/// Upper-case an ASCII keyword into `buf` (empty if too long).
fn upper<'b>(w: &str, buf: &'b mut [u8; 24]) -> &'b str {
    let Some(out) = buf.get_mut(..w.len()) else {
        return "";
    };
    out.copy_from_slice(w.as_bytes());
    out.make_ascii_uppercase();
    std::str::from_utf8(out).unwrap_or("")
}

fn with(route: Route, reason: Reason, effects: Effects) -> Classification {
    Classification {
        route,
        reason,
        effects,
    }
}

fn primary_fx(reason: Reason, effects: Effects) -> Classification {
    with(Route::Primary, reason, effects)
}

/// Primary, with implicit commit, plus whatever the token scan finds.
fn implicit<'a>(st: &mut Stmt<'a>, prev: Tok<'a>, reason: Reason) -> Classification {
    let mut fx = effects_only(st, Some(prev), false);
    fx.implicit_commit = true;
    primary_fx(reason, fx)
}

/// Classify one statement; `None` for an empty statement.
fn classify_stmt(st: &mut Stmt<'_>) -> Option<Classification> {
    let mut parens = 0usize;
    let first = loop {
        match st.next() {
            None if parens == 0 => return None,
            None => return Some(Classification::primary(Reason::Unknown)),
            Some(t) if t.tok == Tok::Punct(b'(') => parens += 1,
            Some(t) => break t.tok,
        }
    };
    let Tok::Word(w) = first else {
        return Some(Classification::primary(Reason::Unknown));
    };
    let mut buf = [0u8; 24];
    let kw = upper(w, &mut buf);
    if parens > 0 && !matches!(kw, "SELECT" | "WITH" | "TABLE" | "VALUES") {
        return Some(Classification::primary(Reason::Unknown));
    }
    let c = match kw {
        "SELECT" | "WITH" | "TABLE" | "VALUES" => read(st, first),
        "SHOW" => show(st),
        "EXPLAIN" | "DESCRIBE" | "DESC" => explain(st),
        "HELP" => Classification::replica(Reason::Help),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" => {
            primary_fx(Reason::Write, effects_only(st, Some(first), false))
        }
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "RENAME" => ddl(st, first, kw),
        "LOAD" => {
            if st.peek().is_some_and(|t| is_any_kw(t, &["DATA", "XML"])) {
                primary_fx(Reason::LoadData, effects_only(st, Some(first), true))
            } else {
                implicit(st, first, Reason::Admin)
            }
        }
        "CALL" => primary_fx(Reason::Call, effects_only(st, Some(first), true)),
        "GRANT" | "REVOKE" => implicit(st, first, Reason::Account),
        "LOCK" => {
            let instance = st.peek().is_some_and(|t| is_kw(t, "INSTANCE"));
            let mut c = if instance {
                Classification::primary(Reason::LockTables)
            } else {
                implicit(st, first, Reason::LockTables)
            };
            c.effects.lock_tables = true;
            c
        }
        "UNLOCK" => {
            let instance = st.peek().is_some_and(|t| is_kw(t, "INSTANCE"));
            let mut c = Classification::primary(Reason::LockTables);
            c.effects.unlock_tables = true;
            c.effects.implicit_commit = !instance;
            c
        }
        "RESET" if st.peek().is_some_and(|t| is_kw(t, "CAUSEWAY")) => {
            let mut c = Classification::primary(Reason::Causeway);
            c.effects.causeway_var = true;
            c
        }
        "FLUSH" | "RESET" | "ANALYZE" | "OPTIMIZE" | "REPAIR" | "CHECK" | "CACHE" | "INSTALL"
        | "UNINSTALL" | "CHANGE" | "STOP" => implicit(st, first, Reason::Admin),
        "CHECKSUM" | "PURGE" | "KILL" | "SHUTDOWN" | "RESTART" | "CLONE" | "IMPORT" | "BINLOG" => {
            Classification::primary(Reason::Admin)
        }
        "START" => session::start(st),
        "BEGIN" => session::begin(st),
        "COMMIT" => session::end_tx(st, false),
        "ROLLBACK" => session::end_tx(st, true),
        "SAVEPOINT" => session::savepoint(),
        "RELEASE" => {
            if st.peek().is_some_and(|t| is_kw(t, "SAVEPOINT")) {
                session::savepoint()
            } else {
                Classification::primary(Reason::Unknown)
            }
        }
        "SET" => session::set(st),
        "USE" => session::use_db(st),
        "DO" => primary_fx(Reason::Do, effects_only(st, Some(first), false)),
        "XA" => {
            let mut c = Classification::primary(Reason::Xa);
            c.effects.xa = true;
            c
        }
        "HANDLER" => {
            let mut c = Classification::primary(Reason::Handler);
            c.effects.handler = true;
            c
        }
        "PREPARE" | "EXECUTE" | "DEALLOCATE" => {
            let mut fx = effects_only(st, Some(first), false);
            fx.sql_prepare = true;
            primary_fx(Reason::SqlPrepare, fx)
        }
        "GET" => {
            let mut c = Classification::primary(Reason::Diagnostics);
            c.effects.diagnostics = true;
            c.effects.user_var_write = effects_only(st, Some(first), true).user_var_write;
            c
        }
        "SIGNAL" | "RESIGNAL" => Classification::primary(Reason::Diagnostics),
        _ => Classification::primary(Reason::Unknown),
    };
    Some(c)
}

/// `SELECT`, `WITH`, `TABLE`, `VALUES`.
fn read<'a>(st: &mut Stmt<'a>, first: Tok<'a>) -> Classification {
    let mut scan = Scan::default();
    scan_tokens(st, Some(first), &mut scan);
    if let Some(reason) = scan.primary {
        return primary_fx(reason, scan.effects);
    }
    if scan.unknown_call {
        // The parser only refines this statement's own text; executable
        // comments would be hidden from it, so they keep the primary.
        let ok = !st.lex.flags.executable && parsed::read_is_safe(st.text()).unwrap_or(false);
        if !ok {
            return primary_fx(Reason::UnknownFunction, scan.effects);
        }
    }
    with(Route::Replica, Reason::Read, scan.effects)
}

/// `SHOW ...`.
fn show(st: &mut Stmt<'_>) -> Classification {
    let mut next = st.next().map(|t| t.tok);
    if next.is_some_and(|t| is_any_kw(t, &["FULL", "GLOBAL", "SESSION", "EXTENDED"])) {
        next = st.next().map(|t| t.tok);
    }
    let Some(t) = next else {
        return Classification::primary(Reason::Unknown);
    };
    if is_kw(t, "CAUSEWAY") {
        let mut c = Classification::primary(Reason::Causeway);
        c.effects.causeway_var = true;
        c
    } else if is_any_kw(t, &["WARNINGS", "ERRORS", "PROFILE", "PROFILES", "COUNT"]) {
        let mut c = Classification::primary(Reason::Diagnostics);
        c.effects.diagnostics = true;
        c
    } else if is_any_kw(
        t,
        &[
            "MASTER", "BINARY", "BINLOG", "RELAYLOG", "REPLICA", "REPLICAS", "SLAVE",
        ],
    ) {
        Classification::primary(Reason::ReplicationStatus)
    } else {
        Classification::replica(Reason::Show)
    }
}

/// `EXPLAIN`/`DESCRIBE`/`DESC`: replica unless it executes or writes.
fn explain(st: &mut Stmt<'_>) -> Classification {
    let mut prev: Option<Tok<'_>> = None;
    while let Some(t) = st.next() {
        let t = t.tok;
        if is_kw(t, "ANALYZE") || (prev.is_some_and(|p| is_kw(p, "FOR")) && is_kw(t, "CONNECTION"))
        {
            return Classification::primary(Reason::ExplainAnalyze);
        }
        if is_kw(t, "INTO") {
            let mut c = Classification::primary(Reason::SelectInto);
            c.effects.user_var_write = matches!(st.peek(), Some(Tok::UserVar(_)));
            return c;
        }
        prev = Some(t);
    }
    Classification::replica(Reason::Explain)
}

/// `CREATE`/`ALTER`/`DROP`/`TRUNCATE`/`RENAME`.
fn ddl<'a>(st: &mut Stmt<'a>, first: Tok<'a>, kw: &str) -> Classification {
    let next = st.peek();
    let is = |k: &str| next.is_some_and(|t| is_kw(t, k));
    if matches!(kw, "CREATE" | "DROP") && is("TEMPORARY") {
        let mut fx = effects_only(st, Some(first), false);
        fx.temp_table = true;
        return primary_fx(Reason::Ddl, fx);
    }
    if kw == "DROP" && is("PREPARE") {
        let mut c = Classification::primary(Reason::SqlPrepare);
        c.effects.sql_prepare = true;
        return c;
    }
    if next.is_some_and(|t| is_any_kw(t, &["USER", "ROLE"])) {
        return implicit(st, first, Reason::Account);
    }
    implicit(st, first, Reason::Ddl)
}
