//! Time-bounded fuzzing on stable Rust (proptest, fixed case counts) of
//! `GtidSet::parse` and `Gtid::parse`: arbitrary bytes (lossily as text,
//! as the proxy sees a client's token), fragment soups of UUIDs, tags,
//! separators and extreme numbers, and valid sets cut at every position.
//! Properties: no panic; whatever parses prints to a form that reparses to
//! the same set.

use causeway_gtid::{Gtid, GtidSet};
use proptest::prelude::*;

const UUID: &str = "3E11FA47-71CA-11E1-9E33-C80AA9429562";

fn check(text: &str) {
    if let Ok(set) = GtidSet::parse(text) {
        let printed = set.to_string();
        let again = GtidSet::parse(&printed).expect("canonical output reparses");
        assert_eq!(again, set, "{text:?}");
        assert!(set.contains(&set));
    }
    if let Ok(g) = Gtid::parse(text) {
        assert_eq!(Gtid::parse(&g.to_string()).expect("reparses"), g);
    }
}

const FRAGMENTS: &[&str] = &[
    UUID,
    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
    "3E11FA4771CA11E19E33C80AA9429562",
    ":",
    ",",
    "-",
    "1",
    "5",
    "0",
    "18446744073709551615",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999",
    "tag",
    "a_b",
    " ",
    "\n",
    "\t",
    "\u{0}",
    "é",
    "😀",
    "{",
    "}",
    "x",
    ":1-5",
    ":7",
    ",\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn arbitrary_strings(s in any::<String>()) {
        check(&s);
    }

    #[test]
    fn fragment_soup(parts in proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..30)) {
        check(&parts.concat());
    }

    #[test]
    fn valid_sets_cut_and_mutated(
        ranges in proptest::collection::vec((1u64..1000, 0u64..50), 1..6),
        tag in proptest::option::of("[a-z_]{1,8}"),
        at in any::<usize>(),
        with in any::<char>(),
    ) {
        let body: Vec<String> = ranges.iter().map(|(a, n)| format!("{a}-{}", a + n)).collect();
        let text = match tag {
            Some(t) => format!("{UUID}:{t}:{}", body.join(":")),
            None => format!("{UUID}:{}", body.join(":")),
        };
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            check(&text[..cut]);
        }
        let mut chars: Vec<char> = text.chars().collect();
        let i = at % chars.len();
        chars[i] = with;
        check(&chars.into_iter().collect::<String>());
    }
}
