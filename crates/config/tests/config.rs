//! Integration tests for causeway-config: defaults, round-trips, redaction,
//! the example file, TLS sections and generated configs. Refusals of bad
//! files are in `refusals.rs`.

mod common;

use std::time::Duration;

use causeway_config::{Backend, Config, ConfigError, Consistency, OnTimeout};
use common::{assert_err, err, parse, MINIMAL};
use proptest::prelude::*;

#[test]
fn defaults_applied() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:6033");
    assert_eq!(c.server.max_connections, 4096);
    assert_eq!(c.server.connect_timeout(), Duration::from_millis(2000));
    assert_eq!(c.server.pool_max_per_backend, 256);
    assert_eq!(c.server.pool_idle_timeout(), Duration::from_secs(60));
    assert_eq!(c.server.shutdown_drain(), Duration::from_secs(10));
    assert_eq!(c.server.max_client_packet, 64 * 1024 * 1024);
    assert_eq!(c.server.max_client_packet_bytes(), 64 * 1024 * 1024);
    assert_eq!(c.server.login_timeout(), Duration::from_secs(10));
    assert_eq!(c.server.client_idle_timeout_ms, 0);
    assert_eq!(c.server.client_idle_timeout(), None);
    assert_eq!(c.server.max_pending_logins, 1024);
    assert!(c.admin.enabled);
    assert_eq!(c.admin.listen, "127.0.0.1:6080");
    let u = c.user("app").unwrap();
    assert!(!u.admin);
    assert_eq!(u.backend_user, "app");
    assert_eq!(u.backend_password, "apppw");
    assert!(c.user("nobody").is_none());
    assert_eq!(c.primary.weight, 1);
    assert_eq!(c.primary.max_lag_ms, None);
    assert!(c.replicas.is_empty());
    assert_eq!(c.monitor.interval(), Duration::from_secs(1));
    assert_eq!(c.monitor.gtid_interval(), Duration::from_millis(50));
    assert_eq!(c.monitor.connect_timeout(), Duration::from_secs(1));
    assert_eq!(c.routing.consistency, Consistency::Causal);
    assert_eq!(c.routing.wait_timeout(), Duration::from_secs(1));
    assert_eq!(c.routing.on_timeout, OnTimeout::Primary);
    assert_eq!(c.routing.max_lag(), Duration::from_secs(5));
    assert_eq!(c.routing.lag_hysteresis(), Duration::from_millis(500));
    assert_eq!(c.max_lag_for(&c.primary), Duration::from_secs(5));
}

const FULL: &str = r#"
[server]
listen = "0.0.0.0:7000"
max_connections = 10
connect_timeout_ms = 11
pool_max_per_backend = 12
pool_idle_timeout_ms = 13
shutdown_drain_ms = 0
max_client_packet = 2048
login_timeout_ms = 17
client_idle_timeout_ms = 18
max_pending_logins = 19
[admin]
enabled = false
listen = "[::1]:7001"
[[users]]
name = "app"
password = "pw"
admin = true
backend_user = "real"
backend_password = "realpw"
[primary]
name = "p"
address = "db-primary.example.com:3306"
[[replicas]]
name = "r1"
address = "10.0.0.2:3307"
weight = 1000000
max_lag_ms = 700
[[replicas]]
name = "r2"
address = "[fe80::1]:3308"
weight = 0
[monitor]
user = "m"
password = ""
interval_ms = 14
gtid_interval_ms = 15
connect_timeout_ms = 16
[routing]
consistency = "strong"
wait_timeout_ms = 0
on_timeout = "error"
max_lag_ms = 900
lag_hysteresis_ms = 100
"#;

