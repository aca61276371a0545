//! Allocation-free MySQL lexer: owns comment skipping, quoting rules and
//! statement splitting for every other module of the crate.
//!
//! The lexer never fails. Unterminated strings, identifiers or comments are
//! recorded in [`LexFlags::unterminated`] and the classifier treats the
//! statement as not understood (primary).
//!
//! Two details of MySQL lexing depend on server state the proxy does not
//! know, so they are options, and the classifier runs every variant that the
//! text actually exercises (see [`LexFlags`]):
//!
//! * versioned executable comments `/*!50700 ... */` (and MariaDB's
//!   `/*M!100100 ... */`) are executed only by servers at least that new;
//! * backslash escapes inside string literals are disabled by
//!   `NO_BACKSLASH_ESCAPES`.
//!
//! Non-versioned executable comments `/*! ... */` are always SQL. Optimizer
//! hints `/*+ ... */` and ordinary comments (`/* */`, `-- `, `#`) are
//! skipped.

/// How to lex the parts of MySQL syntax that depend on server state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LexOptions {
    /// Treat the content of versioned executable comments as SQL.
    pub include_versioned: bool,
    /// A backslash inside a string literal escapes the next character.
    pub backslash_escapes: bool,
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions {
            include_versioned: true,
            backslash_escapes: true,
        }
    }
}

/// Things the lexer noticed while lexing (sticky; never reset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LexFlags {
    /// A versioned executable comment was seen.
    pub versioned: bool,
    /// A backslash occurred inside a string literal.
    pub backslash: bool,
    /// Any executable comment (versioned or not) was seen.
    pub executable: bool,
    /// A string, quoted identifier or comment was not terminated.
    pub unterminated: bool,
}

