//! Fuzz target: every text entry point of the classifier (and through them
//! the lexer and the session-statement parser) on arbitrary bytes, viewed
//! as UTF-8 when they are and lossily otherwise, as the proxy does. Must
//! never panic; unterminated or not-understood text goes to the primary;
//! a statement's digest is idempotent.

#![no_main]

use causeway_classify::{
    causeway_command, classify, digest, leading_comment_options, set_targets, Reason, Route,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = classify(&text);
    if matches!(c.reason, Reason::Unterminated | Reason::Unknown) {
        assert_eq!(c.route, Route::Primary);
    }
    let _ = causeway_command(&text);
    let _ = leading_comment_options(&text);
    // digests are total and idempotent, with either backslash reading
    for nbe in [false, true] {
        let d = digest(&text, nbe);
        assert_eq!(digest(&d.text, nbe), d);
    }
    if set_targets(&text).is_some() {
        assert_eq!(c.route, Route::Primary);
    }
});
