//! Shared by the config test binaries: a minimal valid file and parsing
//! helpers that assert errors name the line.
#![allow(dead_code)]

use causeway_config::{Config, ConfigError};

/// The smallest valid file: one user, a primary, the monitor account. It
/// is 11 lines; text appended to it starts on line 12.
pub const MINIMAL: &str = r#"[[users]]
name = "app"
password = "apppw"

[primary]
name = "primary"
address = "127.0.0.1:3306"

[monitor]
user = "monitor"
password = "monitorpw"
"#;

/// Parses `text` as the file `t.toml`.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_named(text, "t.toml")
}

/// The error `text` must give.
pub fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

/// Assert the error's display string and line.
pub fn assert_err(text: &str, line: Option<usize>, contains: &[&str]) {
    let e = err(text);
    let shown = e.to_string();
    assert_eq!(e.line(), line, "wrong line in: {shown}");
    for c in contains {
        assert!(shown.contains(c), "{shown:?} does not contain {c:?}");
    }
    assert!(!shown.contains('\n'), "multi-line message: {shown:?}");
}
