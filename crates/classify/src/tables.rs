//! Table extraction: which `db.table` names a statement reads or writes,
//! for query rules (`match_tables`) and the cache (invalidation by table).
//!
//! Lexer-based, no parser: it follows the table lists after `FROM`,
//! `JOIN`, `UPDATE`, `INSERT/REPLACE [INTO]`, `TABLE` and `DELETE ...
//! USING`, into derived tables, subqueries and CTE bodies, and drops CTE
//! names. It is conservative: whenever it cannot be sure it saw every
//! table, it answers [`Tables::Unknown`] — statements other than
//! `SELECT`/`WITH`/`TABLE`/`VALUES`/`INSERT`/`REPLACE`/`UPDATE`/`DELETE`,
//! calls of functions that are not known built-ins (a stored function may
//! read anything), table functions other than `JSON_TABLE`, unbalanced
//! parentheses, unterminated text, and texts whose versioned comments or
//! backslashes make the table list depend on server settings.

use std::borrow::Cow;

use crate::funcs::{is_in, is_pure, LOCK_FUNCS, SESSION_FUNCS};
use crate::lexer::{is_any_kw, is_kw, LexOptions, Lexer, Tok};

/// One table named by a statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef<'a> {
    /// The database, when qualified (`db.t`).
    pub db: Option<Cow<'a, str>>,
    /// The table name, unquoted.
    pub name: Cow<'a, str>,
}

impl TableRef<'_> {
    /// `(db, table)`, with an unqualified name resolved against the session
    /// database; `None` when unqualified and no database is selected.
    pub fn resolve<'s>(&'s self, session_db: Option<&'s str>) -> Option<(&'s str, &'s str)> {
        let db = self.db.as_deref().or(session_db)?;
        Some((db, &self.name))
    }
}

/// The answer of [`tables`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tables<'a> {
    /// Every table the text names (possibly none, e.g. `SELECT 1`), in
    /// order of appearance, duplicates removed.
    Known(Vec<TableRef<'a>>),
    /// The extractor cannot tell: a rule with `match_tables` must not
    /// match, a cache must not cache.
    Unknown,
}

/// Most tokens a text may have for extraction (longer texts are `Unknown`).
const MAX_TOKENS: usize = 100_000;

/// Deepest nesting of parentheses / table lists followed (deeper texts are
/// `Unknown`), which bounds the walker's recursion on hostile input.
const MAX_DEPTH: usize = 64;

/// Which tables a query text (one or more statements) reads or writes.
pub fn tables(sql: &str) -> Tables<'_> {
    let (first, flags) = extract(sql, LexOptions::default());
    if flags.unterminated {
        return Tables::Unknown;
    }
    let Some(first) = first else {
        return Tables::Unknown;
    };
    // Readings that depend on server state must all agree.
    for include_versioned in [true, false] {
        for backslash_escapes in [true, false] {
            let opts = LexOptions {
                include_versioned,
                backslash_escapes,
            };
            if opts == LexOptions::default()
                || (!include_versioned && !flags.versioned)
                || (!backslash_escapes && !flags.backslash)
            {
                continue;
            }
            let (alt, f) = extract(sql, opts);
            let same = alt.is_some_and(|alt| sorted(&alt) == sorted(&first));
            if !same || f.unterminated {
                return Tables::Unknown;
            }
        }
    }
    Tables::Known(first)
}

fn sorted<'a>(v: &[TableRef<'a>]) -> Vec<TableRef<'a>> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn extract(sql: &str, opts: LexOptions) -> (Option<Vec<TableRef<'_>>>, crate::lexer::LexFlags) {
    let mut lex = Lexer::new(sql, opts);
    let mut toks = Vec::new();
    for t in lex.by_ref() {
        if toks.len() >= MAX_TOKENS {
            return (None, lex.flags);
        }
        toks.push(t.tok);
    }
    let flags = lex.flags;
    let Some(close) = match_parens(&toks) else {
        return (None, flags);
    };
    let mut out: Vec<TableRef<'_>> = Vec::new();
    let mut start = 0;
    // Statements split at top-level `;`: each has its own CTE names.
    let mut depth = 0usize;
    let mut ends = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            Tok::Punct(b';') if depth == 0 => ends.push(i),
            _ => {}
        }
    }
    ends.push(toks.len());
    for end in ends {
        let mut w = Walker {
            toks: &toks,
            close: &close,
            found: Vec::new(),
            ctes: Vec::new(),
            unknown: false,
            depth: 0,
        };
        if end > start {
            if !statement_start(toks.get(start).copied()) {
                return (None, flags);
            }
            w.expr(start, end, true);
        }
        if w.unknown {
            return (None, flags);
        }
        for t in w.found {
            let cte = t.db.is_none() && w.ctes.iter().any(|c| c.eq_ignore_ascii_case(&t.name));
            if !cte && !out.contains(&t) {
                out.push(t);
            }
        }
        start = end.saturating_add(1);
    }
    (Some(out), flags)
}

