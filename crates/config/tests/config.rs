//! Integration tests for causeway-config: defaults, round-trips, error
//! messages with line numbers, semantic validation and the example file.

use std::time::Duration;

use causeway_config::{Backend, Config, ConfigError, Consistency, OnTimeout};
use proptest::prelude::*;

const MINIMAL: &str = r#"[[users]]
name = "app"
password = "apppw"

[primary]
name = "primary"
address = "127.0.0.1:3306"

[monitor]
user = "monitor"
password = "monitorpw"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_named(text, "t.toml")
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

/// Assert the error's display string and line.
fn assert_err(text: &str, line: Option<usize>, contains: &[&str]) {
    let e = err(text);
    let shown = e.to_string();
    assert_eq!(e.line(), line, "wrong line in: {shown}");
    for c in contains {
        assert!(shown.contains(c), "{shown:?} does not contain {c:?}");
    }
    assert!(!shown.contains('\n'), "multi-line message: {shown:?}");
}

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

#[test]
fn unknown_key_top_level() {
    let text = format!("{MINIMAL}\n"); // keep MINIMAL intact, append after
    let text = format!("bogus = 1\n{text}");
    assert_err(
        &text,
        Some(1),
        &[
            "t.toml:1: unknown key 'bogus' at the top level",
            "expected one of server, admin, users, primary, replicas, monitor, routing",
        ],
    );
}

#[test]
fn unknown_key_in_section() {
    let text = format!("{MINIMAL}[routing]\nconsistency = \"eventual\"\nmax_lagms = 3\n");
    assert_err(
        &text,
        Some(14),
        &["t.toml:14: unknown key 'max_lagms' in [routing] (expected one of consistency,"],
    );
    let text = format!("{MINIMAL}priority = 1\n");
    assert_err(&text, Some(12), &["unknown key 'priority' in [monitor]"]);
    let text = format!("[server]\nlisten = \"127.0.0.1:1\"\nport = 1\n{MINIMAL}");
    assert_err(&text, Some(3), &["unknown key 'port' in [server]"]);
    let text = MINIMAL.replace(
        "address = \"127.0.0.1:3306\"",
        "address = \"127.0.0.1:3306\"\nweight = 2",
    );
    assert_err(
        &text,
        Some(8),
        &["unknown key 'weight' in [primary] (expected one of name, address)"],
    );
}

#[test]
fn unknown_key_in_array_table() {
    let text = format!(
        "{MINIMAL}[[replicas]]\nname = \"r1\"\naddress = \"h:1\"\n\n[[replicas]]\nname = \"r2\"\naddress = \"h:2\"\nweigth = 3\n"
    );
    let e = err(&text);
    assert_eq!(
        e.to_string(),
        "t.toml:19: unknown key 'weigth' in [[replicas]] (expected one of name, address, weight, max_lag_ms, pool)"
    );
    let text = MINIMAL.replace(
        "password = \"apppw\"",
        "password = \"apppw\"\npasword = \"x\"",
    );
    assert_err(&text, Some(4), &["unknown key 'pasword' in [[users]]"]);
    // Inline and dotted forms are located too.
    let text = format!(
        "primary = {{ name = \"p\", address = \"h:1\", x = 1 }}\n{}",
        MINIMAL.replace(
            "[primary]\nname = \"primary\"\naddress = \"127.0.0.1:3306\"",
            ""
        )
    );
    assert_err(&text, Some(1), &["t.toml:1: unknown key 'x' in [primary]"]);
    // A key placed after [[users]] belongs to that user.
    let text = format!(
        "{}[[replicas]]\nname = \"r\"\naddress = \"h:1\"\nserver.listen = \"x:1\"\n",
        MINIMAL
    );
    assert_err(&text, Some(15), &["unknown key 'server' in [[replicas]]"]);
}

#[test]
fn missing_keys_and_sections() {
    let text = MINIMAL.replace(
        "[primary]\nname = \"primary\"\naddress = \"127.0.0.1:3306\"\n",
        "",
    );
    assert_err(&text, Some(1), &["missing required section [primary]"]);
    let text = MINIMAL.replace("address = \"127.0.0.1:3306\"\n", "");
    assert_err(
        &text,
        Some(5),
        &["t.toml:5: missing key 'address' in [primary]"],
    );
    let text = format!("{MINIMAL}[[replicas]]\nname = \"r1\"\n");
    assert_err(&text, Some(12), &["missing key 'address' in [[replicas]]"]);
    let text = MINIMAL.replace(
        "[monitor]\nuser = \"monitor\"\npassword = \"monitorpw\"\n",
        "",
    );
    assert_err(&text, Some(1), &["missing required section [monitor]"]);
}

