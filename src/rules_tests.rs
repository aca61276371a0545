//! Unit tests of the compiled rules: order, conditions, the cost model.

use super::*;
use causeway_classify::classify;

fn rules(toml_rules: &str) -> Rules {
    let text = format!(
        r#"
[[users]]
name = "app"
[primary]
name = "p"
address = "127.0.0.1:3306"
[[replicas]]
name = "r2"
address = "127.0.0.1:3307"
pool = "reporting"
[monitor]
user = "m"
{toml_rules}
"#
    );
    let cfg = causeway_config::Config::from_str_named(&text, "t.toml").unwrap();
    Rules::compile(&cfg, None).unwrap()
}

fn first<'r>(r: &'r Rules, sql: &str, user: &str, db: Option<&str>, free: bool) -> Option<&'r str> {
    let class = classify(sql);
    let facts = StatementFacts::new(sql, &class, user, db, free);
    r.first_match(&facts).map(|m| m.name())
}

const SET: &str = r#"
[[rules]]
name = "no_delete_all"
match_pattern = '(?i)^\s*delete\s+from\s+\S+\s*$'
route = "reject"
[[rules]]
name = "reports"
match_tables = ["shop.report_daily"]
route = "pool:reporting"
consistency = "eventual"
cache_ttl_ms = 5000
[[rules]]
name = "pattern"
match_pattern = '(?i)^\s*select .* from shop\.report_'
route = "pool:reporting"
[[rules]]
name = "user"
match_users = ["reporting"]
route = "pool:reporting"
"#;

#[test]
fn conditions_and_order() {
    let r = rules(SET);
    assert_eq!(
        first(&r, "SELECT * FROM report_daily", "app", Some("shop"), true),
        Some("reports")
    );
    assert_eq!(
        first(&r, "SELECT * FROM SHOP.Report_Daily", "app", None, true),
        Some("reports")
    );
    assert_eq!(
        first(&r, "SELECT * FROM report_daily", "app", Some("other"), true),
        None
    );
    assert_eq!(
        first(&r, "select a from shop.report_weekly", "app", None, true),
        Some("pattern")
    );
    assert_eq!(first(&r, "SELECT 1", "reporting", None, true), Some("user"));
    assert_eq!(first(&r, "SELECT 1", "app", None, true), None);
    let m = r.iter().nth(1).unwrap();
    assert_eq!(m.consistency(), Some(Consistency::Eventual));
    assert_eq!(m.cache_ttl(), Some(Duration::from_millis(5000)));
    assert_eq!(m.route(), Some(&RuleRoute::Pool("reporting".into())));
}

#[test]
fn only_reject_rules_act_outside_free_reads() {
    let r = rules(SET);
    // a write: only the reject rule is considered
    assert_eq!(
        first(&r, "DELETE FROM t", "reporting", None, true),
        Some("no_delete_all")
    );
    assert_eq!(
        first(&r, "DELETE FROM t WHERE id = 1", "reporting", None, true),
        None
    );
    // a read in a transaction / pinned session: routing rules do not apply
    assert_eq!(
        first(&r, "SELECT * FROM shop.report_daily", "app", None, false),
        None
    );
    assert_eq!(
        first(&r, "DELETE FROM t", "app", None, false),
        Some("no_delete_all")
    );
}

#[test]
fn unknown_tables_never_match() {
    let r = rules(SET);
    assert_eq!(
        first(
            &r,
            "SELECT myfunc(1) FROM shop.report_daily",
            "app",
            None,
            true
        ),
        None
    );
}

#[test]
fn no_rules_costs_nothing() {
    let r = Rules::default();
    assert!(r.is_empty());
    assert_eq!(first(&r, "SELECT 1", "app", None, true), None);
}

#[test]
fn counters_survive_recompile() {
    let r = rules(SET);
    let m = r.iter().next().unwrap();
    m.count_match();
    m.count_match();
    let mut cfg = causeway_config::Config::from_str_named(
        "[[users]]\nname='a'\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n",
        "t.toml",
    )
    .unwrap();
    cfg.rules = r.iter().map(|c| c.config().clone()).collect();
    for rule in &mut cfg.rules {
        rule.route = None;
    }
    let again = Rules::compile(&cfg, Some(&r)).unwrap();
    assert_eq!(again.iter().next().unwrap().matches(), 2);
    assert_eq!(again.iter().nth(1).unwrap().matches(), 0);
}
