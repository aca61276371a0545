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
fn covers_all_tables_for_the_cache() {
    let r = rules(SET);
    let m = r.iter().nth(1).unwrap();
    let check = |sql: &str, db: Option<&str>| {
        let class = classify(sql);
        let facts = StatementFacts::new(sql, &class, "app", db, true);
        m.covers_all_tables(&facts)
    };
    assert!(check("SELECT * FROM report_daily", Some("shop")));
    assert!(!check("SELECT * FROM report_daily", None));
    assert!(!check(
        "SELECT * FROM shop.report_daily JOIN shop.x ON 1",
        None
    ));
    assert!(!check("SELECT 1", None));
    assert!(!check("SELECT f(1) FROM shop.report_daily", None));
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

mod pools {
    use super::*;
    use crate::consistency::{choose, Choice};
    use crate::topology::{Topology, View};
    use causeway_config::OnTimeout;
    use causeway_gtid::GtidSet;

    const TOPO: &str = r#"
[[users]]
name = "app"
[primary]
name = "p"
address = "127.0.0.1:1"
[[replicas]]
name = "r1"
address = "127.0.0.1:2"
[[replicas]]
name = "olap1"
address = "127.0.0.1:3"
pool = "olap"
[[replicas]]
name = "olap2"
address = "127.0.0.1:4"
pool = "olap"
[monitor]
user = "m"
[[pools]]
name = "olap"
watermark_query = "SELECT gtid_set FROM cdc.watermark WHERE id = 1"
on_timeout = "primary"
[[rules]]
name = "olap"
match_users = ["rep"]
route = "pool:olap"
"#;

    fn topo() -> Topology {
        let cfg = causeway_config::Config::from_str_named(TOPO, "t.toml").unwrap();
        Topology::build(Arc::new(cfg), None).unwrap()
    }

    fn name(c: Choice) -> String {
        match c {
            Choice::Serve(b) | Choice::WaitFor(b) => b.name().to_string(),
            Choice::Primary(why) => format!("primary: {why}"),
        }
    }

    #[test]
    fn rule_carries_the_pool_settings() {
        let t = topo();
        let rule = t.rules.iter().next().unwrap();
        let p = rule.pool().unwrap();
        assert_eq!(&*p.name, "olap");
        assert_eq!(p.on_timeout, OnTimeout::Primary);
        assert!(p.watermark);
    }

    #[test]
    fn general_reads_never_reach_a_named_pool_and_pool_reads_stay_in_it() {
        let t = topo();
        let none = GtidSet::new();
        for balance in causeway_config::ReadBalance::ALL {
            for id in 0..200 {
                let mut p = crate::balance::Picker::new(id, *balance);
                let general = name(choose(&t, Consistency::Eventual, &none, None, &[], &mut p));
                assert_eq!(general, "r1");
                p.set_pool(t.rules.iter().next().unwrap().pool().cloned());
                let pooled = name(choose(&t, Consistency::Eventual, &none, None, &[], &mut p));
                assert!(pooled.starts_with("olap"), "{pooled}");
                p.set_pool(None);
                let general = name(choose(&t, Consistency::Eventual, &none, None, &[], &mut p));
                assert_eq!(general, "r1");
            }
        }
    }

    #[test]
    fn a_causal_pool_read_needs_a_member_with_the_token() {
        let t = topo();
        let token = GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10").unwrap();
        let has = Arc::new(GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-12").unwrap());
        let mut p = crate::balance::Picker::new(7, causeway_config::ReadBalance::Session);
        p.set_pool(t.rules.iter().next().unwrap().pool().cloned());
        // no member has it: wait on one of them (never r1, never the primary)
        let c = choose(&t, Consistency::Causal, &token, None, &[], &mut p);
        assert!(
            matches!(&c, Choice::WaitFor(b) if b.name().starts_with("olap")),
            "{c:?}"
        );
        // olap2 has it: served there at once
        t.replicas[2].state.publish(View {
            gtid_executed: Arc::clone(&has),
            ..View::default()
        });
        let c = choose(&t, Consistency::Causal, &token, None, &[], &mut p);
        assert!(
            matches!(&c, Choice::Serve(b) if b.name() == "olap2"),
            "{c:?}"
        );
        // no eligible member: the primary, with a reason (on_timeout decides)
        for r in &t.replicas[1..] {
            r.state.publish(View {
                eligible: false,
                ..View::default()
            });
        }
        let c = choose(&t, Consistency::Causal, &token, None, &[], &mut p);
        assert!(matches!(c, Choice::Primary(_)), "{c:?}");
    }
}