/// `close[i]` is the index of the `)` matching a `(` at `i` (0 elsewhere);
/// `None` when the parentheses do not balance.
fn match_parens(toks: &[Tok<'_>]) -> Option<Vec<usize>> {
    let mut close = vec![0; toks.len()];
    let mut stack = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct(b'(') => stack.push(i),
            Tok::Punct(b')') => {
                let o = stack.pop()?;
                *close.get_mut(o)? = i;
            }
            _ => {}
        }
    }
    stack.is_empty().then_some(close)
}

fn statement_start(t: Option<Tok<'_>>) -> bool {
    match t {
        Some(Tok::Punct(b'(')) => true,
        Some(t) => is_any_kw(
            t,
            &[
                "SELECT", "WITH", "TABLE", "VALUES", "INSERT", "REPLACE", "UPDATE", "DELETE",
            ],
        ),
        None => false,
    }
}

/// Words that may follow a table factor and are never its alias.
#[rustfmt::skip]
const AFTER_TABLE: &[&str] = &[
    "WHERE", "ON", "USING", "JOIN", "INNER", "LEFT", "RIGHT", "CROSS", "NATURAL",
    "STRAIGHT_JOIN", "OUTER", "FULL", "GROUP", "ORDER", "LIMIT", "HAVING", "WINDOW", "UNION",
    "EXCEPT", "INTERSECT", "FOR", "LOCK", "INTO", "SET", "VALUES", "VALUE", "SELECT",
    "PARTITION", "USE", "FORCE", "IGNORE", "PROCEDURE", "WITH", "RETURNING", "TABLE", "DEFAULT",
    "AS", "OFFSET",
];

/// Join words between two table factors.
const JOIN_WORDS: &[&str] = &[
    "INNER", "CROSS", "LEFT", "RIGHT", "OUTER", "NATURAL", "FULL",
];

/// Words that end a join's `ON` condition.
#[rustfmt::skip]
const END_ON: &[&str] = &[
    "JOIN", "STRAIGHT_JOIN", "INNER", "CROSS", "LEFT", "RIGHT", "NATURAL", "WHERE", "GROUP",
    "HAVING", "ORDER", "LIMIT", "WINDOW", "UNION", "EXCEPT", "INTERSECT", "FOR", "LOCK", "INTO",
    "SET", "RETURNING",
];

/// Functions whose argument syntax uses `FROM` (`EXTRACT(YEAR FROM d)`).
const FROM_FUNCS: &[&str] = &["EXTRACT", "TRIM", "SUBSTRING", "SUBSTR", "MID"];

/// Keywords that may precede `(` and are not function calls.
const PAREN_KEYWORDS: &[&str] = &[
    "IN",
    "EXISTS",
    "ANY",
    "SOME",
    "ALL",
    "AND",
    "OR",
    "NOT",
    "XOR",
    "ON",
    "USING",
    "AS",
    "OVER",
    "WHERE",
    "WHEN",
    "THEN",
    "ELSE",
    "BY",
    "SELECT",
    "VALUES",
    "VALUE",
    "ROW",
    "INTERVAL",
    "AGAINST",
    "LIKE",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "FROM",
    "JOIN",
    "LATERAL",
    "SET",
    "INTO",
    "DISTINCT",
    "IS",
    "BETWEEN",
    "RETURNING",
    "WITH",
    "CASE",
    "DIV",
    "MOD",
    "REGEXP",
    "RLIKE",
    "HAVING",
    "LIMIT",
    "TABLE",
    "ORDER",
    "GROUP",
    "PARTITION",
    "WINDOW",
    "KEY",
    "INDEX",
    "CHAR",
    "BINARY",
    "SIGNED",
    "UNSIGNED",
    "DATETIME",
    "TIME",
    "TIMESTAMP",
];

/// A call that cannot read a table: a pure built-in, a keyword, or a
/// lock/session function.
fn known_call(w: &str) -> bool {
    is_pure(w) || is_in(w, PAREN_KEYWORDS) || is_in(w, LOCK_FUNCS) || is_in(w, SESSION_FUNCS)
}

struct Walker<'t, 'a> {
    toks: &'t [Tok<'a>],
    close: &'t [usize],
    found: Vec<TableRef<'a>>,
    ctes: Vec<Cow<'a, str>>,
    unknown: bool,
    /// Current recursion depth (see [`MAX_DEPTH`]).
    depth: usize,
}

fn ident<'a>(t: Option<Tok<'a>>) -> Option<Cow<'a, str>> {
    match t? {
        Tok::Word(w) => Some(Cow::Borrowed(w)),
        Tok::Quoted(q) if q.contains("``") => Some(Cow::Owned(q.replace("``", "`"))),
        Tok::Quoted(q) => Some(Cow::Borrowed(q)),
        _ => None,
    }
}

