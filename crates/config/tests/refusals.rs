//! causeway-config refuses bad files with the file, line and key: unknown
//! keys, missing keys and sections, bad enum values and types, syntax
//! errors, bad addresses, duplicate names, out-of-range numbers and client
//! limits.

mod common;

use causeway_config::{ConfigError, Consistency, OnTimeout};
use common::{assert_err, err, parse, MINIMAL};

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
        "t.toml:19: unknown key 'weigth' in [[replicas]] (expected one of name, address, weight, max_lag_ms, pool, zone)"
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
        &["t.toml:13: routing.consistency: invalid consistency 'linearizable' (expected one of eventual, causal, fresh, strong)"],
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
        (
            "pipeline_depth = 0",
            "server.pipeline_depth: must be between 1 and 1024",
        ),
        (
            "pipeline_depth = 1025",
            "server.pipeline_depth: must be between 1 and 1024",
        ),
        (
            "pipeline_stall_ms = 0",
            "server.pipeline_stall_ms: must be greater than 0",
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

#[test]
fn failover_section() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.failover.mode, causeway_config::FailoverMode::Follow);
    assert_eq!(c.failover.write_wait_ms, 10_000);
    let c = parse(&format!(
        "{MINIMAL}[failover]\nmode = \"static\"\nwrite_wait_ms = 0\n"
    ))
    .unwrap();
    assert_eq!(c.failover.mode, causeway_config::FailoverMode::Static);
    assert_eq!(c.failover.write_wait_ms, 0);
    let text = format!("{MINIMAL}[failover]\nmode = \"auto\"\n");
    assert_err(
        &text,
        Some(13),
        &["t.toml:13:", "failover mode", "follow, static"],
    );
    let text = format!("{MINIMAL}[failover]\nwait_ms = 1\n");
    assert_err(&text, Some(13), &["unknown key 'wait_ms' in [failover]"]);
    let text = format!("{MINIMAL}[failover]\nwrite_wait_ms = 99999999999999\n");
    assert_err(&text, Some(13), &["failover.write_wait_ms", "out of range"]);
}

#[test]
fn zones_are_names() {
    let ok = format!(
        "{MINIMAL}[[replicas]]\nname = \"r1\"\naddress = \"h:1\"\nzone = \"eu-west-1a\"\n[routing]\nzone = \"eu-west-1a\"\n"
    );
    let c = parse(&ok).unwrap();
    assert_eq!(c.routing.zone.as_deref(), Some("eu-west-1a"));
    assert_eq!(c.replicas[0].zone.as_deref(), Some("eu-west-1a"));
    let bad = format!("{MINIMAL}[[replicas]]\nname = \"r1\"\naddress = \"h:1\"\nzone = \"a b\"\n");
    assert_err(&bad, Some(15), &["replicas[0].zone", "is not a zone name"]);
    let bad = format!("{MINIMAL}[routing]\nzone = \"\"\n");
    assert_err(&bad, Some(13), &["routing.zone", "is not a zone name"]);
}
