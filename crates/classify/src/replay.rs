//! What a replayable `SET` statement assigns, so the session layer can let
//! a later `SET` of the same variables replace an earlier one in its replay
//! list instead of keeping both.
//!
//! Only statements whose meaning cannot depend on anything replayed before
//! them qualify: every item assigns a session system variable (or `NAMES` /
//! `CHARACTER SET`) a plain literal — a number, an ASCII word (`ON`,
//! `DEFAULT`, `utf8mb4`) or a single-quoted ASCII string without
//! backslashes. No expressions, variables, double-quoted strings (an
//! identifier under `ANSI_QUOTES`), executable comments, or non-ASCII text
//! (its meaning depends on the character set in effect).

use crate::lexer::{is_any_kw, is_kw, LexOptions, Lexer, Stmt, Tok};
use crate::scan::split_sysvar;

/// The single literal token of a value, or `None` when the value is
/// anything else. Consumes up to and including a `,` at the end.
fn literal(st: &mut Stmt<'_>) -> Option<()> {
    let mut t = st.next()?.tok;
    if matches!(t, Tok::Punct(b'-' | b'+')) {
        t = st.next()?.tok;
        if !matches!(t, Tok::Number(_)) {
            return None;
        }
    }
    let ok = match t {
        Tok::Number(n) | Tok::Word(n) => n.is_ascii(),
        Tok::Str(s) => s.starts_with('\'') && s.is_ascii() && !s.contains('\\'),
        _ => false,
    };
    if !ok {
        return None;
    }
    match st.next().map(|t| t.tok) {
        None | Some(Tok::Punct(b',')) => Some(()),
        Some(_) => None,
    }
}

/// `NAMES cs [COLLATE c]`, `NAMES DEFAULT`, `CHARACTER SET cs`: the value.
fn charset_value(st: &mut Stmt<'_>) -> Option<()> {
    let plain = |t: Tok<'_>| match t {
        Tok::Word(w) => w.is_ascii(),
        Tok::Str(s) => s.starts_with('\'') && s.is_ascii() && !s.contains('\\'),
        _ => false,
    };
    if !plain(st.next()?.tok) {
        return None;
    }
    match st.next().map(|t| t.tok) {
        None | Some(Tok::Punct(b',')) => Some(()),
        Some(t) if is_kw(t, "COLLATE") => {
            if !plain(st.next()?.tok) {
                return None;
            }
            match st.next().map(|t| t.tok) {
                None | Some(Tok::Punct(b',')) => Some(()),
                Some(_) => None,
            }
        }
        Some(_) => None,
    }
}

/// The session variables a single `SET` statement assigns, lower-cased,
/// sorted and without duplicates (`names` stands for `NAMES`, `CHARSET` and
/// `CHARACTER SET`). `None` unless the text is exactly one `SET` statement
/// of the literal-only kind described in the module documentation.
pub fn set_targets(sql: &str) -> Option<Vec<String>> {
    let mut lex = Lexer::new(sql, LexOptions::default());
    let mut st = Stmt::new(lex.clone());
    if !is_kw(st.next()?.tok, "SET") {
        return None;
    }
    let mut names = Vec::new();
    while let Some(tok) = st.next() {
        let mut t = tok.tok;
        if is_any_kw(t, &["SESSION", "LOCAL"]) {
            t = st.next()?.tok;
        }
        let name = match t {
            Tok::SysVar(v) => {
                let (scope, name) = split_sysvar(v);
                if !(scope.is_empty()
                    || scope.eq_ignore_ascii_case("session")
                    || scope.eq_ignore_ascii_case("local"))
                {
                    return None;
                }
                name.to_ascii_lowercase()
            }
            Tok::Word(_) if is_any_kw(t, &["NAMES", "CHARSET"]) => "names".to_string(),
            Tok::Word(_) if is_kw(t, "CHARACTER") => {
                if !st.eat_kw("SET") {
                    return None;
                }
                "names".to_string()
            }
            Tok::Word(w)
                if !is_any_kw(
                    t,
                    &[
                        "GLOBAL",
                        "PERSIST",
                        "PERSIST_ONLY",
                        "TRANSACTION",
                        "ROLE",
                        "RESOURCE",
                        "PASSWORD",
                        "DEFAULT",
                    ],
                ) =>
            {
                w.to_ascii_lowercase()
            }
            _ => return None,
        };
        if name == "names" {
            charset_value(&mut st)?;
        } else {
            if !matches!(st.next()?.tok, Tok::Punct(b'=') | Tok::Assign) {
                return None;
            }
            literal(&mut st)?;
        }
        names.push(name);
    }
    // exactly one statement, lexed the same way in every reading
    lex = st.lex;
    if lex.next().is_some() || lex.flags != crate::lexer::LexFlags::default() {
        return None;
    }
    if names.is_empty() || names.iter().any(|n| n.starts_with("causeway")) {
        return None;
    }
    names.sort();
    names.dedup();
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sql: &str) -> Option<Vec<&'static str>> {
        set_targets(sql).map(|v| {
            v.into_iter()
                .map(|s| &*Box::leak(s.into_boxed_str()))
                .collect()
        })
    }

    #[test]
    fn literal_sets_have_targets() {
        assert_eq!(t("SET sql_mode = ''"), Some(vec!["sql_mode"]));
        assert_eq!(
            t("SET @@session.Time_Zone = '+00:00', SESSION sql_mode='ANSI';"),
            Some(vec!["sql_mode", "time_zone"])
        );
        assert_eq!(
            t("SET NAMES utf8mb4 COLLATE utf8mb4_bin"),
            Some(vec!["names"])
        );
        assert_eq!(t("SET CHARACTER SET latin1"), Some(vec!["names"]));
        assert_eq!(t("set @@local.x = -1, y := DEFAULT"), Some(vec!["x", "y"]));
    }

    #[test]
    fn anything_else_has_none() {
        for sql in [
            "SET sql_mode = CONCAT(@@sql_mode, ',ANSI')",
            "SET x = @@y",
            "SET x = \"a\"",
            "SET x = 'a\\'b'",
            "SET x = 'é'",
            "SET @u = 1",
            "SET GLOBAL x = 1",
            "SET @@global.x = 1",
            "SET x = 1, GLOBAL y = 2",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET ROLE ALL",
            "SET x = 1; SET y = 2",
            "SET /*!80000 x = 1, */ y = 2",
            "SET x = 1 + 1",
            "SET x = 'é",
            "SET @@causeway.token = ''",
            "SET",
            "SELECT 1",
        ] {
            assert_eq!(set_targets(sql), None, "{sql}");
        }
    }
}
