//! Fuzz target: `kill_check` on arbitrary bytes (any character set). Must
//! never panic; a whole KILL starts with the KILL keyword.

#![no_main]

use causeway_classify::{kill_check, KillCheck};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let KillCheck::Whole(k) = kill_check(data) {
        assert!(k.get(..4).is_some_and(|w| w.eq_ignore_ascii_case("kill")));
    }
});