/// One significant token; comments and whitespace never appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    /// Unquoted word: keyword or identifier (`SELECT`, `t1`, `_utf8mb4`).
    Word(&'a str),
    /// Backtick-quoted identifier, raw text between the backticks.
    Quoted(&'a str),
    /// String literal including its quotes (`'..'` or `".."`).
    Str(&'a str),
    /// Numeric literal (or an identifier starting with a digit).
    Number(&'a str),
    /// User variable, text after `@` (may itself be quoted: `'x'`).
    UserVar(&'a str),
    /// System variable, text after `@@` (`session.autocommit`).
    SysVar(&'a str),
    /// The assignment operator `:=`.
    Assign,
    /// Any other single ASCII character (`(`, `,`, `;`, `=` ...).
    Punct(u8),
}

/// A token with its byte range in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub tok: Tok<'a>,
    pub start: usize,
    pub end: usize,
}

/// Iterator over the significant tokens of a whole input (all statements).
#[derive(Clone, Debug)]
pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    in_exec: bool,
    opts: LexOptions,
    pub flags: LexFlags,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str, opts: LexOptions) -> Self {
        Lexer {
            src,
            pos: 0,
            in_exec: false,
            opts,
            flags: LexFlags::default(),
        }
    }

    pub fn src(&self) -> &'a str {
        self.src
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    /// The byte at `i`, or 0 past the end.
    fn at(&self, i: usize) -> u8 {
        self.bytes().get(i).copied().unwrap_or(0)
    }

    /// Source text `a..b`; empty if that is not a valid char range (never
    /// happens for token bounds, which always sit on ASCII bytes or the
    /// ends of the input).
    fn slice(&self, a: usize, b: usize) -> &'a str {
        self.src.get(a..b).unwrap_or("")
    }

    /// Position of `pat` at or after `self.pos`, as an absolute index.
    fn find_from(&self, pat: &str) -> Option<usize> {
        let rest = self.src.get(self.pos..)?;
        rest.find(pat).map(|i| self.pos.saturating_add(i))
    }

    /// Skip a block comment whose `/*` is at `self.pos`: to just after the
    /// next `*/` (not overlapping the opener: `/*/` is unterminated), or to
    /// the end (unterminated).
    fn skip_block_comment(&mut self) {
        self.pos = self.pos.saturating_add(2).min(self.src.len());
        match self.find_from("*/") {
            Some(i) => self.pos = i.saturating_add(2),
            None => {
                self.pos = self.src.len();
                self.flags.unterminated = true;
            }
        }
    }

    fn skip_line(&mut self) {
        match self.find_from("\n") {
            Some(i) => self.pos = i.saturating_add(1),
            None => self.pos = self.src.len(),
        }
    }

    /// Scan a quoted run starting at the opening quote at `self.pos`.
    /// Returns false (and sets `unterminated`, position at the end) when
    /// the closing quote is missing. The position always ends on an ASCII
    /// byte boundary or at the end of the input: quotes are ASCII, and an
    /// escaped byte is skipped only up to the next byte, which a quote can
    /// never be part of (UTF-8 continuation bytes are >= 0x80).
    fn skip_quoted(&mut self, quote: u8, backslash: bool) -> bool {
        let b = self.bytes();
        let mut i = self.pos.saturating_add(1);
        while let Some(&c) = b.get(i) {
            if c == b'\\' && backslash {
                self.flags.backslash = true;
                if self.opts.backslash_escapes {
                    i = i.saturating_add(2);
                    continue;
                }
            }
            if c == quote {
                if b.get(i.saturating_add(1)) == Some(&quote) {
                    i = i.saturating_add(2);
                    continue;
                }
                self.pos = i.saturating_add(1);
                return true;
            }
            i = i.saturating_add(1);
        }
        self.pos = b.len();
        self.flags.unterminated = true;
        false
    }

    /// Advance over bytes for which `more` holds.
    fn skip_while(&mut self, more: impl Fn(u8) -> bool) {
        while self.bytes().get(self.pos).is_some_and(|&c| more(c)) {
            self.pos += 1;
        }
    }

    /// Skip whitespace and comments; handles executable-comment delimiters.
    fn skip_trivia(&mut self) {
        loop {
            self.skip_while(|c| c.is_ascii_whitespace());
            let b = self.bytes();
            let c = self.at(self.pos);
            let n = self.at(self.pos + 1);
            if self.in_exec && c == b'*' && n == b'/' {
                self.in_exec = false;
                self.pos += 2;
            } else if c == b'/' && n == b'*' {
                let third = self.at(self.pos + 2);
                let mariadb = third == b'M' && self.at(self.pos + 3) == b'!';
                if (third == b'!' || mariadb) && !self.in_exec {
                    self.flags.executable = true;
                    let mut p = self.pos + if mariadb { 4 } else { 3 };
                    let digits_start = p;
                    while p - digits_start < 6 && b.get(p).is_some_and(u8::is_ascii_digit) {
                        p += 1;
                    }
                    let versioned = p > digits_start || mariadb;
                    if versioned {
                        self.flags.versioned = true;
                    }
                    if versioned && !self.opts.include_versioned {
                        self.skip_block_comment();
                    } else {
                        self.in_exec = true;
                        self.pos = p;
                    }
                } else {
                    // Ordinary comment or optimizer hint `/*+ ... */`.
                    self.skip_block_comment();
                }
            } else if c == b'#' {
                self.skip_line();
            } else if c == b'-' && n == b'-' {
                let after = self.at(self.pos + 2);
                // MySQL needs whitespace/control (or end of input) after `--`.
                if after <= b' ' {
                    self.skip_line();
                } else {
                    return;
                }
            } else {
                return;
            }
        }
    }

    fn lex_one(&mut self) -> Option<Token<'a>> {
        self.skip_trivia();
        let start = self.pos;
        let Some(&c) = self.bytes().get(start) else {
            // MySQL rejects an executable comment missing its `*/`.
            if self.in_exec {
                self.flags.unterminated = true;
            }
            return None;
        };
        let tok = match c {
            b'\'' | b'"' => {
                self.skip_quoted(c, true);
                Tok::Str(self.slice(start, self.pos))
            }
            b'`' => {
                let closed = self.skip_quoted(b'`', false);
                let end = if closed {
                    self.pos.saturating_sub(1)
                } else {
                    self.pos
                };
                Tok::Quoted(self.slice(start + 1, end))
            }
            b'@' => {
                if self.at(start + 1) == b'@' {
                    self.pos = start + 2;
                    loop {
                        let ch = self.at(self.pos);
                        if is_word_byte(ch) || ch == b'.' {
                            self.pos += 1;
                        } else if ch == b'`' {
                            self.skip_quoted(b'`', false);
                        } else {
                            break;
                        }
                    }
                    Tok::SysVar(self.slice(start + 2, self.pos))
                } else {
                    self.pos = start + 1;
                    let q = self.at(self.pos);
                    if q == b'\'' || q == b'"' || q == b'`' {
                        self.skip_quoted(q, q != b'`');
                    } else {
                        self.skip_while(|b| is_word_byte(b) || b == b'.');
                    }
                    Tok::UserVar(self.slice(start + 1, self.pos))
                }
            }
            b':' if self.at(start + 1) == b'=' => {
                self.pos += 2;
                Tok::Assign
            }
            b'0'..=b'9' => {
                self.skip_while(|b| is_word_byte(b) || b == b'.');
                Tok::Number(self.slice(start, self.pos))
            }
            _ if is_word_byte(c) => {
                self.skip_while(is_word_byte);
                Tok::Word(self.slice(start, self.pos))
            }
            _ => {
                self.pos += 1;
                Tok::Punct(c)
            }
        };
        Some(Token {
            tok,
            start,
            end: self.pos,
        })
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.lex_one()
    }
}

/// Tokens of one statement: stops (without yielding) at `;` or end of input.
#[derive(Clone, Debug)]
pub(crate) struct Stmt<'a> {
    pub lex: Lexer<'a>,
    done: bool,
    first_start: Option<usize>,
    last_end: usize,
}

