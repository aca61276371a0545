//! Recognises the process-list statements the proxy answers from its own
//! sessions: `SHOW [FULL] PROCESSLIST`, and a safe subset of `SELECT ...
//! FROM information_schema.PROCESSLIST` / `performance_schema.processlist`.
//!
//! The subset (anything else is `None` and runs on a backend as usual):
//!
//! ```text
//! SELECT * | col [[AS] alias], ...
//!   FROM information_schema.PROCESSLIST | performance_schema.processlist
//!   [WHERE cond [AND cond ...]]
//!   [ORDER BY col [ASC | DESC]]
//!   [LIMIT n]
//! cond: col {= | <> | !=} literal | col [NOT] LIKE 'pattern'
//!     | col IS [NOT] NULL | ID {= | <> | !=} CONNECTION_ID()
//! ```
//!
//! Columns are the table's own (`ID`, `USER`, `HOST`, `DB`, `COMMAND`,
//! `TIME`, `STATE`, `INFO`, and `EXECUTION_ENGINE` in performance_schema),
//! unqualified, any case, optionally backquoted. Numbers compare with `ID`
//! and `TIME`, strings with the others. One statement only (a trailing `;`
//! is fine), no executable comments. Texts without the word `processlist`
//! are settled by one byte scan, without allocating.

use crate::lexer::{is_kw, unquote_ident, unquote_string, LexOptions, Lexer, Stmt, Tok};

/// Where the rows are read from, which fixes the column set and types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcesslistSource {
    /// `SHOW PROCESSLIST` (`full` for `SHOW FULL PROCESSLIST`).
    Show {
        /// `Info` is not cut to 100 characters.
        full: bool,
    },
    /// `information_schema.PROCESSLIST`.
    InformationSchema,
    /// `performance_schema.processlist`.
    PerformanceSchema,
}

/// A value a condition compares with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlValue {
    /// An unsigned integer literal.
    Int(u64),
    /// A string literal, unquoted.
    Str(String),
    /// `CONNECTION_ID()`.
    ConnectionId,
}

/// How a condition compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlTest {
    /// `=` (`negated`: `<>`, `!=`).
    Eq(PlValue),
    /// `LIKE 'pattern'`.
    Like(String),
    /// `IS NULL`.
    IsNull,
}

/// One `AND`ed condition of the `WHERE` clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlFilter {
    /// Column index in the source's column list.
    pub column: usize,
    /// The test.
    pub test: PlTest,
    /// `<>`, `NOT LIKE`, `IS NOT NULL`.
    pub negated: bool,
}

/// One selected column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlColumn {
    /// Column index in the source's column list.
    pub column: usize,
    /// The result column's name: the alias, or the name as written.
    pub name: String,
}

/// A recognised process-list statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcesslistQuery {
    /// Where the rows come from.
    pub source: ProcesslistSource,
    /// The table name as written (the column definitions' `table`).
    pub table: String,
    /// Selected columns; `None` for `*` and `SHOW`.
    pub columns: Option<Vec<PlColumn>>,
    /// `WHERE` conditions, all of which must hold.
    pub filters: Vec<PlFilter>,
    /// `ORDER BY` column index and whether descending; by `ID` otherwise.
    pub order: Option<(usize, bool)>,
    /// `LIMIT n`.
    pub limit: Option<u64>,
}

/// The columns of `information_schema.PROCESSLIST`, in order;
/// `performance_schema.processlist` adds [`EXECUTION_ENGINE`].
pub const PROCESSLIST_COLUMNS: [&str; 8] = [
    "ID", "USER", "HOST", "DB", "COMMAND", "TIME", "STATE", "INFO",
];

/// The ninth column of `performance_schema.processlist`.
pub const EXECUTION_ENGINE: &str = "EXECUTION_ENGINE";

impl ProcesslistSource {
    /// Number of columns of the source.
    pub fn width(self) -> usize {
        match self {
            ProcesslistSource::PerformanceSchema => 9,
            _ => 8,
        }
    }

