//! Session-state statements: transaction control (`BEGIN`, `START
//! TRANSACTION`, `COMMIT`, `ROLLBACK`, savepoints), `SET` in all its forms
//! and `USE`. All go to the primary; what matters is their [`Effects`].

use crate::lexer::{is_any_kw, is_kw, string_body, unquote_ident, Stmt, Tok};
use crate::scan::{is_causeway_name, split_sysvar, step, Scan};
use crate::{Autocommit, BeginTx, Classification, Effects, Reason};

fn tx(effects: Effects) -> Classification {
    Classification {
        route: crate::Route::Primary,
        reason: Reason::Transaction,
        effects,
    }
}

/// `START TRANSACTION ...` or `START REPLICA/SLAVE/GROUP_REPLICATION`.
pub(crate) fn start(st: &mut Stmt<'_>) -> Classification {
    match st.next().map(|t| t.tok) {
        Some(t) if is_kw(t, "TRANSACTION") => {
            let mut begin = BeginTx::default();
            let (mut ro, mut rw) = (false, false);
            let mut prev: Option<Tok<'_>> = None;
            for t in st.by_ref() {
                let t = t.tok;
                if prev.is_some_and(|p| is_kw(p, "READ")) {
                    ro |= is_kw(t, "ONLY");
                    rw |= is_kw(t, "WRITE");
                }
                if is_kw(t, "SNAPSHOT") {
                    begin.consistent_snapshot = true;
                }
                prev = Some(t);
            }
            begin.read_only = ro && !rw;
            tx(Effects {
                begin: Some(begin),
                implicit_commit: true,
                ..Effects::default()
            })
        }
        Some(t) if is_any_kw(t, &["REPLICA", "SLAVE", "GROUP_REPLICATION"]) => {
            let mut c = Classification::primary(Reason::Admin);
            c.effects.implicit_commit = true;
            c
        }
        _ => Classification::primary(Reason::Unknown),
    }
}

/// `BEGIN [WORK]` (but not MariaDB's `BEGIN NOT ATOMIC` compound statement).
pub(crate) fn begin(st: &mut Stmt<'_>) -> Classification {
    st.eat_kw("WORK");
    if st.peek().is_some() {
        return Classification::primary(Reason::Unknown);
    }
    tx(Effects {
        begin: Some(BeginTx::default()),
        implicit_commit: true,
        ..Effects::default()
    })
}

/// `COMMIT|ROLLBACK [WORK] [AND [NO] CHAIN] [[NO] RELEASE]` and `ROLLBACK
/// [WORK] TO [SAVEPOINT] sp`.
pub(crate) fn end_tx(st: &mut Stmt<'_>, rollback: bool) -> Classification {
    let mut fx = Effects::default();
    let mut prev: Option<Tok<'_>> = None;
    let mut to_savepoint = false;
    for t in st.by_ref() {
        let t = t.tok;
        let negated = prev.is_some_and(|p| is_kw(p, "NO"));
        if is_kw(t, "CHAIN") && !negated {
            fx.begin = Some(BeginTx {
                chained: true,
                ..BeginTx::default()
            });
        } else if is_kw(t, "RELEASE") && !negated {
            fx.disconnect = true;
        } else if is_kw(t, "TO") && rollback {
            to_savepoint = true;
        }
        prev = Some(t);
    }
    if to_savepoint {
        return savepoint();
    }
    if rollback {
        fx.rollback = true;
    } else {
        fx.commit = true;
    }
    tx(fx)
}

/// `SAVEPOINT sp`, `RELEASE SAVEPOINT sp`, `ROLLBACK TO sp`.
pub(crate) fn savepoint() -> Classification {
    tx(Effects {
        savepoint: true,
        ..Effects::default()
    })
}

/// `USE db`.
pub(crate) fn use_db(st: &mut Stmt<'_>) -> Classification {
    match st.next().and_then(|t| unquote_ident(t.tok)) {
        Some(db) => Classification {
            route: crate::Route::Primary,
            reason: Reason::Use,
            effects: Effects {
                use_db: Some(db),
                ..Effects::default()
            },
        },
        None => Classification::primary(Reason::Unknown),
    }
}

/// Value of `autocommit` from a single-token expression.
fn autocommit_value(t: Tok<'_>) -> Autocommit {
    let text = match t {
        Tok::Number(n) => n,
        Tok::Word(w) => w,
        Tok::Str(s) => string_body(s),
        _ => return Autocommit::Unknown,
    };
    if ["1", "ON", "TRUE"]
        .iter()
        .any(|v| v.eq_ignore_ascii_case(text))
    {
        Autocommit::On
    } else if ["0", "OFF", "FALSE"]
        .iter()
        .any(|v| v.eq_ignore_ascii_case(text))
    {
        Autocommit::Off
    } else {
        Autocommit::Unknown
    }
}

