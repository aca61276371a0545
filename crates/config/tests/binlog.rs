//! The `[binlog]` section and the fresh-read keys of `[routing]`:
//! defaults, every key, validation with file, line and key, unknown keys
//! refused.

mod common;

use causeway_config::{Config, Consistency};
use common::MINIMAL;

fn parse(extra: &str) -> Result<Config, causeway_config::ConfigError> {
    Config::from_str_named(&format!("{MINIMAL}{extra}"), "t.toml")
}

#[test]
fn defaults_use_the_monitor_account() {
    let c = parse("").unwrap();
    assert_eq!(c.binlog.max_tables, 10_000);
    assert_eq!(
        c.binlog_credentials(),
        ("monitor".to_string(), "monitorpw".to_string())
    );
    assert!(!c.routing.fresh_sync);
}

#[test]
fn every_key_read_and_round_trips() {
    let c = parse(
        "\n[routing]\nconsistency = \"fresh\"\nfresh_sync = true\n\n[binlog]\nuser = \"repl\"\npassword = \"replpw\"\nmax_tables = 64\n",
    )
    .unwrap();
    assert_eq!(c.routing.consistency, Consistency::Fresh);
    assert!(c.routing.fresh_sync);
    assert_eq!(c.binlog.max_tables, 64);
    assert_eq!(
        c.binlog_credentials(),
        ("repl".to_string(), "replpw".to_string())
    );
    let text = toml::to_string(&c).unwrap();
    let back = Config::from_str_named(&text, "round.toml").unwrap();
    assert_eq!(back.binlog, c.binlog);
    assert_eq!(back.routing, c.routing);
}

#[test]
fn invalid_values_name_file_line_and_key() {
    let cases = [
        (
            "\n[binlog]\nmax_tables = 0\n",
            "binlog.max_tables",
            Some(14),
        ),
        (
            "\n[binlog]\nmax_tables = 2000000\n",
            "binlog.max_tables",
            Some(14),
        ),
        ("\n[binlog]\nhost = \"x\"\n", "host", Some(14)),
        ("\n[routing]\nfresh_sync = 1\n", "fresh_sync", Some(14)),
    ];
    for (extra, key, line) in cases {
        let e = parse(extra).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("t.toml"), "{shown}");
        assert!(shown.contains(key), "{shown} lacks {key}");
        assert_eq!(e.line(), line, "{shown}");
    }
}