    fn column(self, name: &str) -> Option<usize> {
        if self == ProcesslistSource::PerformanceSchema
            && name.eq_ignore_ascii_case(EXECUTION_ENGINE)
        {
            return Some(8);
        }
        PROCESSLIST_COLUMNS
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }
}

/// Whether column `i` holds numbers (`ID`, `TIME`).
pub fn numeric_column(i: usize) -> bool {
    i == 0 || i == 5
}

/// Whether the word `processlist` occurs in `sql` (any case). Conservative.
pub(crate) fn mentions_processlist(sql: &[u8]) -> bool {
    const W: &[u8] = b"processlist";
    sql.windows(W.len()).any(|w| w.eq_ignore_ascii_case(W))
}

/// Recognises a process-list statement the proxy answers itself (see the
/// module doc); `None` for everything else. Never panics.
pub fn processlist_query(sql: &str) -> Option<ProcesslistQuery> {
    if !mentions_processlist(sql.as_bytes()) {
        return None;
    }
    let lex = Lexer::new(sql, LexOptions::default());
    let mut st = Stmt::new(lex);
    let q = statement(&mut st);
    // exactly one statement, nothing executable or unterminated
    st.drain();
    let mut rest = st.lex;
    if rest.next().is_some() || rest.flags.executable || rest.flags.unterminated {
        return None;
    }
    q
}

fn statement(st: &mut Stmt<'_>) -> Option<ProcesslistQuery> {
    let first = st.next()?.tok;
    if is_kw(first, "SHOW") {
        let full = st.eat_kw("FULL");
        if !st.eat_kw("PROCESSLIST") || st.next().is_some() {
            return None;
        }
        return Some(ProcesslistQuery {
            source: ProcesslistSource::Show { full },
            table: String::new(),
            columns: None,
            filters: Vec::new(),
            order: None,
            limit: None,
        });
    }
    if !is_kw(first, "SELECT") {
        return None;
    }
    // the select list is resolved once the table is known
    let mut items: Vec<(String, Option<String>)> = Vec::new();
    let star = st.peek() == Some(Tok::Punct(b'*'));
    if star {
        st.next();
        if !st.eat_kw("FROM") {
            return None;
        }
    } else {
        loop {
            let col = ident(st.next()?.tok)?;
            let mut alias = None;
            let mut t = st.next()?.tok;
            if is_kw(t, "AS") {
                alias = Some(unquote_ident(st.next()?.tok)?);
                t = st.next()?.tok;
            } else if !is_kw(t, "FROM") && matches!(t, Tok::Word(_) | Tok::Quoted(_)) {
                alias = Some(unquote_ident(t)?);
                t = st.next()?.tok;
            }
            items.push((col, alias));
            if is_kw(t, "FROM") {
                break;
            }
            if t != Tok::Punct(b',') {
                return None;
            }
        }
    }
    let schema = ident(st.next()?.tok)?;
    if st.next()?.tok != Tok::Punct(b'.') {
        return None;
    }
    let table = ident(st.next()?.tok)?;
    if !table.eq_ignore_ascii_case("processlist") {
        return None;
    }
    let source = if schema.eq_ignore_ascii_case("information_schema") {
        ProcesslistSource::InformationSchema
    } else if schema.eq_ignore_ascii_case("performance_schema") {
        ProcesslistSource::PerformanceSchema
    } else {
        return None;
    };
    let columns = if star {
        None
    } else {
        let mut cols = Vec::with_capacity(items.len());
        for (col, alias) in items {
            let column = source.column(&col)?;
            cols.push(PlColumn {
                column,
                name: alias.unwrap_or(col),
            });
        }
        Some(cols)
    };
    let mut q = ProcesslistQuery {
        source,
        table,
        columns,
        filters: Vec::new(),
        order: None,
        limit: None,
    };
    clauses(st, &mut q)?;
    Some(q)
}

