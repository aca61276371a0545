//! The proxy's own commands: `SELECT @@causeway.x [AS a], ...`,
//! `SET [SESSION] @@causeway.x = v, ...`, `SHOW CAUSEWAY BACKENDS|RULES|CACHE|DIGESTS`,
//! `RESET CAUSEWAY DIGESTS` and the
//! `key=value` options of a leading `/* causeway ... */` comment. These
//! functions allocate; call them only for statements whose
//! [`crate::Effects::causeway_var`] is set (or, for the comment, when the
//! text starts with a comment).

use crate::lexer::{is_kw, unquote_ident, unquote_string, LexOptions, Lexer, Stmt, Tok};
use crate::scan::{is_causeway_name, split_sysvar};

/// One item of a `SELECT @@causeway.x AS col` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetItem {
    /// Variable name after `causeway.`, lower-cased (`last_route`).
    pub name: String,
    /// Result column name: the alias, or the expression as written
    /// (`@@causeway.last_route`), like MySQL names it.
    pub column: String,
}

/// A command addressed to the proxy rather than to MySQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CausewayCommand {
    /// `SELECT @@causeway.a, @@session.causeway.b AS x`.
    Get(Vec<GetItem>),
    /// `SET @@causeway.a = 'v', SESSION causeway.b = 1`: (name after
    /// `causeway.`, lower-cased; value with string quotes removed, numbers and
    /// bare words as written).
    Set(Vec<(String, String)>),
    /// `SHOW CAUSEWAY BACKENDS`.
    ShowBackends,
    /// `SHOW CAUSEWAY RULES`.
    ShowRules,
    /// `SHOW CAUSEWAY CACHE`.
    ShowCache,
    /// `SHOW CAUSEWAY DIGESTS`.
    ShowDigests,
    /// `RESET CAUSEWAY DIGESTS`.
    ResetDigests,
}

/// The causeway variable name in `@@[session.]causeway.x`, lower-cased.
fn causeway_sysvar(v: &str) -> Option<String> {
    let (scope, name) = split_sysvar(v);
    if !(scope.is_empty() || scope.eq_ignore_ascii_case("session")) || !is_causeway_name(name) {
        return None;
    }
    let rest = name.get("causeway.".len()..).filter(|r| !r.is_empty())?;
    Some(rest.to_ascii_lowercase())
}

/// Recognise a causeway command. The text must be exactly one statement
/// (a trailing `;` is fine); anything else is `None` and goes through
/// [`crate::classify`] like any other statement. `SET` must assign only
/// causeway variables with session scope and literal values.
pub fn causeway_command(sql: &str) -> Option<CausewayCommand> {
    let mut lex = Lexer::new(sql, LexOptions::default());
    let mut st = Stmt::new(lex.clone());
    let first = st.next()?.tok;
    // Exactly one statement.
    let mut rest = st.clone();
    rest.drain();
    lex = rest.lex;
    if lex.next().is_some() || lex.flags.unterminated {
        return None;
    }
    if is_kw(first, "SHOW") {
        let a = st.next()?.tok;
        let b = st.next()?.tok;
        if !is_kw(a, "CAUSEWAY") || st.next().is_some() {
            return None;
        }
        return if is_kw(b, "BACKENDS") {
            Some(CausewayCommand::ShowBackends)
        } else if is_kw(b, "RULES") {
            Some(CausewayCommand::ShowRules)
        } else if is_kw(b, "CACHE") {
            Some(CausewayCommand::ShowCache)
        } else if is_kw(b, "DIGESTS") {
            Some(CausewayCommand::ShowDigests)
        } else {
            None
        };
    }
    if is_kw(first, "RESET") {
        let a = st.next()?.tok;
        let b = st.next()?.tok;
        let whole = is_kw(a, "CAUSEWAY") && is_kw(b, "DIGESTS") && st.next().is_none();
        return whole.then_some(CausewayCommand::ResetDigests);
    }
    if is_kw(first, "SELECT") {
        return get(&mut st).map(CausewayCommand::Get);
    }
    if is_kw(first, "SET") {
        return set(&mut st).map(CausewayCommand::Set);
    }
    None
}

fn get(st: &mut Stmt<'_>) -> Option<Vec<GetItem>> {
    let mut items = Vec::new();
    loop {
        let t = st.next()?;
        let Tok::SysVar(v) = t.tok else { return None };
        let name = causeway_sysvar(v)?;
        let mut column = st.lex.src().get(t.start..t.end).unwrap_or(v).to_string();
        let mut next = st.next().map(|t| t.tok);
        if next.is_some_and(|n| is_kw(n, "AS")) {
            next = st.next().map(|t| t.tok);
            column = unquote_ident(next?)?;
            next = st.next().map(|t| t.tok);
        } else if let Some(n @ (Tok::Word(_) | Tok::Quoted(_) | Tok::Str(_))) = next {
            column = unquote_ident(n)?;
            next = st.next().map(|t| t.tok);
        }
        items.push(GetItem { name, column });
        match next {
            None => return Some(items),
            Some(Tok::Punct(b',')) => {}
            Some(_) => return None,
        }
    }
}

fn set(st: &mut Stmt<'_>) -> Option<Vec<(String, String)>> {
    let mut items = Vec::new();
    loop {
        let mut t = st.next()?.tok;
        if is_kw(t, "SESSION") || is_kw(t, "LOCAL") {
            t = st.next()?.tok;
        }
        let name = match t {
            Tok::SysVar(v) => causeway_sysvar(v)?,
            Tok::Word(w) if w.eq_ignore_ascii_case("causeway") => {
                if st.next()?.tok != Tok::Punct(b'.') {
                    return None;
                }
                match st.next()?.tok {
                    Tok::Word(n) | Tok::Number(n) => n.to_ascii_lowercase(),
                    Tok::Quoted(q) => q.replace("``", "`").to_ascii_lowercase(),
                    _ => return None,
                }
            }
            _ => return None,
        };
        if !matches!(st.next()?.tok, Tok::Punct(b'=') | Tok::Assign) {
            return None;
        }
        let value = match st.next()?.tok {
            Tok::Str(s) => unquote_string(s),
            Tok::Number(n) | Tok::Word(n) => n.to_string(),
            Tok::Punct(b'-') => match st.next()?.tok {
                Tok::Number(n) => format!("-{n}"),
                _ => return None,
            },
            _ => return None,
        };
        items.push((name, value));
        match st.next().map(|t| t.tok) {
            None => return Some(items),
            Some(Tok::Punct(b',')) => {}
            Some(_) => return None,
        }
    }
}

/// Options from a leading `/* causeway k=v k2=v2 */` comment: the first
/// comment before any SQL token, if its first word is `causeway`
/// (case-insensitive). Pairs are whitespace-separated; a value runs to the
/// next whitespace (so a GTID set like `uuid:1-5,uuid2:7` is one value); a
/// word without `=` yields an empty value. `None` when there is no such
/// comment.
pub fn leading_comment_options(sql: &str) -> Option<Vec<(String, String)>> {
    let body = sql.trim_start().strip_prefix("/*")?;
    if body.starts_with('!') || body.starts_with('+') {
        return None;
    }
    let body = body.get(..body.find("*/")?)?;
    let mut words = body.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("causeway") {
        return None;
    }
    Some(
        words
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (w.to_string(), String::new()),
            })
            .collect(),
    )
}
