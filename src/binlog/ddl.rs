//! The tables a DDL statement writes, for fresh reads: `ALTER TABLE t`,
//! `TRUNCATE [TABLE] t`, `CREATE TABLE t [LIKE s]`, `DROP TABLE a, b`,
//! `RENAME TABLE a TO b, c TO d`, `CREATE/DROP INDEX i ON t`. Every table
//! named counts (a RENAME or CREATE ... LIKE writes both sides). Anything
//! else, or anything not plainly spelled, is None (the caller then counts a
//! write to every table).

/// Splits `sql` into words: identifiers (backquotes removed), `,`, `.`,
/// `(`. None when it holds strings, comments or unbalanced quotes.
fn words(sql: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                flush(&mut cur, &mut out);
                let mut id = String::new();
                loop {
                    match chars.next()? {
                        '`' if chars.peek() == Some(&'`') => {
                            chars.next();
                            id.push('`');
                        }
                        '`' => break,
                        ch => id.push(ch),
                    }
                }
                out.push(format!("`{id}"));
            }
            ',' | '.' | '(' | ';' => {
                flush(&mut cur, &mut out);
                out.push(c.to_string());
                if c == '(' {
                    // column definitions and the like: nothing more to name
                    return Some(out);
                }
            }
            '\'' | '"' | '#' | '/' | '-' => return None,
            c if c.is_whitespace() => flush(&mut cur, &mut out),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut out);
    Some(out)
}

fn is(w: Option<&String>, kw: &str) -> bool {
    w.is_some_and(|w| !w.starts_with('`') && w.eq_ignore_ascii_case(kw))
}

/// Reads `[db.]name` at `i`, resolved against `db`; advances `i`.
fn name(w: &[String], i: &mut usize, db: Option<&str>) -> Option<String> {
    let ident = |s: &String| s.strip_prefix('`').unwrap_or(s).to_lowercase();
    let first = w.get(*i)?;
    if matches!(first.as_str(), "," | "." | "(" | ";") {
        return None;
    }
    if w.get(*i + 1).map(String::as_str) == Some(".") {
        let t = w.get(*i + 2)?;
        *i += 3;
        return Some(format!("{}.{}", ident(first), ident(t)));
    }
    *i += 1;
    Some(format!("{}.{}", db?.to_lowercase(), ident(first)))
}

/// The view a `CREATE [OR REPLACE] [ALGORITHM=...] [DEFINER=...] [SQL
/// SECURITY ...] VIEW name` or `ALTER ... VIEW name` statement defines.
pub fn view(sql: &str, db: Option<&str>) -> Option<String> {
    let head = sql.trim_start().get(..6)?;
    if !head.eq_ignore_ascii_case("CREATE") && !head.eq_ignore_ascii_case("ALTER ") {
        return None;
    }
    // the name comes before AS; the view's query may hold anything
    let upper = sql.to_ascii_uppercase();
    let end = upper.find(" AS ").or_else(|| upper.find(" AS\n"))?;
    let w = words(sql.get(..end)?.replace('=', " = ").as_str())?;
    let at = w.iter().position(|x| is(Some(x), "VIEW"))?;
    let mut i = at + 1;
    name(&w, &mut i, db)
}

