//! Criterion micro-benchmark of query-rule matching (`Rules::first_match`)
//! on sysbench's point select, with 0, 10 and 100 rules, none of which
//! matches (the worst case: every rule is evaluated). The rules are a mix
//! of `match_tables` (a third), `match_pattern` (a third, one `RegexSet`)
//! and `match_users`; a second set has a pattern on every rule. Also the
//! classifier alone, for scale, and a matching `match_tables` rule.
//!
//! Run: `cargo bench --bench rules` (then `cargo clean --release`).

use causeway::rules::{Rules, StatementFacts};
use causeway_classify::classify;
use causeway_config::Config;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const POINT: &str = "SELECT c FROM sbtest1 WHERE id=5012";

fn config(n: usize, all_patterns: bool) -> Config {
    let mut text = String::from(
        "[[users]]\nname = \"app\"\n[primary]\nname = \"p\"\naddress = \"127.0.0.1:3306\"\n\
         [[replicas]]\nname = \"olap\"\naddress = \"127.0.0.1:3307\"\npool = \"reporting\"\n\
         [monitor]\nuser = \"m\"\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\nroute = \"pool:reporting\"\n"
        ));
        let kind = if all_patterns { 1 } else { i % 3 };
        match kind {
            0 => text.push_str(&format!("match_tables = [\"shop.report_{i}\"]\n")),
            1 => text.push_str(&format!(
                "match_pattern = '(?i)^\\s*select .* from report_{i}\\b'\n"
            )),
            _ => text.push_str(&format!("match_users = [\"user{i}\"]\n")),
        }
    }
    Config::from_str_named(&text, "bench.toml").expect("bench config")
}

fn bench(c: &mut Criterion) {
    let class = classify(POINT);
    c.bench_function("classify_point_select", |b| {
        b.iter(|| classify(black_box(POINT)))
    });
    for (label, all_patterns) in [("mixed", false), ("patterns", true)] {
        for n in [0usize, 10, 100] {
            let cfg = config(n, all_patterns);
            let rules = Rules::compile(&cfg, None).expect("compile");
            c.bench_function(&format!("first_match_{label}_{n}_rules"), |b| {
                b.iter(|| {
                    let facts =
                        StatementFacts::new(black_box(POINT), &class, "app", Some("sbtest"), true);
                    black_box(rules.first_match(&facts).is_some())
                })
            });
        }
    }
    // a write with 100 mixed rules and no reject rule: skipped before any check
    let cfg = config(100, false);
    let rules = Rules::compile(&cfg, None).expect("compile");
    let write = "UPDATE sbtest1 SET k=k+1 WHERE id=4999";
    let wclass = classify(write);
    c.bench_function("first_match_write_100_rules", |b| {
        b.iter(|| {
            let facts = StatementFacts::new(black_box(write), &wclass, "app", Some("sbtest"), true);
            black_box(rules.first_match(&facts).is_some())
        })
    });
    // a rule that matches by table (the extractor runs once)
    let mut cfg = config(10, false);
    cfg.rules[0].match_tables = vec!["sbtest.sbtest1".into()];
    let rules = Rules::compile(&cfg, None).expect("compile");
    c.bench_function("first_match_tables_hit", |b| {
        b.iter(|| {
            let facts = StatementFacts::new(black_box(POINT), &class, "app", Some("sbtest"), true);
            black_box(rules.first_match(&facts).is_some())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