#[test]
fn every_key_read_and_round_trips() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:7000");
    assert_eq!(c.server.max_connections, 10);
    assert_eq!(c.server.connect_timeout_ms, 11);
    assert_eq!(c.server.pool_max_per_backend, 12);
    assert_eq!(c.server.pool_idle_timeout_ms, 13);
    assert_eq!(c.server.shutdown_drain_ms, 0);
    assert_eq!(
        (
            c.server.max_client_packet,
            c.server.login_timeout_ms,
            c.server.client_idle_timeout_ms,
            c.server.max_pending_logins
        ),
        (2048, 17, 18, 19)
    );
    assert_eq!(
        c.server.client_idle_timeout(),
        Some(Duration::from_millis(18))
    );
    assert!(!c.admin.enabled);
    assert_eq!(c.admin.listen, "[::1]:7001");
    let u = &c.users[0];
    assert_eq!(
        (u.name.as_str(), u.password.as_str(), u.admin),
        ("app", "pw", true)
    );
    assert_eq!(
        (u.backend_user.as_str(), u.backend_password.as_str()),
        ("real", "realpw")
    );
    assert_eq!(c.primary.address, "db-primary.example.com:3306");
    assert_eq!(c.primary.host(), "db-primary.example.com");
    assert_eq!(c.primary.port(), 3306);
    let r1 = c.backend("r1").unwrap();
    assert_eq!((r1.weight, r1.max_lag_ms), (1_000_000, Some(700)));
    assert_eq!(c.max_lag_for(r1), Duration::from_millis(700));
    let r2 = &c.replicas[1];
    assert_eq!((r2.weight, r2.max_lag_ms), (0, None));
    assert_eq!((r2.host(), r2.port()), ("fe80::1", 3308));
    assert_eq!(c.max_lag_for(r2), Duration::from_millis(900));
    assert_eq!(c.monitor.user, "m");
    assert_eq!(c.monitor.password, "");
    assert_eq!(
        (
            c.monitor.interval_ms,
            c.monitor.gtid_interval_ms,
            c.monitor.connect_timeout_ms
        ),
        (14, 15, 16)
    );
    assert_eq!(c.routing.consistency, Consistency::Strong);
    assert_eq!(c.routing.wait_timeout_ms, 0);
    assert_eq!(c.routing.on_timeout, OnTimeout::Error);
    assert_eq!(
        (c.routing.max_lag_ms, c.routing.lag_hysteresis_ms),
        (900, 100)
    );

    let again = parse(&c.to_toml_string()).unwrap();
    assert_eq!(again, c);
    let minimal = parse(MINIMAL).unwrap();
    assert_eq!(parse(&minimal.to_toml_string()).unwrap(), minimal);
}

#[test]
fn redaction() {
    let c = parse(FULL).unwrap();
    let red = c.to_toml_string_redacted();
    assert!(!red.contains("realpw"));
    assert!(red.contains("<redacted>"));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("realpw"), "{dbg}");
}

#[test]
fn example_file_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conf/causeway.toml");
    let c = Config::from_file(path).unwrap();
    assert_eq!(c.primary.address, "127.0.0.1:3306");
    let names: Vec<_> = c.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["r1", "r2"]);
    assert_eq!(c.replicas[1].address, "127.0.0.1:3308");
    assert_eq!(c.user("app").unwrap().password, "apppw");
    let admin = c.user("admin").unwrap();
    assert!(admin.admin);
    assert_eq!(admin.password, "adminpw");
    assert_eq!(admin.backend_user, "admin");
    assert_eq!(
        (c.monitor.user.as_str(), c.monitor.password.as_str()),
        ("monitor", "monitorpw")
    );
    // Every documented default is the built-in one, except where the
    // example deliberately sets a per-replica override.
    let mut defaults = parse(MINIMAL).unwrap();
    defaults.users = c.users.clone();
    defaults.replicas = c.replicas.clone();
    assert_eq!(c, defaults);
}

#[test]
fn missing_file_is_io_error() {
    let e = Config::from_file("/nonexistent/causeway.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e
        .to_string()
        .starts_with("/nonexistent/causeway.toml: cannot read"));
}