impl<'a> Walker<'_, 'a> {
    fn tok(&self, i: usize) -> Option<Tok<'a>> {
        self.toks.get(i).copied()
    }

    fn kw(&self, i: usize, kw: &str) -> bool {
        self.tok(i).is_some_and(|t| is_kw(t, kw))
    }

    fn open(&self, i: usize) -> bool {
        self.tok(i) == Some(Tok::Punct(b'('))
    }

    /// Index just after the `)` matching the `(` at `i`.
    fn skip_parens(&self, i: usize) -> usize {
        self.close.get(i).copied().unwrap_or(i).saturating_add(1)
    }

    /// Enter one level of recursion; false (and `unknown`) when too deep.
    fn descend(&mut self) -> bool {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.unknown = true;
        }
        !self.unknown
    }

    /// Walk an expression / query context `[a, b)`.
    fn expr(&mut self, a: usize, b: usize, from_is_kw: bool) {
        if self.descend() {
            self.expr_at(a, b, from_is_kw);
        }
        self.depth -= 1;
    }

    fn expr_at(&mut self, a: usize, b: usize, from_is_kw: bool) {
        let mut i = a;
        while i < b && !self.unknown {
            let Some(t) = self.tok(i) else { return };
            let prev = i.checked_sub(1).and_then(|p| self.tok(p));
            let next = self.tok(i.saturating_add(1));
            if t == Tok::Punct(b'(') {
                let j = self.close.get(i).copied().unwrap_or(i);
                let from_func =
                    prev.is_some_and(|p| matches!(p, Tok::Word(w) if is_in(w, FROM_FUNCS)));
                self.expr(i + 1, j.min(b), !from_func);
                i = j.saturating_add(1);
                continue;
            }
            let Tok::Word(w) = t else {
                if matches!(t, Tok::Quoted(_)) && next == Some(Tok::Punct(b'(')) {
                    self.unknown = true; // `f`(...): a stored function
                }
                i += 1;
                continue;
            };
            let call = next == Some(Tok::Punct(b'('));
            let after_dot = prev == Some(Tok::Punct(b'.'));
            if call && (after_dot || !known_call(w)) {
                // db.f(...) or an unknown function: it may read any table.
                self.unknown = true;
                return;
            }
            i = if after_dot {
                i + 1
            } else if (is_kw(t, "FROM") && from_is_kw) || is_any_kw(t, &["JOIN", "STRAIGHT_JOIN"]) {
                self.list(i + 1, b)
            } else if is_kw(t, "TABLE") {
                self.factor(i + 1, b, false)
            } else if is_kw(t, "USING") && !call {
                self.list(i + 1, b)
            } else if is_kw(t, "UPDATE") && !prev.is_some_and(|p| is_any_kw(p, &["FOR", "KEY"])) {
                let k = self.skip_words(i + 1, &["LOW_PRIORITY", "IGNORE"]);
                self.list(k, b)
            } else if is_any_kw(t, &["INSERT", "REPLACE"]) && !call {
                let k = self.skip_words(
                    i + 1,
                    &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"],
                );
                self.factor(k, b, true)
            } else if is_kw(t, "WITH") {
                self.with(i + 1, b)
            } else {
                i + 1
            };
        }
    }

    fn skip_words(&self, mut i: usize, words: &[&str]) -> usize {
        while self.tok(i).is_some_and(|t| is_any_kw(t, words)) {
            i += 1;
        }
        i
    }

    /// `WITH [RECURSIVE] name [(cols)] AS (body) [, ...]`: record the names
    /// and walk the bodies. Anything else (`WITH ROLLUP`) is left alone.
    fn with(&mut self, mut i: usize, b: usize) -> usize {
        i = self.skip_words(i, &["RECURSIVE"]);
        loop {
            let Some(name) = ident(self.tok(i)) else {
                return i;
            };
            let mut k = i + 1;
            if self.open(k) {
                k = self.skip_parens(k);
            }
            if !(self.kw(k, "AS") && self.open(k + 1)) {
                return i;
            }
            self.ctes.push(name);
            let j = self.close.get(k + 1).copied().unwrap_or(k + 1);
            self.expr(k + 2, j.min(b), true);
            i = j.saturating_add(1);
            if self.tok(i) == Some(Tok::Punct(b',')) {
                i += 1;
            } else {
                return i;
            }
        }
    }

    /// A comma / join separated list of table factors starting at `i`;
    /// returns where the list ends.
    fn list(&mut self, mut i: usize, b: usize) -> usize {
        loop {
            i = self.factor(i, b, false);
            if self.unknown {
                return b;
            }
            // after a factor: join conditions and the next factor
            loop {
                if i >= b {
                    return i;
                }
                let Some(t) = self.tok(i) else { return i };
                if t == Tok::Punct(b',') {
                    i += 1;
                    break;
                } else if is_any_kw(t, JOIN_WORDS) {
                    i += 1;
                } else if is_any_kw(t, &["JOIN", "STRAIGHT_JOIN"]) {
                    i += 1;
                    break;
                } else if is_kw(t, "ON") {
                    let mut k = i + 1;
                    while k < b {
                        let Some(u) = self.tok(k) else { break };
                        if u == Tok::Punct(b',') || is_any_kw(u, END_ON) {
                            break;
                        }
                        k = if u == Tok::Punct(b'(') {
                            self.skip_parens(k)
                        } else {
                            k + 1
                        };
                    }
                    self.expr(i + 1, k.min(b), true);
                    i = k;
                } else if is_kw(t, "USING") && self.open(i + 1) {
                    i = self.skip_parens(i + 1);
                } else {
                    return i;
                }
            }
        }
    }

    /// One table factor at `i` (a name, a parenthesised join or a derived
    /// table) with its alias and hints; `insert` for an `INSERT` target
    /// (then `(` after the name is a column list).
    fn factor(&mut self, i: usize, b: usize, insert: bool) -> usize {
        let end = if self.descend() {
            self.factor_at(i, b, insert)
        } else {
            b
        };
        self.depth -= 1;
        end
    }

    fn factor_at(&mut self, mut i: usize, b: usize, insert: bool) -> usize {
        if i >= b {
            self.unknown = true;
            return b;
        }
        i = self.skip_words(i, &["LATERAL", "ONLY"]);
        if self.open(i) {
            let j = self.close.get(i).copied().unwrap_or(i).min(b);
            let mut first = i + 1;
            while self.open(first) && first < j {
                first += 1;
            }
            let query = self
                .tok(first)
                .is_some_and(|t| is_any_kw(t, &["SELECT", "WITH", "VALUES", "TABLE"]));
            if query {
                self.expr(i + 1, j, true);
            } else {
                let k = self.list(i + 1, j);
                self.expr(k, j, true);
            }
            return self.alias(j.saturating_add(1), b);
        }
        let Some(name) = ident(self.tok(i)) else {
            self.unknown = true;
            return b;
        };
        if self.open(i + 1) && !insert {
            if matches!(self.tok(i), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("JSON_TABLE")) {
                let j = self.close.get(i + 1).copied().unwrap_or(i + 1).min(b);
                self.expr(i + 2, j, true);
                return self.alias(j.saturating_add(1), b);
            }
            self.unknown = true; // another table function
            return b;
        }
        if matches!(self.tok(i), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("DUAL")) {
            return i + 1;
        }
        let mut k = i + 1;
        let table = if self.tok(k) == Some(Tok::Punct(b'.')) {
            let Some(t) = ident(self.tok(k + 1)) else {
                self.unknown = true;
                return b;
            };
            k += 2;
            TableRef {
                db: Some(name),
                name: t,
            }
        } else {
            TableRef { db: None, name }
        };
        self.found.push(table);
        if insert {
            k = self.skip_partition(k);
            if self.open(k) {
                let j = self.close.get(k).copied().unwrap_or(k).min(b);
                self.expr(k + 1, j, true);
                k = j.saturating_add(1);
            }
            return k;
        }
        self.alias(k, b)
    }

    fn skip_partition(&self, i: usize) -> usize {
        if self.kw(i, "PARTITION") && self.open(i + 1) {
            self.skip_parens(i + 1)
        } else {
            i
        }
    }

    /// Partition list, alias (with column list) and index hints.
    fn alias(&mut self, mut i: usize, b: usize) -> usize {
        while i < b {
            let Some(t) = self.tok(i) else { return i };
            if is_kw(t, "PARTITION") && self.open(i + 1) {
                i = self.skip_parens(i + 1);
            } else if is_any_kw(t, &["USE", "FORCE", "IGNORE"])
                && self
                    .tok(i + 1)
                    .is_some_and(|n| is_any_kw(n, &["INDEX", "KEY"]))
            {
                let mut k = i + 2;
                while k < b && !self.open(k) {
                    k += 1;
                }
                i = self.skip_parens(k);
            } else if is_kw(t, "AS") {
                i += 2;
                if self.open(i) {
                    i = self.skip_parens(i);
                }
            } else if matches!(t, Tok::Quoted(_) | Tok::Str(_))
                || matches!(t, Tok::Word(_) if !is_any_kw(t, AFTER_TABLE))
            {
                i += 1;
                if self.open(i) {
                    i = self.skip_parens(i);
                }
            } else {
                return i;
            }
        }
        i
    }
}

#[cfg(test)]
#[path = "tables_tests.rs"]
mod tests;
