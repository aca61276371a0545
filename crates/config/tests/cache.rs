//! The `[cache]` section: defaults, every key, validation with file, line
//! and key, unknown keys refused.

mod common;

use causeway_config::{Config, Invalidation};
use common::MINIMAL;

fn parse(extra: &str) -> Result<Config, causeway_config::ConfigError> {
    Config::from_str_named(&format!("{MINIMAL}{extra}"), "t.toml")
}

#[test]
fn defaults_off() {
    let c = parse("").unwrap();
    assert!(!c.cache.enabled);
    assert_eq!(c.cache.max_memory_mb, 256);
    assert_eq!(c.cache.max_bytes(), 256 * 1024 * 1024);
    assert_eq!(c.cache.invalidation, Invalidation::Binlog);
    // a disabled cache needs no reader account
    assert!(c.cache.user.is_empty());
    // no shared level unless asked for
    assert!(c.cache.redis_url.is_empty());
    assert_eq!(c.cache.redis_timeout_ms, 5);
}

#[test]
fn every_key_read_and_round_trips() {
    let c = parse(
        "\n[cache]\nenabled = true\nmax_memory_mb = 64\ninvalidation = \"ttl\"\nuser = \"repl\"\npassword = \"replpw\"\nredis_timeout_ms = 7\n",
    )
    .unwrap();
    assert_eq!(c.cache.redis_timeout_ms, 7);
    assert!(c.cache.enabled);
    assert_eq!(c.cache.max_memory_mb, 64);
    assert_eq!(c.cache.invalidation, Invalidation::Ttl);
    assert_eq!(c.cache.user, "repl");
    assert_eq!(c.cache.password, "replpw");
    let text = toml::to_string(&c).unwrap();
    let back = Config::from_str_named(&text, "round.toml").unwrap();
    assert_eq!(back.cache, c.cache);
}

#[test]
fn invalid_values_name_file_line_and_key() {
    let cases = [
        (
            "\n[cache]\nenabled = true\nmax_memory_mb = 0\nuser = \"r\"\n",
            "cache.max_memory_mb",
            Some(15),
        ),
        (
            "\n[cache]\nenabled = true\nmax_memory_mb = 2000000\nuser = \"r\"\n",
            "cache.max_memory_mb",
            Some(15),
        ),
        (
            "\n[cache]\ninvalidation = \"sometimes\"\n",
            "invalidation",
            Some(14),
        ),
        ("\n[cache]\nttl = 5\n", "ttl", Some(14)),
        (
            "\n[cache]\nenabled = true\nuser = \"r\"\nredis_url = \"http://x\"\n",
            "cache.redis_url",
            Some(16),
        ),
        (
            "\n[cache]\nenabled = true\ninvalidation = \"ttl\"\nredis_url = \"redis://127.0.0.1:6379\"\n",
            "cache.redis_url",
            Some(16),
        ),
        (
            "\n[cache]\nenabled = true\nuser = \"r\"\nredis_timeout_ms = 0\n",
            "cache.redis_timeout_ms",
            Some(16),
        ),
    ];
    for (extra, key, line) in cases {
        let e = parse(extra).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("t.toml"), "{shown}");
        assert!(shown.contains(key), "{shown} lacks {key}");
        // a missing key has no line of its own
        assert_eq!(e.line(), line, "{shown}");
    }
}

#[test]
fn binlog_mode_defaults_to_the_monitor_account() {
    let c = parse("\n[cache]\nenabled = true\n").unwrap();
    assert_eq!(c.binlog_credentials().0, c.monitor.user);
    let c = parse("\n[cache]\nenabled = true\nuser = \"c\"\n").unwrap();
    assert_eq!(c.binlog_credentials().0, "c");
}

#[test]
fn ttl_mode_needs_no_account() {
    let c = parse("\n[cache]\nenabled = true\ninvalidation = \"ttl\"\n").unwrap();
    assert!(c.cache.enabled);
    assert_eq!(c.cache.invalidation, Invalidation::Ttl);
}

#[test]
fn redis_url_read() {
    let c = parse(
        "\n[cache]\nenabled = true\nuser = \"r\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nredis_timeout_ms = 20\n",
    )
    .unwrap();
    assert_eq!(c.cache.redis_url, "redis://127.0.0.1:6379/0");
    assert_eq!(c.cache.redis_timeout_ms, 20);
}
