//! classify never panics: property tests over arbitrary and SQL-flavoured
//! strings, plus an ignored timing test for a realistic query mix.

use causeway_classify::{causeway_command, classify, leading_comment_options, Route};
use proptest::prelude::*;

fn all(s: &str) {
    let c = classify(s);
    let _ = c.reason.as_str();
    let _ = causeway_command(s);
    let _ = leading_comment_options(s);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        all(&s);
    }

    #[test]
    fn sql_fragments_never_panic(parts in proptest::collection::vec(prop_oneof![
        Just("SELECT"), Just("select"), Just(" "), Just("'"), Just("\""), Just("`"),
        Just("\\"), Just("/*"), Just("*/"), Just("/*!"), Just("/*!50000"), Just("/*M!"),
        Just("/*+"), Just("--"), Just("-- "), Just("#"), Just("\n"), Just(";"), Just("("),
        Just(")"), Just("@"), Just("@@"), Just(":="), Just("FOR"), Just("UPDATE"),
        Just("LOCK"), Just("INTO"), Just("GET_LOCK("), Just("f("), Just("WITH"), Just("x"),
        Just("SET"), Just("causeway."), Just("="), Just(","), Just("é"), Just("1"),
        Just("SHOW"), Just("START TRANSACTION"), Just("READ ONLY"), Just("USE"),
    ], 0..24)) {
        let s: String = parts.concat();
        all(&s);
    }

    /// Anything hidden in a plain comment or a string never changes a read.
    #[test]
    fn comments_and_strings_are_inert(body in "[a-zA-Z0-9 ;@:=()_.,]{0,40}") {
        let sql = format!("SELECT a /* {} */ FROM t WHERE b = '{}'", body.replace("*/", ""), body);
        prop_assert_eq!(classify(&sql).route, Route::Replica);
    }
}

#[test]
#[ignore = "timing; run with --ignored --nocapture in release mode"]
fn timing_realistic_mix() {
    let mix = [
        "SELECT * FROM users WHERE id = 42",
        "SELECT u.id, u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE o.created_at > NOW() - INTERVAL 1 DAY ORDER BY o.total DESC LIMIT 20",
        "INSERT INTO events (user_id, kind, payload) VALUES (1, 'click', '{\"a\":1}')",
        "UPDATE users SET last_seen = NOW() WHERE id = 42",
        "/* causeway token=3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5 */ SELECT 1",
        "BEGIN",
        "COMMIT",
        "SET autocommit = 1",
        "SELECT COUNT(*) FROM orders WHERE status IN ('new', 'paid')",
        "SELECT * FROM t FOR UPDATE",
        "SHOW TABLES",
        "WITH c AS (SELECT id FROM t WHERE a > 1) SELECT * FROM c JOIN u USING (id)",
    ];
    let rounds = 20_000;
    let start = std::time::Instant::now();
    let mut replicas = 0usize;
    for _ in 0..rounds {
        for q in mix {
            if classify(std::hint::black_box(q)).route == Route::Replica {
                replicas += 1;
            }
        }
    }
    let n = rounds * mix.len();
    let per = start.elapsed() / n as u32;
    println!("{n} classifications, {per:?} each, {replicas} to replicas");
}

#[test]
#[ignore = "timing; run with --ignored --nocapture in release mode"]
fn timing_per_query() {
    for q in [
        "SELECT * FROM users WHERE id = 42",
        "INSERT INTO events (user_id, kind, payload) VALUES (1, 'click', '{\"a\":1}')",
        "BEGIN",
        "SET autocommit = 1",
        "SELECT * FROM t FOR UPDATE",
    ] {
        let start = std::time::Instant::now();
        for _ in 0..100_000 {
            std::hint::black_box(classify(std::hint::black_box(q)));
        }
        println!("{:?} {q}", start.elapsed() / 100_000);
    }
}
