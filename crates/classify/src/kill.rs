//! Finds `KILL` statements in a query text, in every form MySQL would run
//! them: a plain `KILL [CONNECTION | QUERY] id`, inside an executable
//! comment (`/*!KILL 5*/`, `/*!80000 KILL 5*/`), as a later statement of a
//! multi-statement (`SELECT 1; KILL 5`), in a reading that depends on server
//! state (`NO_BACKSLASH_ESCAPES`, versioned comments), or as the literal
//! text of an SQL `PREPARE s FROM 'KILL 5'`.
//!
//! The proxy answers a plain `KILL` itself (owner-checked, with its own
//! connection ids) and refuses every other form: on the backend, `KILL`
//! takes a backend thread id and MySQL only checks the backend account, which
//! several causeway users may share.
//!
//! Texts that do not contain the word `kill` at all (the common case) are
//! settled by one byte scan without allocating.

use crate::lexer::{is_kw, unquote_string, LexOptions, Lexer, Stmt, Tok};

/// Where a `KILL` would run in a query text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillCheck {
    /// No statement of any reading of the text is a `KILL`.
    None,
    /// The whole text is one plain `KILL` statement (comments around it and
    /// a trailing `;` allowed, no executable comments): its tokens joined by
    /// single spaces, e.g. `KILL QUERY 5`.
    Whole(String),
    /// A `KILL` would run as part of something else; the text says where
    /// (for an error message: `KILL inside an executable comment`).
    Embedded(&'static str),
}

/// ASCII bytes that continue an unquoted identifier.
fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Whether the word `kill` (any case) occurs anywhere in `sql`, bounded by
/// non-identifier ASCII bytes (or the ends). Conservative: bytes >= 0x80
/// count as boundaries, quoting and comments are ignored.
pub(crate) fn has_kill_word(sql: &[u8]) -> bool {
    sql.iter().enumerate().any(|(i, &b)| {
        b | 0x20 == b'k'
            && sql
                .get(i..i.saturating_add(4))
                .is_some_and(|w| w.eq_ignore_ascii_case(b"kill"))
            && !i
                .checked_sub(1)
                .and_then(|j| sql.get(j))
                .copied()
                .is_some_and(ident_byte)
            && !sql
                .get(i.saturating_add(4))
                .copied()
                .is_some_and(ident_byte)
    })
}

/// Whether a non-ASCII byte is directly followed by `\` or a backtick. In
/// multi-byte client character sets (sjis, cp932, gbk, big5, gb18030) such
/// a byte can be the second half of one character, which changes where
/// strings and quoted identifiers end; the text then has no single reading.
/// Quotes, `;` and comment delimiters are never such second bytes.
fn charset_dependent(sql: &[u8]) -> bool {
    sql.windows(2)
        .any(|w| matches!(w, [a, b'\\' | b'`'] if *a >= 0x80))
}

/// What one reading of the text holds.
#[derive(Debug, Default)]
struct Reading {
    /// Non-empty statements.
    statements: usize,
    /// Index of every statement that starts with `KILL`.
    kills: Vec<usize>,
    /// A `PREPARE ... FROM '...'` whose text holds a `KILL`.
    prepared_kill: bool,
    /// Tokens of the first statement (for [`KillCheck::Whole`]).
    first: Vec<String>,
    /// Executable comment seen.
    executable: bool,
    /// Unterminated string, identifier or comment.
    unterminated: bool,
}

/// Whether the string literal after `FROM` in a `PREPARE` holds a `KILL`
/// in any reading (nested `PREPARE`s count as holding one: MySQL refuses
/// them, so nothing legitimate is lost).
fn prepare_holds_kill(st: &mut Stmt<'_>, nested: bool) -> bool {
    let mut after_from = false;
    for t in st.by_ref() {
        if after_from {
            if let Tok::Str(s) = t.tok {
                let body = unquote_string(s);
                if !has_kill_word(body.as_bytes()) {
                    return false;
                }
                return nested || check(body.as_bytes(), true) != KillCheck::None;
            }
            return false;
        }
        after_from = is_kw(t.tok, "FROM");
    }
    false
}

fn read(text: &str, opts: LexOptions, nested: bool) -> Reading {
    let mut r = Reading::default();
    let mut lex = Lexer::new(text, opts);
    loop {
        let mut st = Stmt::new(lex);
        if let Some(first) = st.next() {
            if r.statements == 0 {
                r.first
                    .push(text.get(first.start..first.end).unwrap_or("").to_string());
                let mut rest = st.clone();
                for t in rest.by_ref() {
                    r.first
                        .push(text.get(t.start..t.end).unwrap_or("").to_string());
                }
            }
            if is_kw(first.tok, "KILL") {
                r.kills.push(r.statements);
            } else if is_kw(first.tok, "PREPARE") && prepare_holds_kill(&mut st, nested) {
                r.prepared_kill = true;
            }
            r.statements += 1;
        }
        st.drain();
        lex = st.lex;
        let mut probe = lex.clone();
        if probe.next().is_none() {
            lex.flags = probe.flags;
            break;
        }
    }
    r.executable = lex.flags.executable;
    r.unterminated = lex.flags.unterminated;
    r
}

