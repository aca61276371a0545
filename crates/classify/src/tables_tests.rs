//! Table-driven tests of the table extractor (pgcat style: SQL in, tables out).

use super::*;

/// `None`: Unknown; `Some(list)`: the tables as `db.t` or `t`.
fn got(sql: &str) -> Option<Vec<String>> {
    match tables(sql) {
        Tables::Unknown => None,
        Tables::Known(v) => Some(
            v.iter()
                .map(|t| match &t.db {
                    Some(d) => format!("{d}.{}", t.name),
                    None => t.name.to_string(),
                })
                .collect(),
        ),
    }
}

const CASES: &[(&str, Option<&[&str]>)] = &[
    ("SELECT 1", Some(&[])),
    ("SELECT @@server_id", Some(&[])),
    ("SELECT * FROM t", Some(&["t"])),
    (
        "select * from shop.report_daily where d > 1",
        Some(&["shop.report_daily"]),
    ),
    (
        "SELECT * FROM `shop`.`report daily`",
        Some(&["shop.report daily"]),
    ),
    ("SELECT * FROM `we``ird`", Some(&["we`ird"])),
    (
        "SELECT a FROM t1, t2 AS x, db.t3 y WHERE 1",
        Some(&["t1", "t2", "db.t3"]),
    ),
    (
        "SELECT * FROM t1 JOIN t2 ON t1.a = t2.a LEFT JOIN t3 USING (a)",
        Some(&["t1", "t2", "t3"]),
    ),
    (
        "SELECT * FROM t1 INNER JOIN t2 ON t1.a = t2.a, t3",
        Some(&["t1", "t2", "t3"]),
    ),
    (
        "SELECT * FROM (t1 CROSS JOIN t2) JOIN t3 ON 1",
        Some(&["t1", "t2", "t3"]),
    ),
    (
        "SELECT * FROM t1 STRAIGHT_JOIN t2 ON 1",
        Some(&["t1", "t2"]),
    ),
    (
        "SELECT * FROM (SELECT a FROM t1) d, t2",
        Some(&["t1", "t2"]),
    ),
    (
        "SELECT * FROM t1 WHERE a IN (SELECT a FROM db2.t2)",
        Some(&["t1", "db2.t2"]),
    ),
    (
        "SELECT (SELECT MAX(a) FROM t2) FROM t1",
        Some(&["t2", "t1"]),
    ),
    (
        "SELECT * FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.a = t1.a)",
        Some(&["t1", "t2"]),
    ),
    (
        "SELECT a FROM t1 UNION ALL SELECT a FROM t2",
        Some(&["t1", "t2"]),
    ),
    (
        "(SELECT a FROM t1) UNION (SELECT a FROM t2)",
        Some(&["t1", "t2"]),
    ),
    (
        "WITH c AS (SELECT * FROM t1) SELECT * FROM c JOIN t2 ON 1",
        Some(&["t1", "t2"]),
    ),
    (
        "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r) SELECT * FROM r",
        Some(&[]),
    ),
    (
        "WITH a AS (SELECT 1), b AS (SELECT * FROM t) SELECT * FROM a, b",
        Some(&["t"]),
    ),
    (
        "WITH c AS (SELECT 1) SELECT * FROM c; SELECT * FROM c",
        Some(&["c"]),
    ),
    ("SELECT a FROM t GROUP BY a WITH ROLLUP", Some(&["t"])),
    ("SELECT * FROM t FOR UPDATE", Some(&["t"])),
    (
        "SELECT * FROM t1 FORCE INDEX (PRIMARY) JOIN t2 USE INDEX FOR JOIN (i) ON 1",
        Some(&["t1", "t2"]),
    ),
    ("SELECT * FROM t PARTITION (p0) AS x", Some(&["t"])),
    (
        "SELECT EXTRACT(YEAR FROM d), TRIM(LEADING 'x' FROM s) FROM t",
        Some(&["t"]),
    ),
    (
        "SELECT SUBSTRING((SELECT n FROM names) FROM 2)",
        Some(&["names"]),
    ),
    (
        "SELECT COUNT(*), CAST(a AS CHAR(10)), REPLACE(b, 'x', 'y') FROM t",
        Some(&["t"]),
    ),
    (
        "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (a INT PATH '$')) j",
        Some(&[]),
    ),
    ("SELECT 1 FROM DUAL", Some(&[])),
    ("TABLE t1", Some(&["t1"])),
    ("VALUES ROW(1, 2)", Some(&[])),
    (
        "SELECT 'FROM x', `from` FROM t /* FROM y */ -- FROM z",
        Some(&["t"]),
    ),
    ("SELECT * FROM t1; SELECT * FROM t2", Some(&["t1", "t2"])),
    ("SELECT * FROM t1 a, t1 b", Some(&["t1"])),
    ("INSERT INTO t (a, b) VALUES (1, 2)", Some(&["t"])),
    ("INSERT t VALUES (1)", Some(&["t"])),
    (
        "INSERT IGNORE INTO db.t SELECT * FROM s",
        Some(&["db.t", "s"]),
    ),
    (
        "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2",
        Some(&["t"]),
    ),
    ("REPLACE INTO t SET a = 1", Some(&["t"])),
    ("UPDATE t SET a = 1 WHERE id = 2", Some(&["t"])),
    (
        "UPDATE LOW_PRIORITY t1, t2 SET t1.a = t2.a",
        Some(&["t1", "t2"]),
    ),
    (
        "UPDATE t1 JOIN t2 ON t1.id = t2.id SET t1.a = (SELECT 1 FROM t3)",
        Some(&["t1", "t2", "t3"]),
    ),
    ("DELETE FROM t", Some(&["t"])),
    (
        "DELETE FROM t WHERE id IN (SELECT id FROM u)",
        Some(&["t", "u"]),
    ),
    ("DELETE t1, t2 FROM t1 JOIN t2 ON 1", Some(&["t1", "t2"])),
    ("DELETE FROM t1 USING t1 JOIN t2 ON 1", Some(&["t1", "t2"])),
    ("/*!SELECT*/ * FROM t", Some(&["t"])),
    // Unknown: cannot be sure.
    ("SELECT f(a) FROM t", None),
    ("SELECT db.f(a) FROM t", None),
    ("SELECT `f`(a) FROM t", None),
    ("SELECT * FROM t /*!80000 JOIN u ON 1 */", None),
    ("SELECT * FROM t WHERE a = 'x\\' FROM u'", None),
    ("SELECT * FROM t WHERE a = 'unterminated", None),
    ("SELECT (a FROM t", None),
    ("SHOW TABLES", None),
    ("CALL p()", None),
    ("SET @a = 1", None),
    ("SELECT 1; DROP TABLE t", None),
    ("SELECT * FROM", None),
    ("SELECT * FROM 1x", None),
    ("", Some(&[])),
];