/// What one `SET` item assigns to.
enum Target<'a> {
    /// User variable.
    User,
    /// System variable name (without `@@` and scope) and whether it is
    /// global/persisted.
    Sys(&'a str, bool),
    /// `NAMES`, `CHARACTER SET`, `CHARSET`: session state, value follows.
    Charset,
}

/// Consume one expression up to a `,` at depth 0; returns the single token
/// when the expression is exactly one token (`-1` counts as unknown).
fn value<'a>(st: &mut Stmt<'a>, scan: &mut Scan) -> Option<Tok<'a>> {
    let mut depth = 0usize;
    let mut count = 0usize;
    let mut single = None;
    let mut prev = None;
    while let Some(t) = st.peek() {
        if depth == 0 && t == Tok::Punct(b',') {
            st.next();
            break;
        }
        st.next();
        match t {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            _ => {}
        }
        step(t, prev, st.peek(), scan);
        count += 1;
        single = Some(t);
        prev = Some(t);
    }
    if count == 1 {
        single
    } else {
        None
    }
}

/// `SET ...` in all its forms.
pub(crate) fn set(st: &mut Stmt<'_>) -> Classification {
    let mut c = Classification::primary(Reason::Set);
    let Some(first) = st.peek() else {
        return Classification::primary(Reason::Unknown);
    };
    if is_kw(first, "PASSWORD") || is_kw(first, "DEFAULT") {
        c.reason = Reason::Account;
        c.effects.implicit_commit = true;
        return c;
    }
    let mut scan = Scan::default();
    let mut global = false;
    while let Some(first_tok) = st.next() {
        let mut t = first_tok.tok;
        let mut start = first_tok.start;
        if is_any_kw(t, &["GLOBAL", "PERSIST", "PERSIST_ONLY"]) {
            global = true;
        } else if is_any_kw(t, &["SESSION", "LOCAL"]) {
            global = false;
        }
        if is_any_kw(
            t,
            &["GLOBAL", "PERSIST", "PERSIST_ONLY", "SESSION", "LOCAL"],
        ) {
            match st.next() {
                Some(n) => {
                    t = n.tok;
                    start = n.start;
                }
                None => break,
            }
        }
        if is_any_kw(t, &["TRANSACTION", "ROLE", "RESOURCE"]) {
            // Characteristics may contain commas: the rest is this item.
            scan.effects.set_session |= !global;
            // no scope: the next transaction only
            scan.effects.next_transaction |= is_kw(first_tok.tok, "TRANSACTION");
            st.drain();
            break;
        }
        let target = match t {
            Tok::UserVar(_) => Target::User,
            Tok::SysVar(v) => {
                let (scope, name) = split_sysvar(v);
                let g = ["global", "persist", "persist_only"]
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(scope));
                Target::Sys(name, g)
            }
            Tok::Word(_) if is_any_kw(t, &["NAMES", "CHARSET"]) => Target::Charset,
            Tok::Word(_) if is_kw(t, "CHARACTER") => {
                st.eat_kw("SET");
                Target::Charset
            }
            Tok::Word(w) => {
                // `causeway.x` / `component.var`: keep the whole dotted name.
                let mut end = start.saturating_add(w.len());
                while st.peek() == Some(Tok::Punct(b'.')) {
                    st.next();
                    match st.next() {
                        Some(n) => end = n.end,
                        None => break,
                    }
                }
                Target::Sys(st.lex.src().get(start..end).unwrap_or(w), global)
            }
            _ => {
                scan.effects.set_session = true;
                st.drain();
                break;
            }
        };
        if !matches!(target, Target::Charset)
            && !matches!(st.peek(), Some(Tok::Punct(b'=')) | Some(Tok::Assign))
        {
            // Not understood: assume it changed session state.
            scan.effects.set_session = true;
            st.drain();
            break;
        }
        if !matches!(target, Target::Charset) {
            st.next();
        }
        let v = value(st, &mut scan);
        match target {
            Target::User => scan.effects.user_var_write = true,
            Target::Charset => scan.effects.set_session = true,
            Target::Sys(_, true) => {}
            Target::Sys(name, false) if name.eq_ignore_ascii_case("autocommit") => {
                let ac = v.map_or(Autocommit::Unknown, autocommit_value);
                scan.effects.set_autocommit = Some(ac);
                scan.effects.implicit_commit |= ac != Autocommit::Off;
            }
            Target::Sys(name, false) if is_causeway_name(name) => {
                scan.effects.causeway_var = true;
            }
            Target::Sys(_, false) => scan.effects.set_session = true,
        }
    }
    c.effects = scan.effects;
    if c.effects.causeway_var {
        c.reason = Reason::Causeway;
    }
    c
}