#[test]
fn zero_users() {
    let no_users = MINIMAL.replace("[[users]]\nname = \"app\"\npassword = \"apppw\"\n", "");
    assert_err(
        &no_users,
        None,
        &["t.toml: users: at least one [[users]] entry is required"],
    );
    let empty = format!("users = []\n{no_users}");
    assert_err(&empty, Some(1), &["t.toml:1: users: at least one"]);
}

#[test]
fn bad_enum_values() {
    let text = format!("{MINIMAL}[routing]\nconsistency = \"linearizable\"\n");
    assert_err(
        &text,
        Some(13),
        &["t.toml:13: routing.consistency: invalid consistency 'linearizable' (expected one of eventual, causal, strong)"],
    );
    let text = format!("{MINIMAL}[routing]\non_timeout = \"retry\"\n");
    assert_err(
        &text,
        Some(13),
        &["routing.on_timeout: invalid on_timeout 'retry' (expected one of primary, error)"],
    );
    let text = format!("{MINIMAL}[routing]\nconsistency = 3\n");
    assert_err(&text, Some(13), &["routing.consistency: invalid type"]);
}

#[test]
fn enums_from_str() {
    for c in Consistency::ALL {
        assert_eq!(c.as_str().parse::<Consistency>().unwrap(), *c);
        assert_eq!(c.to_string(), c.as_str());
    }
    assert_eq!(
        "STRONG".parse::<Consistency>().unwrap(),
        Consistency::Strong
    );
    assert!(Consistency::Eventual < Consistency::Strong);
    for o in OnTimeout::ALL {
        assert_eq!(o.as_str().parse::<OnTimeout>().unwrap(), *o);
    }
    let e = "x".parse::<OnTimeout>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid on_timeout 'x' (expected one of primary, error)"
    );
}

#[test]
fn wrong_types_name_the_key() {
    let text = format!("{MINIMAL}[[replicas]]\nname = \"r1\"\naddress = \"h:1\"\nweight = -1\n");
    assert_err(&text, Some(15), &["replicas[0].weight: invalid value"]);
    let text = format!("[server]\nmax_connections = \"many\"\n{MINIMAL}");
    assert_err(&text, Some(2), &["server.max_connections: invalid type"]);
}

#[test]
fn syntax_error_has_line() {
    let text = format!("{MINIMAL}[routing\n");
    let e = err(&text);
    assert!(matches!(e, ConfigError::Parse { line: 12, .. }), "{e}");
    let text = format!("{MINIMAL}user = \"again\"\n");
    assert_err(&text, Some(12), &["t.toml:12: duplicate key 'user'"]);
}

#[test]
fn bad_addresses() {
    let text = MINIMAL.replace("127.0.0.1:3306", "127.0.0.1");
    assert_err(
        &text,
        Some(7),
        &["t.toml:7: primary.address: '127.0.0.1' is missing a port"],
    );
    let text = MINIMAL.replace("127.0.0.1:3306", "127.0.0.1:0");
    assert_err(&text, Some(7), &["primary.address"]);
    let text = MINIMAL.replace("127.0.0.1:3306", "127.0.0.1:70000");
    assert_err(&text, Some(7), &["out of range"]);
    let text = format!("{MINIMAL}[[replicas]]\nname = \"r\"\naddress = \"not a host:1\"\n");
    assert_err(&text, Some(14), &["replicas[0].address"]);
    let text = format!("[server]\nlisten = \"nope\"\n{MINIMAL}");
    assert_err(&text, Some(2), &["server.listen"]);
    let text = format!("{MINIMAL}[admin]\nlisten = \"1.2.3.4:x\"\n");
    assert_err(&text, Some(13), &["admin.listen"]);
    // Disabled admin endpoint: listen is not checked.
    let text = format!("{MINIMAL}[admin]\nenabled = false\nlisten = \"\"\n");
    assert!(parse(&text).is_ok());
    // Same port for both listeners.
    let text = format!("[server]\nlisten = \"127.0.0.1:6080\"\n{MINIMAL}");
    assert_err(
        &text,
        None,
        &["admin.listen", "already used by server.listen"],
    );
}

