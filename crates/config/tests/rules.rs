//! `[[rules]]`, `[[pools]]` and `replicas[].pool`: parsing, defaults and
//! every refusal with file, line and key.

mod common;

use causeway_config::{Consistency, OnTimeout, RuleRoute};
use common::{parse, MINIMAL};

// MINIMAL is 11 lines; appended text starts on line 12.
const R2: &str = "[[replicas]]\nname = \"r2\"\naddress = \"h:2\"\npool = \"reporting\"\n";

fn assert_err(extra: &str, line: usize, contains: &[&str]) {
    let text = format!("{MINIMAL}{extra}");
    let e = match parse(&text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    };
    let shown = e.to_string();
    assert_eq!(e.line(), Some(line), "wrong line in: {shown}");
    for c in contains {
        assert!(shown.contains(c), "{shown:?} does not contain {c:?}");
    }
    assert!(!shown.contains('\n'), "multi-line message: {shown:?}");
}

#[test]
fn full_example_parses_and_round_trips() {
    let text = format!(
        r#"{MINIMAL}{R2}
[[pools]]
name = "reporting"
watermark_query = "SELECT gtid_set FROM cdc.watermark WHERE id = 1"

[[rules]]
name = "reports"
match_tables = ["shop.report_daily"]
match_pattern = '(?i)^\s*select .* from shop\.report_'
match_users = ["reporting"]
route = "pool:reporting"
consistency = "eventual"
cache_ttl_ms = 60000

[[rules]]
name = "catalog"
match_tables = ["shop.products"]
cache_ttl_ms = 1000

[[rules]]
name = "primary_only"
match_users = ["batch"]
route = "primary"

[[rules]]
name = "general"
route = "replicas"

[[rules]]
name = "no"
route = "reject"
"#
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.replicas[0].pool, "reporting");
    assert!(!c.replicas[0].in_default_pool());
    assert!(c.primary.in_default_pool());
    let p = c.pool("reporting");
    assert_eq!(p.on_timeout, OnTimeout::Error);
    assert!(p.watermark_query.is_some());
    assert_eq!(c.pool("other").on_timeout, OnTimeout::Error);
    assert_eq!(c.rules.len(), 5);
    let r = &c.rules[0];
    assert_eq!(r.route, Some(RuleRoute::Pool("reporting".into())));
    assert_eq!(r.consistency, Some(Consistency::Eventual));
    assert_eq!(r.cache_ttl_ms, Some(60000));
    assert_eq!(c.rules[1].route, None);
    assert_eq!(c.rules[2].route, Some(RuleRoute::Primary));
    assert_eq!(c.rules[3].route, Some(RuleRoute::Replicas));
    assert_eq!(c.rules[4].route, Some(RuleRoute::Reject));
    let again = parse(&c.to_toml_string()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn pool_without_replicas_is_known_from_pools() {
    let text = format!(
        "{MINIMAL}[[pools]]\nname = \"olap\"\non_timeout = \"primary\"\n[[rules]]\nname = \"x\"\nroute = \"pool:olap\"\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.pool("olap").on_timeout, OnTimeout::Primary);
}

#[test]
fn unknown_pool_in_route() {
    assert_err(
        "[[rules]]\nname = \"x\"\nroute = \"pool:nope\"\n",
        14,
        &["t.toml:14: rules[0].route: unknown pool 'nope'"],
    );
}

#[test]
fn invalid_regex() {
    assert_err(
        &format!("{R2}[[rules]]\nname = \"x\"\nmatch_pattern = 'select (('\n"),
        18,
        &["t.toml:18: rules[0].match_pattern: invalid regex"],
    );
}

#[test]
fn duplicate_rule_names() {
    assert_err(
        "[[rules]]\nname = \"x\"\nroute = \"primary\"\n[[rules]]\nname = \"x\"\nroute = \"reject\"\n",
        16,
        &["t.toml:16: rules[1].name: duplicate rule name 'x'"],
    );
}

#[test]
fn other_refusals() {
    assert_err(
        "[[rules]]\nname = \"x\"\nroute = \"somewhere\"\n",
        14,
        &["invalid route 'somewhere'"],
    );
    assert_err(
        "[[rules]]\nname = \"x\"\nroute = \"pool:\"\n",
        14,
        &["invalid route 'pool:'"],
    );
    assert_err("[[rules]]\nroute = \"primary\"\n", 12, &["name"]);
    assert_err(
        "[[rules]]\nname = \"\"\n",
        13,
        &["rules[0].name: must not be empty"],
    );
    assert_err(
        "[[rules]]\nname = \"x\"\nmatch_tables = [\"report_daily\"]\n",
        14,
        &["rules[0].match_tables: 'report_daily' is not of the form db.table"],
    );
    assert_err(
        "[[rules]]\nname = \"x\"\nroute = \"reject\"\ncache_ttl_ms = 5\n",
        15,
        &["rules[0].cache_ttl_ms"],
    );
    assert_err(
        "[[rules]]\nname = \"x\"\ncache_ttl_ms = 0\n",
        14,
        &["rules[0].cache_ttl_ms: 0 is out of range"],
    );
    assert_err(
        "[[rules]]\nname = \"x\"\nmatch_host = \"h\"\n",
        14,
        &["match_host"],
    );
    assert_err(
        "[[pools]]\nname = \"default\"\n",
        13,
        &["pools[0].name: the default pool is configured by [routing]"],
    );
    assert_err(
        "[[pools]]\nname = \"a\"\n[[pools]]\nname = \"a\"\n",
        15,
        &["pools[1].name: duplicate pool name 'a'"],
    );
    assert_err(
        "[[pools]]\nname = \"a\"\non_timeout = \"wait\"\n",
        14,
        &["on_timeout"],
    );
    assert_err(
        "[[replicas]]\nname = \"r\"\naddress = \"h:1\"\npool = \"\"\n",
        15,
        &["replicas[0].pool: must not be empty"],
    );
}