fn check(sql: &[u8], nested: bool) -> KillCheck {
    if !has_kill_word(sql) {
        return KillCheck::None;
    }
    if charset_dependent(sql) {
        return KillCheck::Embedded(
            "KILL in a statement whose quoting depends on the connection character set",
        );
    }
    // Lexing decisions depend only on ASCII bytes and on whether a byte is
    // >= 0x80, which a lossy conversion preserves.
    let text = String::from_utf8_lossy(sql);
    let mut readings = Vec::with_capacity(4);
    for include_versioned in [true, false] {
        for backslash_escapes in [true, false] {
            let opts = LexOptions {
                include_versioned,
                backslash_escapes,
            };
            readings.push(read(&text, opts, nested));
        }
    }
    if readings.iter().any(|r| r.prepared_kill) {
        return KillCheck::Embedded("KILL inside PREPARE");
    }
    let Some(default) = readings.first() else {
        return KillCheck::None;
    };
    if readings.iter().all(|r| r.kills.is_empty()) {
        return KillCheck::None;
    }
    if default.executable {
        return KillCheck::Embedded("KILL inside an executable comment");
    }
    if readings.iter().any(|r| r.statements > 1) {
        return KillCheck::Embedded("KILL in a multi-statement");
    }
    let whole = readings
        .iter()
        .all(|r| r.statements == 1 && r.kills == [0] && !r.unterminated);
    if whole {
        KillCheck::Whole(default.first.join(" "))
    } else {
        KillCheck::Embedded("KILL with an ambiguous or unterminated text")
    }
}

/// Where a `KILL` would run in `sql` (raw COM_QUERY or COM_STMT_PREPARE
/// bytes, any character set). Never panics; see [`KillCheck`].
pub fn kill_check(sql: &[u8]) -> KillCheck {
    check(sql, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(s: &str) -> KillCheck {
        KillCheck::Whole(s.to_string())
    }

    #[test]
    fn plain_kill_is_whole() {
        assert_eq!(kill_check(b"KILL 5"), whole("KILL 5"));
        assert_eq!(
            kill_check(b"  /* x */ kill query 7 ;"),
            whole("kill query 7")
        );
        assert_eq!(
            kill_check(b"KILL CONNECTION 9 -- bye\n"),
            whole("KILL CONNECTION 9")
        );
        assert_eq!(kill_check(b"KILL /* c */ 9"), whole("KILL 9"));
    }

    #[test]
    fn no_kill() {
        assert_eq!(kill_check(b"SELECT 1"), KillCheck::None);
        assert_eq!(kill_check(b"SELECT 'kill 5'"), KillCheck::None);
        assert_eq!(kill_check(b"SELECT skill, kill_me FROM t"), KillCheck::None);
        assert_eq!(kill_check(b"SELECT 1 /* KILL 5 */"), KillCheck::None);
        assert_eq!(kill_check(b"SELECT `kill` FROM t"), KillCheck::None);
        assert_eq!(
            kill_check(b"PREPARE s FROM 'SELECT 1'; KILLER"),
            KillCheck::None
        );
        assert_eq!(
            kill_check("SELECT 'caf\u{e9} kill'".as_bytes()),
            KillCheck::None
        );
        // latin1 bytes, not UTF-8
        assert_eq!(kill_check(b"SELECT 'caf\xe9 kill'"), KillCheck::None);
    }

    #[test]
    fn hidden_kills_are_embedded() {
        for sql in [
            &b"/*!KILL 5*/"[..],
            b"/*!80000 KILL 5*/",
            b"/*!80000 KILL QUERY 5 */",
            b"/*M!100000 KILL 5*/",
            b"SELECT 1; KILL 5",
            b"SELECT 1;KILL 5;",
            b"KILL 5; SELECT 1",
            b"SELECT 1; /*!KILL 5*/",
            b"SELECT 1; /*!99999 SELECT 2 */ KILL 5",
            b"SELECT '\\'; KILL 5; -- '",
            b"PREPARE s FROM 'KILL 5'",
            b"PREPARE s FROM \"KILL 5\"",
            b"PREPARE s FROM '/*!KILL 5*/'",
            b"SELECT '\xe3\x81\x82\\'; KILL 5; -- '",
            b"SELECT '\\'\x82\\'; KILL 5; -- '",
        ] {
            assert!(
                matches!(kill_check(sql), KillCheck::Embedded(_)),
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
    }

    #[test]
    fn kill_word_boundaries() {
        for (sql, yes) in [
            (&b"kill"[..], true),
            (b"KILL", true),
            (b" Kill;", true),
            (b"x(kill)", true),
            (b"skill", false),
            (b"kills", false),
            (b"kil", false),
            (b"$kill", false),
            (b"kill_", false),
            (b"\xc3kill\xa9", true),
        ] {
            assert_eq!(has_kill_word(sql), yes, "{}", String::from_utf8_lossy(sql));
        }
    }

    #[test]
    fn unterminated_kill_is_not_whole() {
        assert!(matches!(kill_check(b"KILL 5 'x"), KillCheck::Embedded(_)));
        assert!(matches!(
            kill_check("KILL '\u{e9}".as_bytes()),
            KillCheck::Embedded(_)
        ));
    }
}