#[test]
fn duplicate_names() {
    let text = format!("{MINIMAL}[[replicas]]\nname = \"primary\"\naddress = \"h:1\"\n");
    assert_err(
        &text,
        Some(13),
        &["t.toml:13: replicas[0].name: duplicate backend name 'primary'"],
    );
    let text = format!(
        "{MINIMAL}[[replicas]]\nname = \"r\"\naddress = \"h:1\"\n[[replicas]]\nname = \"r\"\naddress = \"h:2\"\n"
    );
    assert_err(
        &text,
        Some(16),
        &["replicas[1].name: duplicate backend name 'r'"],
    );
    let text = format!("[[users]]\nname = \"app\"\n{MINIMAL}");
    assert_err(
        &text,
        Some(4),
        &["users[1].name: duplicate user name 'app'"],
    );
    let text = MINIMAL.replace("name = \"primary\"", "name = \"\"");
    assert_err(&text, Some(6), &["primary.name: must not be empty"]);
}

#[test]
fn weight_and_intervals() {
    let text =
        format!("{MINIMAL}[[replicas]]\nname = \"r\"\naddress = \"h:1\"\nweight = 1000001\n");
    assert_err(
        &text,
        Some(15),
        &["replicas[0].weight: 1000001 is out of range (0-1000000)"],
    );
    for (section, key) in [
        ("server", "max_connections"),
        ("server", "connect_timeout_ms"),
        ("server", "pool_max_per_backend"),
        ("server", "pool_idle_timeout_ms"),
        ("server", "login_timeout_ms"),
        ("server", "max_pending_logins"),
        ("routing", "max_lag_ms"),
    ] {
        let text = format!("[{section}]\n{key} = 0\n{MINIMAL}");
        assert_err(
            &text,
            Some(2),
            &[&format!("{section}.{key}: must be greater than 0")],
        );
    }
    for key in ["interval_ms", "gtid_interval_ms", "connect_timeout_ms"] {
        let text = format!("{MINIMAL}{key} = 0\n");
        assert_err(
            &text,
            Some(12),
            &[&format!("monitor.{key}: must be greater than 0")],
        );
    }
    let text = format!("{MINIMAL}[routing]\nmax_lag_ms = 100\nlag_hysteresis_ms = 100\n");
    assert_err(
        &text,
        Some(14),
        &["routing.lag_hysteresis_ms: 100 must be less than"],
    );
    let text =
        format!("{MINIMAL}[[replicas]]\nname = \"r\"\naddress = \"h:1\"\nmax_lag_ms = 500\n");
    assert_err(&text, Some(15), &["replicas[0].max_lag_ms"]);
}

#[test]
fn client_limits_are_bounded() {
    for (text, message) in [
        (
            "max_client_packet = 1023",
            "server.max_client_packet: 1023 is out of range (1024-1073741824)",
        ),
        (
            "max_client_packet = 1073741825",
            "server.max_client_packet: 1073741825 is out of range",
        ),
        (
            "login_timeout_ms = 31536000001",
            "server.login_timeout_ms: 31536000001 is out of range",
        ),
        (
            "client_idle_timeout_ms = 31536000001",
            "server.client_idle_timeout_ms: 31536000001 is out of range",
        ),
        (
            "max_pending_logins = -1",
            "server.max_pending_logins: invalid value",
        ),
    ] {
        let text = format!("[server]\nlisten = \"127.0.0.1:1\"\n{text}\n{MINIMAL}");
        assert_err(&text, Some(3), &[message]);
    }
    // the edges are accepted
    for ok in [
        "max_client_packet = 1024",
        "max_client_packet = 1073741824",
        "client_idle_timeout_ms = 0",
        "login_timeout_ms = 31536000000",
    ] {
        parse(&format!("[server]\n{ok}\n{MINIMAL}")).unwrap();
    }
    let text = format!("[server]\nmax_client_packt = 5\n{MINIMAL}");
    assert_err(&text, Some(2), &["max_client_packt"]);
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
