//! Time-bounded fuzzing on stable Rust (proptest with fixed case counts):
//! every public entry point of the classifier — `classify`,
//! `causeway_command`, `leading_comment_options`, `kill_check`,
//! `set_targets` (and through them the lexer and the session-statement
//! parser) — gets arbitrary bytes, invalid UTF-8, unterminated strings and
//! comments, NUL bytes and multi-byte characters cut at every position.
//! Properties: no panic, and the cheap sanity rules (what is not understood
//! goes to the primary; a whole `KILL` really is one).

use causeway_classify::{
    causeway_command, classify, kill_check, leading_comment_options, set_targets, KillCheck,
    Reason, Route,
};
use proptest::prelude::*;

/// Runs every entry point on `s`; checks the sanity properties.
fn all_str(s: &str) {
    let c = classify(s);
    let _ = c.reason.as_str();
    if c.reason == Reason::Unterminated || c.reason == Reason::Unknown {
        assert_eq!(c.route, Route::Primary, "{s:?}");
    }
    let _ = causeway_command(s);
    let _ = leading_comment_options(s);
    if let Some(names) = set_targets(s) {
        assert!(!names.is_empty());
        assert_eq!(c.route, Route::Primary, "{s:?}");
    }
    all_bytes(s.as_bytes());
}

fn all_bytes(b: &[u8]) {
    if let KillCheck::Whole(k) = kill_check(b) {
        assert!(
            k.get(..4).is_some_and(|w| w.eq_ignore_ascii_case("kill")),
            "{k:?}"
        );
    }
    // the proxy classifies invalid UTF-8 through a lossy view
    let lossy = String::from_utf8_lossy(b);
    let _ = classify(&lossy);
    let _ = causeway_command(&lossy);
    let _ = leading_comment_options(&lossy);
    let _ = set_targets(&lossy);
}

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "SET",
    "USE",
    "KILL",
    "QUERY",
    "PREPARE",
    "FROM",
    "autocommit",
    "NAMES",
    "SESSION",
    "GLOBAL",
    "@@",
    "@",
    "@@session.",
    "causeway.",
    "causeway",
    " ",
    "'",
    "\"",
    "`",
    "\\",
    "/*",
    "*/",
    "/*!",
    "/*!80000",
    "/*M!",
    "/*+",
    "--",
    "-- ",
    "#",
    "\n",
    ";",
    "(",
    ")",
    "=",
    ":=",
    ",",
    ".",
    "-",
    "1",
    "é",
    "😀",
    "€",
    "\u{0}",
    "ON",
    "x",
    "FOR",
    "UPDATE",
    "INTO",
    "START TRANSACTION",
    "READ ONLY",
    "COLLATE",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        all_bytes(&b);
        if let Ok(s) = std::str::from_utf8(&b) {
            all_str(s);
        }
    }

    #[test]
    fn arbitrary_strings(s in any::<String>()) {
        all_str(&s);
    }

    #[test]
    fn sql_fragments(parts in proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..24)) {
        all_str(&parts.concat());
    }

    /// A fragment soup with raw non-UTF-8 bytes mixed in.
    #[test]
    fn fragments_with_raw_bytes(
        parts in proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(FRAGMENTS).prop_map(|f| f.as_bytes().to_vec()),
                proptest::collection::vec(0x80u8..=0xFF, 1..3),
            ],
            0..24,
        )
    ) {
        all_bytes(&parts.concat());
    }

    /// An unterminated string or comment always routes to the primary.
    #[test]
    fn unterminated_is_primary(
        head in "[a-zA-Z0-9 ,=@.]{0,20}",
        opener in proptest::sample::select(&["'", "\"", "`", "/*", "/*!"][..]),
        tail in any::<String>(),
    ) {
        let tail: String = tail.chars().filter(|c| !matches!(c, '\'' | '"' | '`' | '*' | '\\')).collect();
        let sql = format!("SELECT {head} {opener}{tail}");
        let c = classify(&sql);
        prop_assert_eq!(c.route, Route::Primary);
        all_str(&sql);
    }
}

/// Statements cut at every char boundary, then ended by a multi-byte
/// character (the shape of the panics in issue #10 case 3).
#[test]
fn multibyte_at_every_cut() {
    let bases = [
        "USE 'abc'",
        "SET autocommit = 'ON'",
        "SET autocommit = \"ON\"",
        "SET @@session.sql_mode = 'ANSI', NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'",
        "SELECT @@causeway.token AS `t`, 'x' FROM t WHERE a = \"b\" /* c */ -- d\n",
        "SET @@causeway.token = '3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5'",
        "/* causeway token=x consistency=causal */ SELECT 1",
        "PREPARE s FROM 'KILL 5'; /*!80000 KILL 5 */ KILL QUERY 5",
        "SET @u := `a``b`, @'q' = 1, @\"r\" = 2",
        "START TRANSACTION READ ONLY",
    ];
    let tails = [
        "é", "😀", "€", "\u{0}", "\\é", "'é", "\"é", "`é", "/*é", "@é", "@@é",
    ];
    let mut n = 0;
    for base in bases {
        for cut in (0..=base.len()).filter(|&i| base.is_char_boundary(i)) {
            for tail in tails {
                let sql = format!("{}{tail}", &base[..cut]);
                all_str(&sql);
                n += 1;
            }
        }
    }
    assert!(n > 1000, "{n} inputs");
}

/// The five statements of issue #10 case 3 (and relatives): no panic, not
/// understood, primary.
#[test]
fn issue_10_case_3_inputs() {
    for sql in [
        "USE 'é",
        "USE '😀",
        "SET autocommit = 'é",
        "SET autocommit = \"é",
        "SET autocommit = '€",
        "USE `é",
        "SET @@causeway.token = 'é",
        "SELECT @@causeway.token AS 'é",
        "SET @'é",
        "SET @@`é",
    ] {
        let c = classify(sql);
        assert_eq!(c.route, Route::Primary, "{sql}");
        assert_eq!(c.reason, Reason::Unterminated, "{sql}");
        assert_eq!(causeway_command(sql), None, "{sql}");
        assert_eq!(set_targets(sql), None, "{sql}");
        assert_eq!(kill_check(sql.as_bytes()), KillCheck::None, "{sql}");
        let _ = leading_comment_options(sql);
    }
}

/// Found by `unterminated_is_primary`: MySQL rejects a comment missing its
/// `*/` (also an executable one, also when a `;` hides inside it), and
/// `/*/` does not close itself.
#[test]
fn unclosed_comments_are_primary() {
    for sql in [
        "SELECT 1 /*!",
        "SELECT 1 /*!;",
        "SELECT 1 /*/",
        "SELECT 1 /*!80000 x;",
    ] {
        let c = classify(sql);
        assert_eq!(
            (c.route, c.reason),
            (Route::Primary, Reason::Unterminated),
            "{sql}"
        );
        assert_eq!(set_targets(&sql.replace("SELECT", "SET x =")), None);
    }
    assert_eq!(classify("SELECT 1 /*/ */").route, Route::Replica);
}