#[test]
fn table_driven() {
    let mut bad = Vec::new();
    for (sql, want) in CASES {
        let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let have = got(sql);
        if have != want {
            bad.push(format!("{sql:?}: want {want:?}, got {have:?}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn resolve_uses_session_db() {
    let Tables::Known(v) = tables("SELECT * FROM t JOIN o.u ON 1") else {
        panic!("unknown")
    };
    assert_eq!(v[0].resolve(Some("shop")), Some(("shop", "t")));
    assert_eq!(v[0].resolve(None), None);
    assert_eq!(v[1].resolve(None), Some(("o", "u")));
}

#[test]
fn deep_nesting_is_unknown_not_a_stack_overflow() {
    for open in ["(", "(SELECT a FROM "] {
        let n = 50_000;
        let sql = format!("SELECT * FROM {}t{}", open.repeat(n), ")".repeat(n));
        assert_eq!(tables(&sql), Tables::Unknown);
    }
    let ok = format!("SELECT * FROM {}t{}", "(".repeat(10), ")".repeat(10));
    assert_eq!(got(&ok), Some(vec!["t".to_string()]));
}

proptest::proptest! {
    #[test]
    fn never_panics(s in "\\PC{0,200}") {
        let _ = tables(&s);
    }

    #[test]
    fn sql_fragments_never_panic(parts in proptest::collection::vec(
        proptest::sample::select(vec![
            "SELECT", "FROM", "t", ",", "(", ")", "JOIN", "ON", "WITH", "AS", "x", ".",
            "UPDATE", "INSERT", "INTO", "USING", "DELETE", ";", "'s'", "`q`", "f(", "TABLE",
        ]),
        0..40,
    )) {
        let _ = tables(&parts.join(" "));
    }
}