fn arb_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,8}"
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn round_trip_generated(
        weights in proptest::collection::vec(0u32..=1_000_000, 0..4),
        lag in proptest::option::of(501u64..100_000),
        user in arb_name(),
        pw in "[ -~]{0,12}",
        consistency in prop::sample::select(Consistency::ALL),
        on_timeout in prop::sample::select(OnTimeout::ALL),
        port in 1u16..=65535,
    ) {
        let mut c = parse(MINIMAL).unwrap();
        c.users[0].name = user.clone();
        c.users[0].password = pw.clone();
        c.routing.consistency = consistency;
        c.routing.on_timeout = on_timeout;
        c.replicas = weights.iter().enumerate().map(|(i, w)| Backend {
            name: format!("r{i}"),
            address: format!("replica-{i}.local:{port}"),
            weight: *w,
            max_lag_ms: lag,
            pool: if i % 2 == 0 { "default".to_string() } else { "olap".to_string() },
            zone: (i % 3 == 0).then(|| format!("z{i}")),
        }).collect();
        let text = c.to_toml_string();
        let back = parse(&text).unwrap();
        prop_assert_eq!(&back, &c);
        prop_assert_eq!(&back.user(&user).unwrap().password, &pw);
    }
}

#[test]
fn tls_sections_default_parse_and_round_trip() {
    let c = parse(MINIMAL).unwrap();
    assert!(c.tls.is_none());
    assert_eq!(c.backend_tls.mode, causeway_config::TlsMode::Preferred);
    assert_eq!(c.backend_tls.ca, None);
    let text = format!(
        "{MINIMAL}[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nrequire = true\n\
         [backend_tls]\nmode = \"VERIFY_IDENTITY\"\nca = \"/ca.pem\"\n"
    );
    let c = parse(&text).unwrap();
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(
        (tls.cert.as_str(), tls.key.as_str(), tls.require),
        ("/c.pem", "/k.pem", true)
    );
    assert_eq!(c.backend_tls.mode, causeway_config::TlsMode::VerifyIdentity);
    let again = parse(&c.to_toml_string()).unwrap();
    assert_eq!(again, c);
    // require defaults to false
    let text = format!("{MINIMAL}[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n");
    assert!(!parse(&text).unwrap().tls.unwrap().require);
}

#[test]
fn tls_errors_name_file_line_and_key() {
    let text = format!("{MINIMAL}[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nrequired = true\n");
    assert_err(
        &text,
        Some(15),
        &["t.toml:15: unknown key 'required' in [tls]"],
    );
    let text = format!("{MINIMAL}[tls]\ncert = \"/c.pem\"\n");
    let shown = err(&text).to_string();
    assert!(shown.contains("key"), "{shown}");
    let text = format!("{MINIMAL}[backend_tls]\nmode = \"verify_ca\"\n");
    assert_err(
        &text,
        Some(13),
        &[
            "t.toml:13",
            "backend_tls.mode",
            "'verify_ca' needs backend_tls.ca",
        ],
    );
    let text = format!("{MINIMAL}[backend_tls]\nmode = \"verify\"\n");
    assert_err(
        &text,
        Some(13),
        &[
            "invalid mode 'verify'",
            "disabled, preferred, required, verify_ca, verify_identity",
        ],
    );
    let text = format!("{MINIMAL}[backend_tls]\nmode = \"disabled\"\nca = \"/ca.pem\"\n");
    assert_err(&text, Some(14), &["backend_tls.ca", "never uses it"]);
    let text = format!("{MINIMAL}[backend_tls]\nmode = \"required\"\nverify = true\n");
    assert_err(&text, Some(14), &["unknown key 'verify' in [backend_tls]"]);
    let text = format!("{MINIMAL}[tls]\ncert = \"\"\nkey = \"/k.pem\"\n");
    assert_err(
        &text,
        Some(13),
        &["tls.cert", "must name a PEM certificate file"],
    );
}
