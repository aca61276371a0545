//! Statement digests: the normalised text of a query (its "shape") and a
//! 64-bit hash of it, built on the classifier's own lexer (no second
//! tokenizer), for per-digest statistics and the decision log.
//!
//! Normalisation, token by token:
//!
//! * literals become `?`: strings (with their `_charset`, `N`, `X`, `B`
//!   introducers), numbers (with a unary sign), `TRUE`/`FALSE`, hex and bit
//!   values, the quoted host of an account name (`'u'@'h'` is `? @ ?`);
//!   placeholders stay `?`;
//! * an `IN (...)` list of literals, of any length, becomes `IN (...)`;
//! * a repeated `VALUES` tuple identical to the previous one is dropped:
//!   `VALUES (?, ?), (?, ?)` and `VALUES (?, ?)` are one digest;
//! * comments are stripped: the lexer skips them, so causeway's own hints
//!   (`/* causeway token=... */`) and optimizer hints (`/*+ ... */`) are not
//!   part of the text; executable comments (`/*! ... */`) are SQL;
//! * whitespace is one space between tokens by fixed rules (none after `(`
//!   and `.`, none before `,` `)` `.` `;`, none between a function or table
//!   name and `(`); keywords are upper case, a known built-in function
//!   called with `(` too; identifiers keep their case and backticks;
//! * with `NO_BACKSLASH_ESCAPES` a backslash does not escape the quote in a
//!   string literal, as the server reads it.
//!
//! The result is idempotent (`digest(digest(s).text) == digest(s)`) and never
//! holds a string or number literal of the input.

use crate::funcs;
use crate::lexer::{LexOptions, Lexer, Tok, Token};

/// A statement's digest: the hash of its normalised text, and the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    /// FNV-1a 64 of [`Digest::text`].
    pub hash: u64,
    /// The normalised statement.
    pub text: String,
}

/// The digest of `sql` (one or more `;`-separated statements).
/// `no_backslash_escapes` is the session's `NO_BACKSLASH_ESCAPES` SQL mode.
pub fn digest(sql: &str, no_backslash_escapes: bool) -> Digest {
    let mut text = String::with_capacity(sql.len().min(1024));
    let hash = digest_into(sql, no_backslash_escapes, &mut text);
    Digest { hash, text }
}

/// Writes the normalised text of `sql` into `out` (cleared first; lets the
/// caller reuse one buffer) and returns its hash.
pub fn digest_into(sql: &str, no_backslash_escapes: bool, out: &mut String) -> u64 {
    out.clear();
    let opts = LexOptions {
        include_versioned: true,
        backslash_escapes: !no_backslash_escapes,
    };
    let mut w = Writer {
        out,
        prev: Kind::Start,
        prev_end: 0,
        op: [0; 3],
        op_len: 0,
        undo: (0, Kind::Start),
        sign: None,
        introducer: None,
        frames: Vec::new(),
        values_depth: None,
        last_closed: None,
    };
    for t in Lexer::new(sql, opts) {
        w.token(t);
    }
    let trimmed = w.out.trim_end_matches([';', ' ']).len();
    w.out.truncate(trimmed);
    fnv1a(w.out.as_bytes())
}

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What the last emitted token was, for spacing and sign folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Start,
    Keyword,
    Ident,
    Value,
    /// A user or system variable (a `.` after it would join its name).
    Var,
    Open,
    Close,
    Dot,
    Comma,
    Op,
    Semi,
}

/// An open parenthesis in the output.
struct Frame {
    /// Index of the `(` in the output.
    open: usize,
    /// Preceded by `IN`.
    after_in: bool,
}

struct Writer<'o> {
    out: &'o mut String,
    prev: Kind,
    /// End (in the source) of the last token, to join `<` `=` into `<=`.
    prev_end: usize,
    /// The operator characters emitted so far in the current run.
    op: [u8; 3],
    op_len: usize,
    /// Output length and kind before the last token (to take it back).
    undo: (usize, Kind),
    /// The last token was a unary sign (its undo state).
    sign: Option<(usize, Kind)>,
    /// The last token was a word that may introduce a string (`_utf8mb4`,
    /// `N`, `X`, `B`): its source end and undo state.
    introducer: Option<(usize, (usize, Kind))>,
    frames: Vec<Frame>,
    /// Depth of the parentheses at which `VALUES` was seen.
    values_depth: Option<usize>,
    /// The last group closed: its depth and output range.
    last_closed: Option<(usize, usize, usize)>,
}

/// Operators written without inner spaces when their characters are
/// adjacent in the source.
const OPS: &[&[u8]] = &[
    b"<=", b">=", b"<>", b"!=", b"<=>", b"||", b"&&", b"<<", b">>", b"->", b"->>",
];

