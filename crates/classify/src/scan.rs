//! Token scans over the body of a statement: the read-safety scan for
//! `SELECT`/`WITH`/`TABLE`/`VALUES` (locking clauses, `INTO`, user
//! variables, unsafe functions, DML keywords) and the effects scan that every
//! statement gets (`GET_LOCK`, `:=`, `@@causeway.*`). Allocation free.

use crate::funcs::{is_in, is_pure, LOCK_FUNCS, SEQUENCE_FUNCS, SESSION_FUNCS};
use crate::lexer::{is_any_kw, is_kw, Stmt, Tok};
use crate::{Effects, Reason};

/// Result of scanning a statement's tokens.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// First reason found that forces the primary (reads only).
    pub primary: Option<Reason>,
    /// Session effects found.
    pub effects: Effects,
    /// An identifier that is not a known pure built-in precedes `(`: either
    /// a call of an unknown function or a column list; the parser decides.
    pub unknown_call: bool,
}

impl Scan {
    pub fn force(&mut self, r: Reason) {
        if self.primary.is_none() {
            self.primary = Some(r);
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Split `@@[scope.]name` text into (scope, name); scope is `""` when absent.
pub(crate) fn split_sysvar(v: &str) -> (&str, &str) {
    for scope in ["session.", "local.", "global.", "persist.", "persist_only."] {
        if let Some(rest) = strip_prefix_ci(v, scope) {
            let scope_name = v.get(..scope.len().saturating_sub(1)).unwrap_or("");
            return (scope_name, rest);
        }
    }
    ("", v)
}

/// Is this system-variable name (without scope) a causeway variable?
pub(crate) fn is_causeway_name(name: &str) -> bool {
    strip_prefix_ci(name, "causeway.").is_some() || name.eq_ignore_ascii_case("causeway")
}

/// Effects and routing consequences of reading a system variable.
fn sysvar(v: &str, scan: &mut Scan) {
    let (_, name) = split_sysvar(v);
    if is_causeway_name(name) {
        scan.effects.causeway_var = true;
        scan.force(Reason::Causeway);
    } else if name.eq_ignore_ascii_case("identity") || name.eq_ignore_ascii_case("last_insert_id") {
        scan.force(Reason::SessionFunction);
    } else if name.eq_ignore_ascii_case("warning_count") || name.eq_ignore_ascii_case("error_count")
    {
        scan.effects.diagnostics = true;
        scan.force(Reason::Diagnostics);
    }
}

/// Scan the remaining tokens of a statement. `prev` is the token before the
/// first one still in `st`. Sets `scan.primary` for anything that makes a
/// read unsafe on a replica, and the effects any statement can have.
pub(crate) fn scan_tokens<'a>(st: &mut Stmt<'a>, mut prev: Option<Tok<'a>>, scan: &mut Scan) {
    // One token of lookahead, so every token is lexed once.
    let mut cur = st.next().map(|t| t.tok);
    while let Some(t) = cur {
        let next = st.next().map(|t| t.tok);
        step(t, prev, next, scan);
        prev = Some(t);
        cur = next;
    }
}

/// Look at one token `t` with its neighbours (see [`scan_tokens`]).
pub(crate) fn step(t: Tok<'_>, prev: Option<Tok<'_>>, next: Option<Tok<'_>>, scan: &mut Scan) {
    match t {
        Tok::Word(w) => word(w, prev, next, scan),
        Tok::UserVar(_) => {
            if next == Some(Tok::Assign) || prev.is_some_and(|p| is_kw(p, "INTO")) {
                scan.effects.user_var_write = true;
            }
            scan.force(Reason::UserVariable);
        }
        Tok::Assign => {
            scan.effects.user_var_write = true;
            scan.force(Reason::UserVariable);
        }
        Tok::SysVar(v) => sysvar(v, scan),
        // A quoted name before `(` calls a stored function (or is a column
        // list); let the parser decide.
        Tok::Quoted(_) if next == Some(Tok::Punct(b'(')) => scan.unknown_call = true,
        _ => {}
    }
}

fn word(w: &str, prev: Option<Tok<'_>>, next: Option<Tok<'_>>, scan: &mut Scan) {
    let t = Tok::Word(w);
    if is_any_kw(t, &["UPDATE", "DELETE"]) {
        if prev.is_some_and(|p| is_kw(p, "FOR")) {
            scan.force(Reason::LockingRead);
        }
        scan.force(Reason::Write);
        return;
    }
    if next == Some(Tok::Punct(b'(')) {
        let qualified = prev == Some(Tok::Punct(b'.'));
        if qualified {
            scan.unknown_call = true;
        } else if is_in(w, LOCK_FUNCS) {
            if w.eq_ignore_ascii_case("GET_LOCK") {
                scan.effects.get_lock = true;
            }
            scan.force(Reason::NamedLock);
        } else if is_in(w, SESSION_FUNCS) {
            scan.force(Reason::SessionFunction);
        } else if is_in(w, SEQUENCE_FUNCS) {
            scan.force(Reason::Sequence);
        } else if !is_pure(w) {
            scan.unknown_call = true;
        }
        return;
    }
    // `FOR UPDATE`, `FOR SHARE`, and any unquoted `LOCK` (`LOCK IN SHARE
    // MODE`; LOCK is reserved, so it is never a bare identifier).
    let locking = is_kw(t, "FOR") && next.is_some_and(|n| is_any_kw(n, &["UPDATE", "SHARE"]));
    if locking || is_kw(t, "LOCK") {
        scan.force(Reason::LockingRead);
    } else if is_kw(t, "INTO") {
        if matches!(next, Some(Tok::UserVar(_))) {
            scan.effects.user_var_write = true;
        }
        scan.force(Reason::SelectInto);
    } else if is_any_kw(t, &["INSERT", "REPLACE"]) {
        scan.force(Reason::Write);
    } else if is_kw(t, "SQL_CALC_FOUND_ROWS") {
        scan.force(Reason::SessionFunction);
    } else if is_any_kw(t, &["NEXT", "PREVIOUS"]) && next.is_some_and(|n| is_kw(n, "VALUE")) {
        scan.force(Reason::Sequence);
    } else if is_kw(t, "PROCEDURE") {
        scan.force(Reason::Unknown);
    }
}

/// Effects of a statement that goes to the primary anyway: only the effects
/// matter. `CALL p(@out)` may write any user variable it mentions.
pub(crate) fn effects_only<'a>(st: &mut Stmt<'a>, prev: Option<Tok<'a>>, call: bool) -> Effects {
    let mut scan = Scan::default();
    if call {
        let mut probe = st.clone();
        if probe.any(|t| matches!(t.tok, Tok::UserVar(_))) {
            scan.effects.user_var_write = true;
        }
    }
    scan_tokens(st, prev, &mut scan);
    scan.effects
}