/// `WHERE`, `ORDER BY` and `LIMIT`, in that order, each optional.
fn clauses(st: &mut Stmt<'_>, q: &mut ProcesslistQuery) -> Option<()> {
    if st.eat_kw("WHERE") {
        loop {
            q.filters.push(condition(st, q.source)?);
            if !st.eat_kw("AND") {
                break;
            }
        }
    }
    if st.eat_kw("ORDER") {
        if !st.eat_kw("BY") {
            return None;
        }
        let col = q.source.column(&ident(st.next()?.tok)?)?;
        let desc = st.eat_kw("DESC");
        if !desc {
            st.eat_kw("ASC");
        }
        q.order = Some((col, desc));
    }
    if st.eat_kw("LIMIT") {
        match st.next()?.tok {
            Tok::Number(n) => q.limit = Some(n.parse().ok()?),
            _ => return None,
        }
    }
    st.next().is_none().then_some(())
}

fn condition(st: &mut Stmt<'_>, source: ProcesslistSource) -> Option<PlFilter> {
    let column = source.column(&ident(st.next()?.tok)?)?;
    let numeric = numeric_column(column);
    let t = st.next()?.tok;
    let (test, negated) = if is_kw(t, "IS") {
        let negated = st.eat_kw("NOT");
        if !st.eat_kw("NULL") {
            return None;
        }
        (PlTest::IsNull, negated)
    } else if is_kw(t, "LIKE") || is_kw(t, "NOT") {
        let negated = is_kw(t, "NOT");
        if negated && !st.eat_kw("LIKE") {
            return None;
        }
        match st.next()?.tok {
            // MySQL keeps `\\` before `%` and `_` in literals: not modelled
            Tok::Str(s) if !numeric && !s.contains('\\') => {
                (PlTest::Like(unquote_string(s)), negated)
            }
            _ => return None,
        }
    } else {
        let negated = match t {
            Tok::Punct(b'=') => false,
            Tok::Punct(c @ (b'!' | b'<')) => {
                let second = if c == b'!' { b'=' } else { b'>' };
                if st.next()?.tok != Tok::Punct(second) {
                    return None;
                }
                true
            }
            _ => return None,
        };
        (PlTest::Eq(value(st, numeric)?), negated)
    };
    Some(PlFilter {
        column,
        test,
        negated,
    })
}

/// A literal of the column's kind, or `CONNECTION_ID()` for a number.
fn value(st: &mut Stmt<'_>, numeric: bool) -> Option<PlValue> {
    match st.next()?.tok {
        Tok::Number(n) if numeric => n.parse().ok().map(PlValue::Int),
        Tok::Str(s) if !numeric => Some(PlValue::Str(unquote_string(s))),
        Tok::Word(w) if numeric && w.eq_ignore_ascii_case("connection_id") => {
            let open = st.next()?.tok == Tok::Punct(b'(');
            let close = st.next()?.tok == Tok::Punct(b')');
            (open && close).then_some(PlValue::ConnectionId)
        }
        _ => None,
    }
}

/// A plain or backquoted identifier.
fn ident(t: Tok<'_>) -> Option<String> {
    match t {
        Tok::Word(_) | Tok::Quoted(_) => unquote_ident(t),
        _ => None,
    }
}

/// SQL `LIKE` with `%`, `_` and `\` escapes, ASCII case-insensitive (as
/// the tables' `utf8mb3_general_ci` columns compare).
pub fn like(value: &str, pattern: &str) -> bool {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    like_at(&v, &p)
}

