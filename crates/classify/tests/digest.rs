//! Digest normalisation: a table of SQL strings and their digest text, and
//! properties (no literal of the input survives; idempotent; total).

use causeway_classify::digest;
use proptest::prelude::*;

fn text(s: &str) -> String {
    digest(s, false).text
}

#[test]
fn table() {
    let cases: &[(&str, &str)] = &[
        (
            "SELECT c FROM sbtest1 WHERE id=5012",
            "SELECT c FROM sbtest1 WHERE id = ?",
        ),
        (
            "select  c\n from sbtest1 where   id = 7 ;",
            "SELECT c FROM sbtest1 WHERE id = ?",
        ),
        (
            "SELECT * FROM t WHERE a IN (1, 2, 3)",
            "SELECT * FROM t WHERE a IN (...)",
        ),
        (
            "SELECT * FROM t WHERE a in ('x')",
            "SELECT * FROM t WHERE a IN (...)",
        ),
        (
            "SELECT * FROM t WHERE a NOT IN (-1,2)",
            "SELECT * FROM t WHERE a NOT IN (...)",
        ),
        (
            "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = 1)",
            "SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE c = ?)",
        ),
        (
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3,'z')",
            "INSERT INTO t(a, b) VALUES (?, ?)",
        ),
        (
            "INSERT INTO t VALUES (1, now()), (2, 'y')",
            "INSERT INTO t VALUES (?, NOW()), (?, ?)",
        ),
        ("/* causeway consistency=strong */ SELECT 1", "SELECT ?"),
        (
            "SELECT /*+ BKA(t) */ a -- tail\n FROM t # x",
            "SELECT a FROM t",
        ),
        (
            "SELECT /*!40001 SQL_NO_CACHE */ a FROM t",
            "SELECT SQL_NO_CACHE a FROM t",
        ),
        (
            "SELECT _utf8mb4'abc', N'x', X'ff', 0x1F, b'01', TRUE",
            "SELECT ?, ?, ?, ?, ?, ?",
        ),
        (
            "SELECT a-1, -2, a - -3 FROM t",
            "SELECT a - ?, ?, a - ? FROM t",
        ),
        (
            "SELECT count(*), Sum(k) FROM t",
            "SELECT COUNT(*), SUM(k) FROM t",
        ),
        (
            "SELECT `Users`.`id` FROM `Users` WHERE x<=1 AND y <> 2 AND z<=>3",
            "SELECT `Users`.`id` FROM `Users` WHERE x <= ? AND y <> ? AND z <=> ?",
        ),
        (
            "UPDATE sbtest1 SET k=k+1 WHERE id=4999",
            "UPDATE sbtest1 SET k = k + ? WHERE id = ?",
        ),
        (
            "SELECT @x := 1, @@session.sql_mode",
            "SELECT @x := ?, @@session.sql_mode",
        ),
        ("SELECT j->>'$.a' FROM t", "SELECT j ->> ? FROM t"),
        ("SELECT 1; SELECT 'a';", "SELECT ?; SELECT ?"),
        (
            "SELECT a FROM t WHERE b IS NULL LIMIT 10",
            "SELECT a FROM t WHERE b IS NULL LIMIT ?",
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(text(sql), *want, "{sql}");
    }
}

#[test]
fn same_shape_same_hash() {
    let a = digest("SELECT c FROM t WHERE id = 1", false);
    let b = digest("select c FROM t   where id=99", false);
    let c = digest("SELECT c FROM t WHERE k = 1", false);
    assert_eq!(a, b);
    assert_ne!(a.hash, c.hash);
}

#[test]
fn no_backslash_escapes_is_honoured() {
    // escapes on: one string; off: the string ends at \' and `secret`
    // becomes a word, then an unterminated string
    let sql = r"SELECT 'a\' secret ' FROM t";
    assert_eq!(digest(sql, false).text, "SELECT ? FROM t");
    assert_eq!(digest(sql, true).text, "SELECT ? secret ?");
}

#[test]
fn unterminated_is_total() {
    for s in [
        "SELECT 'abc",
        "SELECT `abc",
        "SELECT /* x",
        "(((",
        ")))",
        "- - -",
        "IN (",
        "",
    ] {
        let d = digest(s, false);
        assert_eq!(digest(&d.text, false), d, "{s:?}");
    }
}