/// The tables DDL statement `sql` writes, names resolved against `db`.
pub fn tables(sql: &str, db: Option<&str>) -> Option<Vec<String>> {
    let w = words(sql.trim())?;
    let mut i;
    let mut out = Vec::new();
    let kw = |i: usize, k: &str| is(w.get(i), k);
    if kw(0, "ALTER") && kw(1, "TABLE") || kw(0, "TRUNCATE") {
        i = if kw(0, "TRUNCATE") && !kw(1, "TABLE") {
            1
        } else {
            2
        };
        out.push(name(&w, &mut i, db)?);
        return Some(out);
    }
    if kw(0, "CREATE") && kw(1, "TABLE") || kw(0, "CREATE") && kw(1, "TEMPORARY") {
        i = if kw(1, "TEMPORARY") { 3 } else { 2 };
        if kw(i, "IF") {
            i += 3;
        }
        out.push(name(&w, &mut i, db)?);
        if kw(i, "LIKE") {
            i += 1;
            out.push(name(&w, &mut i, db)?);
        }
        return Some(out);
    }
    if kw(0, "DROP") && (kw(1, "TABLE") || kw(1, "TEMPORARY")) {
        i = if kw(1, "TEMPORARY") { 3 } else { 2 };
        if kw(i, "IF") {
            i += 2;
        }
        loop {
            out.push(name(&w, &mut i, db)?);
            if w.get(i).map(String::as_str) == Some(",") {
                i += 1;
            } else {
                return Some(out);
            }
        }
    }
    if kw(0, "RENAME") && kw(1, "TABLE") {
        i = 2;
        loop {
            out.push(name(&w, &mut i, db)?);
            if !kw(i, "TO") {
                return None;
            }
            i += 1;
            out.push(name(&w, &mut i, db)?);
            if w.get(i).map(String::as_str) == Some(",") {
                i += 1;
            } else {
                return Some(out);
            }
        }
    }
    // CREATE [UNIQUE|FULLTEXT|SPATIAL] INDEX i ON t, DROP INDEX i ON t
    let idx = (0..4).find(|&j| kw(j, "INDEX"))?;
    if !(kw(0, "CREATE") || kw(0, "DROP")) {
        return None;
    }
    i = idx + 2;
    if !kw(i, "ON") {
        return None;
    }
    i += 1;
    out.push(name(&w, &mut i, db)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sql: &str) -> Option<Vec<String>> {
        tables(sql, Some("App"))
    }

    fn v(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn ddl_names_every_table_involved() {
        assert_eq!(t("ALTER TABLE t ADD COLUMN c2 INT"), v(&["app.t"]));
        assert_eq!(t("alter table `d`.`T x` add c int"), v(&["d.t x"]));
        assert_eq!(t("TRUNCATE t"), v(&["app.t"]));
        assert_eq!(t("TRUNCATE TABLE d.t"), v(&["d.t"]));
        assert_eq!(t("CREATE TABLE n (id INT)"), v(&["app.n"]));
        assert_eq!(
            t("CREATE TABLE IF NOT EXISTS n LIKE d.s"),
            v(&["app.n", "d.s"])
        );
        assert_eq!(t("DROP TABLE IF EXISTS a, d.b"), v(&["app.a", "d.b"]));
        assert_eq!(
            t("RENAME TABLE a TO b, d.c TO d.e"),
            v(&["app.a", "app.b", "d.c", "d.e"])
        );
        assert_eq!(t("CREATE UNIQUE INDEX i ON t (c)"), v(&["app.t"]));
        assert_eq!(t("DROP INDEX i ON d.t"), v(&["d.t"]));
    }

    #[test]
    fn views_are_named() {
        assert_eq!(
            view("CREATE VIEW v AS SELECT * FROM t", Some("d")),
            Some("d.v".into())
        );
        assert_eq!(
            view(
                "CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `x`.`V` AS select 'a' AS `a`",
                None
            ),
            Some("x.v".into())
        );
        assert_eq!(
            view("create or replace view w as select 1", Some("d")),
            Some("d.w".into())
        );
        assert_eq!(view("CREATE TABLE t (id INT)", Some("d")), None);
        assert_eq!(view("SELECT 1 AS VIEW", Some("d")), None);
    }

    #[test]
    fn anything_else_is_not_known() {
        assert_eq!(t("CREATE USER u"), None);
        assert_eq!(t("ALTER TABLE t COMMENT 'x'"), None);
        assert_eq!(t("DROP DATABASE d"), None);
        assert_eq!(t("GRANT ALL ON *.* TO u"), None);
        assert_eq!(tables("ALTER TABLE t ADD c INT", None), None);
        assert_eq!(t("ALTER TABLE /* x */ t ADD c INT"), None);
    }
}