fn like_at(v: &[char], p: &[char]) -> bool {
    match p.split_first() {
        None => v.is_empty(),
        Some(('%', rest)) => {
            (0..=v.len()).any(|i| v.get(i..).is_some_and(|tail| like_at(tail, rest)))
        }
        Some(('_', rest)) => v.split_first().is_some_and(|(_, tail)| like_at(tail, rest)),
        Some(('\\', rest)) if !rest.is_empty() => match (rest.split_first(), v.split_first()) {
            (Some((pc, prest)), Some((vc, vrest))) => pc == vc && like_at(vrest, prest),
            _ => false,
        },
        Some((pc, rest)) => v.split_first().is_some_and(|(vc, vrest)| {
            vc.to_lowercase().eq(pc.to_lowercase()) && like_at(vrest, rest)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(sql: &str) -> Option<ProcesslistQuery> {
        processlist_query(sql)
    }

    #[test]
    fn show_forms() {
        let s = q("SHOW PROCESSLIST").unwrap();
        assert_eq!(s.source, ProcesslistSource::Show { full: false });
        let s = q(" show /* x */ full processlist ;").unwrap();
        assert_eq!(s.source, ProcesslistSource::Show { full: true });
        for other in [
            "SHOW PROCESSLIST x",
            "SHOW PROCESSLIST; SELECT 1",
            "/*!SHOW PROCESSLIST*/",
            "SHOW FULL",
            "SELECT 'processlist'",
            "SHOW TABLES",
        ] {
            assert_eq!(q(other), None, "{other}");
        }
    }

    #[test]
    fn select_subset() {
        let s = q("SELECT * FROM information_schema.PROCESSLIST").unwrap();
        assert_eq!(s.source, ProcesslistSource::InformationSchema);
        assert_eq!((s.columns, s.table.as_str()), (None, "PROCESSLIST"));
        let s = q(
            "select id, `Info` AS i, user u from INFORMATION_SCHEMA.`processlist` \
                   where ID = CONNECTION_ID() and command != 'Sleep' and info is not null \
                   and info not like '%x_%' order by time desc limit 3",
        )
        .unwrap();
        let cols = s.columns.unwrap();
        assert_eq!(
            cols.iter()
                .map(|c| (c.column, c.name.as_str()))
                .collect::<Vec<_>>(),
            vec![(0, "id"), (7, "i"), (1, "u")]
        );
        assert_eq!(s.table, "processlist");
        assert_eq!(s.filters.len(), 4);
        assert_eq!(s.filters[0].test, PlTest::Eq(PlValue::ConnectionId));
        assert_eq!(
            (s.filters[1].test.clone(), s.filters[1].negated),
            (PlTest::Eq(PlValue::Str("Sleep".into())), true)
        );
        assert_eq!(
            (s.filters[2].test.clone(), s.filters[2].negated),
            (PlTest::IsNull, true)
        );
        assert_eq!(
            (s.filters[3].test.clone(), s.filters[3].negated),
            (PlTest::Like("%x_%".into()), true)
        );
        assert_eq!((s.order, s.limit), (Some((5, true)), Some(3)));
        let s = q("SELECT * FROM performance_schema.processlist WHERE ID <> 5").unwrap();
        assert_eq!(s.source, ProcesslistSource::PerformanceSchema);
        assert!(q("SELECT EXECUTION_ENGINE FROM performance_schema.processlist").is_some());
    }

    #[test]
    fn other_forms_are_not_answered() {
        for other in [
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST",
            "SELECT * FROM information_schema.PROCESSLIST WHERE ID > 5",
            "SELECT * FROM information_schema.PROCESSLIST WHERE ID = '5'",
            "SELECT * FROM information_schema.PROCESSLIST WHERE USER = 5",
            "SELECT * FROM information_schema.PROCESSLIST WHERE ID = 1 OR ID = 2",
            "SELECT nope FROM information_schema.PROCESSLIST",
            "SELECT EXECUTION_ENGINE FROM information_schema.PROCESSLIST",
            "SELECT * FROM PROCESSLIST",
            "SELECT * FROM information_schema.PROCESSLIST p",
            "SELECT * FROM information_schema.PROCESSLIST FOR UPDATE",
            "SELECT * FROM information_schema.PROCESSLIST WHERE ID = 1; DO 1",
            "SELECT * FROM other.PROCESSLIST",
            "SELECT * FROM information_schema.PROCESSLIST LIMIT 1, 2",
            "SELECT * FROM information_schema.PROCESSLIST WHERE INFO LIKE 'x",
            "DELETE FROM information_schema.PROCESSLIST",
            "SELECT * FROM information_schema.PROCESSLIST WHERE INFO LIKE 'a\\_b'",
        ] {
            assert_eq!(q(other), None, "{other}");
        }
    }

    #[test]
    fn like_matches_as_mysql() {
        assert!(like("SELECT SLEEP(2)", "%sleep(%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("a_c", "a\\_c"));
        assert!(!like("abc", "a\\_c"));
        assert!(like("", "%"));
        assert!(!like("x", ""));
    }
}
