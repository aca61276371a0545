//! conf/grafana/causeway.json queries only metrics causeway exports: every
//! metric name in its PromQL is a constant of src/metrics.rs and appears in
//! a live `/metrics` scrape of an in-process proxy after traffic of every
//! kind the dashboard shows; every label value it matches on is one
//! causeway uses. docker-compose.yml's `metrics` profile provisions it.

use mysql_async::prelude::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::admin_api::start_admin_proxy;
use crate::http::{get, names};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("conf/grafana/causeway.json")).expect("dashboard JSON")
}

/// Every `expr` string anywhere in the dashboard.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Metric names (identifiers starting with `causeway_`) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !ident_char(c))
        .filter(|w| w.starts_with("causeway_"))
        .map(str::to_string)
        .collect()
}

/// `(label, value)` of every `label="v"` / `label=~"a|b"` matcher.
fn matchers(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = expr;
    let next = |r: &str| [r.find("=\""), r.find("=~\"")].into_iter().flatten().min();
    while let Some(i) = next(rest) {
        let (before, after) = rest.split_at(i);
        let label: String = before
            .trim_end_matches(['=', '~', '!'])
            .chars()
            .rev()
            .take_while(|c| ident_char(*c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let after = after.trim_start_matches(['=', '~']).trim_start_matches('"');
        let end = after.find('"').expect("closing quote");
        for v in after[..end].split('|') {
            out.push((label.clone(), v.to_string()));
        }
        rest = &after[end + 1..];
    }
    out
}

/// `(constant value)` of every `pub const X: &str = "...";` in src/metrics.rs.
fn metrics_rs_strings() -> BTreeSet<String> {
    read("src/metrics.rs")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once("&str = \""))
        .filter_map(|(_, v)| v.split_once('"'))
        .map(|(v, _)| v.to_string())
        .collect()
}

#[test]
fn promql_parsing_helpers() {
    assert_eq!(
        metric_names("sum by (backend) (rate(causeway_statements_total{route=\"replica\"}[1m])) / causeway_x"),
        ["causeway_statements_total", "causeway_x"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(
        matchers("a{route=~\"primary_read|fallback\", tier=\"replica\"}"),
        vec![
            ("route".to_string(), "primary_read".to_string()),
            ("route".to_string(), "fallback".to_string()),
            ("tier".to_string(), "replica".to_string())
        ]
    );
}

/// Traffic of every kind the dashboard shows: a write, a causal read, a
/// strong read (on the primary), a refused login and a failed reload.
/// Returns the session that ran them.
async fn dashboard_traffic(tp: &crate::support::TestProxy) -> mysql_async::Conn {
    let db = crate::support::unique_db("dash");
    let mut c = tp.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO {db}.t VALUES (1)"))
        .await
        .unwrap();
    let n: Option<i64> = c
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .unwrap(); // causal: the session holds a token
    assert_eq!(n, Some(1));
    let route: Option<String> = c
        .query_first("/* causeway consistency=strong */ SELECT 1")
        .await
        .map(|_: Option<i64>| None)
        .unwrap();
    assert!(route.is_none());
    let last: Option<String> = c.query_first("SELECT @@causeway.last_route").await.unwrap();
    assert_eq!(
        last.as_deref(),
        Some("primary"),
        "a strong read ran on the primary"
    );
    assert!(mysql_async::Conn::new(tp.opts("app", "wrong"))
        .await
        .is_err());
    let _ = tp
        .proxy
        .reload_from(std::path::Path::new("/nonexistent/causeway.toml"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_is_exported() {
    let dash = dashboard();
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() >= 10, "{all:?}");
    let used: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    let constants = metrics_rs_strings();
    for name in &used {
        assert!(
            constants.contains(name),
            "{name} is not a src/metrics.rs constant"
        );
    }
    // the pictures are there
    for want in [
        "causeway_replica_lag_ms",
        "causeway_causal_reads_total",
        "causeway_statement_duration_seconds",
        "causeway_statements_total",
    ] {
        assert!(used.contains(want), "no panel on {want}");
    }
    let joined = all.join("\n");
    assert!(joined.contains("route=\"fallback\"") && joined.contains("route=\"primary_read\""));
    assert!(joined.contains("quantile=\"0.99\""));

    // traffic of every kind the dashboard shows, then a live scrape
    let (tp, admin) = start_admin_proxy(|t| t).await;
    // the session stays open until the end
    let c = dashboard_traffic(&tp).await;
    let start = std::time::Instant::now();
    let text = loop {
        let (status, _, text) = get(admin, "GET", "/metrics").await;
        assert_eq!(status, 200);
        if text.contains("causeway_replica_lag_ms{") && text.contains("causeway_backend_read_only{")
        {
            break text;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let scraped = names(&text);
    // backend errors need a failing backend (tests/failover.rs) and the
    // cache series an enabled cache with a binlog reader (tests/cache.rs
    // checks they move); the rest all appear after the traffic above
    for name in used
        .iter()
        .filter(|n| *n != "causeway_backend_errors_total" && !n.starts_with("causeway_cache_"))
    {
        assert!(
            scraped.contains(name),
            "{name} not in a live scrape:\n{text}"
        );
    }
    assert!(
        crate::http::samples(&text, "causeway_statements_total")
            .iter()
            .any(|(l, v)| l.get("route").map(String::as_str) == Some("primary_read") && *v >= 1.0),
        "the strong read counted as primary_read:\n{text}"
    );
    // label values the dashboard matches on are ones causeway uses
    let mut seen: BTreeSet<String> = constants;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for (_, v) in matchers(line) {
            seen.insert(v);
        }
    }
    for e in &all {
        for (label, value) in matchers(e) {
            assert!(
                seen.contains(&value),
                "{label}=\"{value}\" is never exported ({e})"
            );
        }
    }
    drop(c);
}

#[test]
fn the_metrics_profile_provisions_the_dashboard() {
    let mut c: serde_yaml::Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    c.apply_merge().unwrap();
    let g = &c["services"]["grafana"];
    let profiles: Vec<&str> = g["profiles"]
        .as_sequence()
        .expect("grafana has a profile")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(profiles, ["metrics"]);
    let mounts: Vec<(String, String)> = g["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .map(|v| {
            let mut p = v.split(':');
            (p.next().unwrap().to_string(), p.next().unwrap().to_string())
        })
        .collect();
    let target_of = |host: &str| {
        mounts
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{host} not mounted: {mounts:?}"))
    };
    let dash_dir = target_of("./conf/grafana");
    let providers: serde_yaml::Value =
        serde_yaml::from_str(&read("docker/grafana/dashboards.yml")).unwrap();
    assert_eq!(
        providers["providers"][0]["options"]["path"].as_str(),
        Some(dash_dir.as_str())
    );
    assert!(target_of("./docker/grafana/dashboards.yml")
        .starts_with("/etc/grafana/provisioning/dashboards/"));
    assert!(target_of("./docker/grafana/datasources.yml")
        .starts_with("/etc/grafana/provisioning/datasources/"));
    let ds: serde_yaml::Value =
        serde_yaml::from_str(&read("docker/grafana/datasources.yml")).unwrap();
    let ds = &ds["datasources"][0];
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    // the Prometheus service of the same profile, on its published port
    let prom = &c["services"]["prometheus"];
    let port = prom["ports"][0]
        .as_str()
        .unwrap()
        .split(':')
        .next_back()
        .unwrap();
    assert_eq!(
        ds["url"].as_str(),
        Some(format!("http://prometheus:{port}").as_str())
    );
    // panels use the templated datasource, which defaults to this one
    let dash = dashboard();
    assert_eq!(dash["templating"]["list"][0]["query"], "prometheus");
    assert_eq!(dash["uid"], "causeway");
    let home = g["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .unwrap();
    assert_eq!(home, format!("{dash_dir}/causeway.json"));
}