impl<'a> Stmt<'a> {
    pub fn new(lex: Lexer<'a>) -> Self {
        Stmt {
            lex,
            done: false,
            first_start: None,
            last_end: 0,
        }
    }

    /// Source text from the first to the last token consumed so far.
    pub fn text(&self) -> &'a str {
        match self.first_start {
            Some(s) => self.lex.slice(s, self.last_end),
            None => "",
        }
    }

    /// Next token without consuming it.
    pub fn peek(&self) -> Option<Tok<'a>> {
        self.clone().next().map(|t| t.tok)
    }

    /// Consume the next token if it is the keyword `kw`.
    pub fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| is_kw(t, kw)) {
            self.next();
            true
        } else {
            false
        }
    }

    /// Consume the rest of the statement (including the `;`).
    pub fn drain(&mut self) {
        while self.next().is_some() {}
    }
}

impl<'a> Iterator for Stmt<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        if self.done {
            return None;
        }
        match self.lex.next() {
            Some(Token {
                tok: Tok::Punct(b';'),
                ..
            })
            | None => {
                self.done = true;
                None
            }
            Some(t) => {
                self.first_start.get_or_insert(t.start);
                self.last_end = t.end;
                Some(t)
            }
        }
    }
}

/// Case-insensitive keyword test on a token.
pub(crate) fn is_kw(t: Tok<'_>, kw: &str) -> bool {
    matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
}

/// Case-insensitive test of a token against several keywords.
pub(crate) fn is_any_kw(t: Tok<'_>, kws: &[&str]) -> bool {
    match t {
        Tok::Word(w) => kws.iter().any(|k| w.eq_ignore_ascii_case(k)),
        _ => false,
    }
}

/// Strip backtick quoting (and doubled backticks would need allocation, so
/// callers that need exact names use [`unquote_ident`]).
pub(crate) fn unquote_ident(t: Tok<'_>) -> Option<String> {
    match t {
        Tok::Word(w) | Tok::Number(w) => Some(w.to_string()),
        Tok::Quoted(q) => Some(q.replace("``", "`")),
        Tok::Str(s) => Some(unquote_string(s)),
        _ => None,
    }
}

/// The text between the quotes of a string literal token. An unterminated
/// literal (`'abc`, `'é`) has no closing quote: everything after the
/// opening quote. Never slices inside a character.
pub(crate) fn string_body(s: &str) -> &str {
    let Some(q) = s.chars().next().filter(|c| matches!(c, '\'' | '"')) else {
        return s;
    };
    let rest = s.get(1..).unwrap_or("");
    rest.strip_suffix(q).unwrap_or(rest)
}

/// Decode a string literal token (`'a''b'`, `"x\n"`) to its value.
pub(crate) fn unquote_string(s: &str) -> String {
    let Some(q) = s.chars().next() else {
        return String::new();
    };
    let inner = string_body(s);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('Z') => out.push('\u{1a}'),
                Some('b') => out.push('\u{8}'),
                Some(o) => out.push(o),
                None => {}
            }
        } else if c == q && chars.peek() == Some(&q) {
            chars.next();
            out.push(q);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok<'_>> {
        Lexer::new(s, LexOptions::default())
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn skips_comments() {
        assert_eq!(
            toks("/* a */ SELECT -- x\n 1 # y\n"),
            vec![Tok::Word("SELECT"), Tok::Number("1")]
        );
        assert_eq!(
            toks("SELECT 1--1"),
            vec![
                Tok::Word("SELECT"),
                Tok::Number("1"),
                Tok::Punct(b'-'),
                Tok::Punct(b'-'),
                Tok::Number("1")
            ]
        );
    }

    #[test]
    fn executable_comments() {
        assert_eq!(toks("/*!40101 SET NAMES x */"), toks("SET NAMES x"));
        let mut l = Lexer::new(
            "/*!40101 SET */ x",
            LexOptions {
                include_versioned: false,
                backslash_escapes: true,
            },
        );
        assert_eq!(l.next().map(|t| t.tok), Some(Tok::Word("x")));
        assert!(l.flags.versioned);
        assert_eq!(toks("SELECT /*+ BKA(t) */ 1"), toks("SELECT 1"));
    }

    #[test]
    fn strings_and_vars() {
        assert_eq!(
            toks(r"'a\'b' @x @@session.y `a``b` :="),
            vec![
                Tok::Str(r"'a\'b'"),
                Tok::UserVar("x"),
                Tok::SysVar("session.y"),
                Tok::Quoted("a``b"),
                Tok::Assign
            ]
        );
        assert_eq!(unquote_string("'it''s'"), "it's");
        assert_eq!(unquote_string(r"'a\nb'"), "a\nb");
    }

    #[test]
    fn unterminated() {
        let mut l = Lexer::new("SELECT 'abc", LexOptions::default());
        l.by_ref().for_each(drop);
        assert!(l.flags.unterminated);
    }
}