const TEMPLATES: &[&str] = &[
    "SELECT c FROM t WHERE id = {n} AND name = '{s}'",
    "select * from t where a in ({n}, '{s}', {n}) and b = \"{s}\"",
    "INSERT INTO t (a, b) VALUES ({n}, '{s}'), ({n}, _utf8mb4'{s}')",
    "UPDATE t SET c = '{s}' WHERE k BETWEEN -{n} AND {n}.5",
    "/* causeway token=x */ SELECT '{s}' AS x, {n}e3 FROM dual WHERE y LIKE '%{s}%'",
    "DELETE FROM t WHERE s = N'{s}' OR h = X'{s}' LIMIT {n}",
    "CREATE USER '{s}'@'{s}' IDENTIFIED BY '{s}'; SET PASSWORD FOR '{s}'@\"{s}\" = '{s}'",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn literals_never_survive(
        t in proptest::sample::select(TEMPLATES),
        s in "[a-z]{6,12}",
        n in 100_000u64..u64::MAX,
        nbe in any::<bool>(),
    ) {
        let sql = t.replace("{s}", &format!("lit{s}")).replace("{n}", &n.to_string());
        let d = digest(&sql, nbe);
        prop_assert!(!d.text.contains(&format!("lit{s}")), "{sql} -> {}", d.text);
        prop_assert!(!d.text.contains(&n.to_string()), "{sql} -> {}", d.text);
    }

    #[test]
    fn idempotent_on_sql(
        t in proptest::sample::select(TEMPLATES),
        s in "[a-z ]{0,12}",
        n in any::<u32>(),
    ) {
        let sql = t.replace("{s}", &s).replace("{n}", &n.to_string());
        let d = digest(&sql, false);
        prop_assert_eq!(digest(&d.text, false), d);
    }

    #[test]
    fn idempotent_on_anything(s in any::<String>(), nbe in any::<bool>()) {
        let d = digest(&s, nbe);
        prop_assert_eq!(digest(&d.text, nbe), d);
    }

    #[test]
    fn idempotent_on_fragments(parts in proptest::collection::vec(proptest::sample::select(&[
        "SELECT", " ", "IN", "(", ")", ",", "1", "'a'", "-", "+", "<", "=", ">", "!", ".",
        "VALUES", "x", "`q`", "_utf8", "N", "?", ";", "/*", "*/", "--", "\n", "@", "@@", ":=",
        "count", "\\", "\"", "NULL", "TRUE", "|", "&",
    ][..]), 0..30)) {
        let s: String = parts.concat();
        let d = digest(&s, false);
        prop_assert_eq!(digest(&d.text, false), d, "{:?}", s);
    }
}

#[test]
fn digest_commands() {
    use causeway_classify::{causeway_command, classify, CausewayCommand};
    assert_eq!(
        causeway_command("show causeway digests"),
        Some(CausewayCommand::ShowDigests)
    );
    assert_eq!(
        causeway_command("RESET CAUSEWAY DIGESTS;"),
        Some(CausewayCommand::ResetDigests)
    );
    assert_eq!(causeway_command("RESET CAUSEWAY"), None);
    assert!(classify("RESET CAUSEWAY DIGESTS").effects.causeway_var);
    assert!(!classify("RESET MASTER").effects.causeway_var);
}

/// Hostile shapes for the digest's own work (nesting, folding, signs).
fn hostile(n: usize) -> Vec<String> {
    vec![
        format!("SELECT 1 FROM t WHERE a IN ({}0)", "1, ".repeat(n)),
        format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        format!("SELECT a IN ({}?{}", "? IN (".repeat(n), ")".repeat(n)),
        format!("INSERT INTO t VALUES {}(1, 2)", "(1, 2), ".repeat(n)),
        format!("INSERT INTO t VALUES {}(1)", "((1), (1)), ".repeat(n)),
        format!("SELECT {}1", "- ".repeat(n)),
        format!("SELECT {}", "count(".repeat(n)),
        format!("SELECT {}'x'", "_utf8mb4".repeat(n)),
    ]
}

fn min_time(s: &str) -> std::time::Duration {
    let mut buf = String::new();
    (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(causeway_classify::digest_into(s, false, &mut buf));
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Digesting is linear in the input: 16x the input costs under 100x the
/// time (a quadratic path costs 256x; see robustness.rs for the margin).
#[test]
fn digest_is_linear_in_input_length() {
    for (i, (s, l)) in hostile(1000).iter().zip(hostile(16_000)).enumerate() {
        let mut ratio = f64::INFINITY;
        for _ in 0..3 {
            let r = min_time(&l).as_secs_f64() / min_time(s).as_secs_f64().max(1e-9);
            ratio = ratio.min(r);
            if ratio < 100.0 {
                break;
            }
        }
        assert!(
            ratio < 100.0,
            "shape {i}: 16x the input took {ratio:.1}x as long"
        );
    }
}

/// A quoted user variable at the very start is not an account's host: the
/// digest of ` @"` and of its own digest agree (found by the fragments
/// property in CI).
#[test]
fn a_leading_quoted_user_variable_is_not_a_host() {
    let d = digest(" @\"", false);
    assert_eq!(digest(&d.text, false), d);
    assert_eq!(digest("'u'@'h'", false).text, "? @ ?");
}