impl Writer<'_> {
    fn token(&mut self, t: Token<'_>) {
        let sign = self.sign.take();
        let introducer = self.introducer.take();
        match t.tok {
            Tok::Number(_) => {
                if let Some(undo) = sign {
                    self.take_back(undo);
                }
                self.emit(Kind::Value, "?", t.end);
            }
            Tok::Str(_) => {
                if let Some((end, undo)) = introducer {
                    if end == t.start {
                        self.take_back(undo);
                    }
                }
                self.emit(Kind::Value, "?", t.end);
            }
            Tok::Word(w) => self.word(w, t),
            Tok::Quoted(q) => {
                self.space_for(Kind::Ident);
                self.out.push('`');
                self.out.push_str(q);
                self.out.push('`');
                self.done(Kind::Ident, t.end);
            }
            Tok::UserVar(v)
                if self.prev == Kind::Value
                    && self.prev_end == t.start
                    && v.starts_with(['\'', '"']) =>
            {
                // the host of an account name, `'user'@'host'` (right after
                // the user, a value): a literal
                self.emit(Kind::Var, "@", t.start.saturating_add(1));
                self.emit(Kind::Value, "?", t.end);
            }
            Tok::UserVar(v) => {
                self.space_for(Kind::Var);
                self.out.push('@');
                self.out.push_str(v);
                self.done(Kind::Var, t.end);
            }
            Tok::SysVar(v) => {
                self.space_for(Kind::Var);
                self.out.push_str("@@");
                self.out.push_str(v);
                self.done(Kind::Var, t.end);
            }
            Tok::Assign => {
                self.emit(Kind::Op, ":=", t.end);
                self.op_len = 0;
            }
            Tok::Punct(c) => self.punct(c, t, sign.is_some()),
        }
    }

    fn word(&mut self, w: &str, t: Token<'_>) {
        if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") {
            self.emit(Kind::Value, "?", t.end);
            return;
        }
        let undo = (self.out.len(), self.prev);
        if w.eq_ignore_ascii_case("NULL") {
            self.emit(Kind::Value, "NULL", t.end);
            return;
        }
        let keyword = is_keyword(w);
        let kind = if keyword { Kind::Keyword } else { Kind::Ident };
        self.space_for(kind);
        let at = self.out.len();
        self.out.push_str(w);
        if keyword {
            if let Some(s) = self.out.get_mut(at..) {
                s.make_ascii_uppercase();
            }
            if w.eq_ignore_ascii_case("VALUES") || w.eq_ignore_ascii_case("VALUE") {
                self.values_depth = Some(self.frames.len());
            }
        }
        self.done(kind, t.end);
        let b = w.as_bytes();
        if b.first() == Some(&b'_') || (b.len() == 1 && matches!(b[0] | 0x20, b'n' | b'x' | b'b')) {
            self.introducer = Some((t.end, undo));
        }
    }

    fn punct(&mut self, c: u8, t: Token<'_>, after_sign: bool) {
        match c {
            b'(' => {
                // a known built-in called here: upper case
                if self.prev == Kind::Ident {
                    let name = self.out.get(self.undo.0..).unwrap_or("").trim_start();
                    if funcs::is_pure(name) {
                        let from = self.out.len().saturating_sub(name.len());
                        if let Some(s) = self.out.get_mut(from..) {
                            s.make_ascii_uppercase();
                        }
                    }
                }
                let after_in = self.prev == Kind::Keyword && self.last_word_is("IN");
                self.space_for(Kind::Open);
                self.frames.push(Frame {
                    open: self.out.len(),
                    after_in,
                });
                self.out.push('(');
                self.done(Kind::Open, t.end);
            }
            b')' => self.close(t.end),
            b',' => self.emit(Kind::Comma, ",", t.end),
            b'.' => self.emit(Kind::Dot, ".", t.end),
            b';' => {
                self.frames.clear();
                self.values_depth = None;
                self.last_closed = None;
                self.emit(Kind::Semi, ";", t.end);
            }
            b'?' => self.emit(Kind::Value, "?", t.end),
            _ => {
                let joined = self.prev == Kind::Op
                    && self.prev_end == t.start
                    && self.op_len < 3
                    && self.op_len > 0
                    && {
                        let mut run = self.op;
                        run[self.op_len] = c;
                        OPS.contains(&&run[..=self.op_len])
                    };
                let unary = matches!(c, b'-' | b'+')
                    && !matches!(
                        self.prev,
                        Kind::Ident | Kind::Value | Kind::Var | Kind::Close
                    )
                    && !after_sign;
                let undo = (self.out.len(), self.prev);
                if joined {
                    self.out.push(char::from(c));
                    self.op[self.op_len] = c;
                    self.op_len += 1;
                } else {
                    self.space_for(Kind::Op);
                    self.out.push(char::from(c));
                    self.op = [c, 0, 0];
                    self.op_len = 1;
                }
                let keep_op = (self.op, self.op_len);
                self.done(Kind::Op, t.end);
                (self.op, self.op_len) = keep_op;
                if unary && !joined {
                    self.sign = Some(undo);
                }
            }
        }
    }

    /// A `)`: folds an `IN` list of literals and a repeated `VALUES` tuple.
    fn close(&mut self, end: usize) {
        let Some(frame) = self.frames.pop() else {
            self.emit(Kind::Close, ")", end);
            return;
        };
        let content_start = frame.open + 1;
        let content = self.out.get(content_start..).unwrap_or("");
        if frame.after_in && !content.is_empty() && content.bytes().all(|b| b" ?,.".contains(&b)) {
            self.out.truncate(content_start);
            self.out.push_str("...");
        }
        self.out.push(')');
        self.done(Kind::Close, end);
        let depth = self.frames.len();
        let here = (frame.open, self.out.len());
        if self.values_depth == Some(depth) {
            if let Some((d, s2, e2)) = self.last_closed {
                let between = self.out.get(e2..frame.open);
                let same = self.out.get(s2..e2) == self.out.get(here.0..here.1);
                if d == depth && between == Some(", ") && same {
                    self.out.truncate(e2);
                    return;
                }
            }
        }
        self.last_closed = Some((depth, here.0, here.1));
    }

    /// Whether the last emitted word is `kw`.
    fn last_word_is(&self, kw: &str) -> bool {
        self.out
            .get(self.undo.0..)
            .is_some_and(|s| s.trim_start().eq_ignore_ascii_case(kw))
    }

    /// Removes the last token.
    fn take_back(&mut self, (len, kind): (usize, Kind)) {
        self.out.truncate(len);
        self.prev = kind;
    }

    fn emit(&mut self, kind: Kind, text: &str, end: usize) {
        self.space_for(kind);
        self.out.push_str(text);
        self.done(kind, end);
    }

    /// Writes the space (or none) that goes before a token of `kind`, and
    /// remembers how to take the token back.
    fn space_for(&mut self, kind: Kind) {
        self.undo = (self.out.len(), self.prev);
        let none = (matches!(kind, Kind::Comma | Kind::Close | Kind::Dot | Kind::Semi)
            && !(kind == Kind::Dot && self.prev == Kind::Var))
            || matches!(self.prev, Kind::Start | Kind::Open | Kind::Dot)
            || (kind == Kind::Open && self.prev == Kind::Ident);
        if !none {
            self.out.push(' ');
        }
    }

    fn done(&mut self, kind: Kind, end: usize) {
        self.prev = kind;
        self.prev_end = end;
        self.op_len = 0;
    }
}

