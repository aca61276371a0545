//! classify never panics: property tests over arbitrary and SQL-flavoured
//! strings; and its cost grows linearly with hostile input (8× the text
//! costs well under the 64× of a quadratic scan).

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

/// Shapes of hostile statements, each `n` units long: long token lists,
/// comments, strings, quoted identifiers, unterminated constructs and
/// executable comments.
fn hostile_shapes(n: usize) -> Vec<String> {
    vec![
        format!("SELECT {}1 FROM t", "a, ".repeat(n)),
        format!("SELECT 1 FROM t WHERE a IN ({}0)", "1, ".repeat(n)),
        format!("/* {} */ SELECT 1", "x ".repeat(n)),
        format!("SELECT '{}'", "x\\'".repeat(n)),
        format!("SELECT `{}` FROM t", "c".repeat(n)),
        format!("SELECT 1 {}", "-- c\n".repeat(n)),
        format!("SELECT 1 /*!50700 {} */", "a ".repeat(n)),
        format!("SELECT '{}", "x".repeat(n)),
        format!("/* {}", "x".repeat(n)),
        format!("UPDATE t SET {}a = 1", "a = 1, ".repeat(n)),
        "SELECT 1; ".repeat(n),
        format!("SET {}@x = 1", "@a := 1, ".repeat(n)),
    ]
}

/// The fastest of `reps` runs of classifying every shape (the minimum
/// filters out time stolen by other processes on a loaded machine).
fn min_time(shapes: &[String], reps: usize) -> std::time::Duration {
    (0..reps)
        .map(|_| {
            let start = std::time::Instant::now();
            for s in shapes {
                std::hint::black_box(classify(std::hint::black_box(s)));
                std::hint::black_box(causeway_command(std::hint::black_box(s)));
                std::hint::black_box(leading_comment_options(std::hint::black_box(s)));
            }
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Classification is linear in the statement's length: 16× the input must
/// cost under 100× the time, where a quadratic scan costs 256×. The room
/// above 16× is measured, not slack for its own sake: in a debug build,
/// once the token vectors outgrow the CPU caches and malloc's mmap
/// threshold, one doubling of the input costs up to 5× (n = 4000 → 8000
/// words: 2.2 ms → 11.4 ms), later doublings 2×; 16× the input measured
/// 13–35× the time per shape here. Client text is hostile, so a superlinear
/// path would be a denial of service. Each shape is measured on its own so
/// a quadratic one cannot hide behind linear ones. Timing of a realistic
/// statement mix is the criterion bench `benches/classify.rs`.
#[test]
fn classification_is_linear_in_input_length() {
    let n = 1_000;
    let small = hostile_shapes(n);
    let large = hostile_shapes(16 * n);
    for (i, (s, l)) in small.iter().zip(&large).enumerate() {
        let mut ratio = f64::INFINITY;
        // up to three attempts: a loaded machine may spoil one sample, a
        // quadratic scan fails them all
        for _ in 0..3 {
            let t_small = min_time(std::slice::from_ref(s), 5).as_secs_f64();
            let t_large = min_time(std::slice::from_ref(l), 5).as_secs_f64();
            ratio = ratio.min(t_large / t_small.max(1e-9));
            if ratio < 100.0 {
                break;
            }
        }
        let head: String = s.chars().take(40).collect();
        assert!(
            ratio < 100.0,
            "shape {i} ({head}...): 16x the input took {ratio:.1}x as long"
        );
    }
}