/// Keywords written in upper case (sorted, upper case; `tests::sorted`).
const KEYWORDS: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BINARY",
    "BY",
    "CALL",
    "CASE",
    "CHANGE",
    "COLUMN",
    "COMMIT",
    "CREATE",
    "CROSS",
    "DATABASE",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "DIV",
    "DO",
    "DROP",
    "DUPLICATE",
    "ELSE",
    "END",
    "ESCAPE",
    "EXCEPT",
    "EXISTS",
    "EXPLAIN",
    "FOR",
    "FORCE",
    "FROM",
    "FULL",
    "GLOBAL",
    "GROUP",
    "HAVING",
    "IF",
    "IGNORE",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCK",
    "MOD",
    "MODE",
    "NATURAL",
    "NOT",
    "NOWAIT",
    "OF",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRIMARY",
    "READ",
    "REGEXP",
    "RELEASE",
    "RENAME",
    "REPLACE",
    "RIGHT",
    "RLIKE",
    "ROLLBACK",
    "ROW",
    "ROWS",
    "SAVEPOINT",
    "SELECT",
    "SESSION",
    "SET",
    "SHARE",
    "SHOW",
    "SKIP",
    "STRAIGHT_JOIN",
    "TABLE",
    "TABLES",
    "THEN",
    "TO",
    "TRANSACTION",
    "TRUNCATE",
    "UNION",
    "UNIQUE",
    "UNLOCK",
    "UPDATE",
    "USE",
    "USING",
    "VALUE",
    "VALUES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "XOR",
];

fn is_keyword(w: &str) -> bool {
    w.len() <= 13 && KEYWORDS.binary_search_by(|k| funcs::cmp_ci(k, w)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted() {
        for w in KEYWORDS.windows(2) {
            assert!(w[0] < w[1], "{} >= {}", w[0], w[1]);
        }
    }

    #[test]
    fn keywords() {
        assert!(is_keyword("select"));
        assert!(is_keyword("Straight_Join"));
        assert!(!is_keyword("sbtest1"));
    }
}
