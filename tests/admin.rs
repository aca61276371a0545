//! The HTTP admin endpoint against real MySQL: `/metrics` counts statements
//! by route exactly and exposes per-backend gauges, `/healthz` answers,
//! `/readyz` turns 200 once the monitor measured the primary and is 503
//! (with the reason) for a proxy whose primary is a closed port, unknown
//! paths are 404, and a taken admin address is a clear error.
//!
//! Every test of this binary shares the process-wide metrics recorder; only
//! `metrics_follow_statements` sends statements, so its deltas are exact.

#[path = "support/mod.rs"]
mod support;

use causeway::proxy::{Proxy, ProxyError};
use causeway_config::Config;
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn admin_on(text: String) -> String {
    text.replacen(
        "[admin]\nenabled = false",
        "[admin]\nenabled = true\nlisten = \"127.0.0.1:0\"",
        1,
    )
}

/// A proxy in front of the shared topology with the admin endpoint on.
async fn start_admin_proxy() -> (support::TestProxy, SocketAddr) {
    let tp = support::start_proxy_with(admin_on).await;
    let admin = tp
        .proxy
        .serve_admin()
        .await
        .expect("admin endpoint")
        .expect("admin enabled");
    (tp, admin)
}

/// One HTTP request; returns status and body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("admin answers in time")
        .expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line in {head:?}"));
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    if method != "HEAD" {
        assert_eq!(len, body.len(), "Content-Length matches the body");
    }
    (status, body.to_string())
}

/// Samples of `name` from Prometheus text: labels → value.
fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, labels) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let mut map = BTreeMap::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label pair");
            map.insert(k.to_string(), v.trim_matches('"').to_string());
        }
        out.push((map, value.parse().expect("sample value")));
    }
    out
}

/// Sum of `name` over series whose labels include every `want` pair.
fn sum(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

fn gauge(text: &str, name: &str, backend: &str) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| l.get("backend").map(String::as_str) == Some(backend))
        .map(|(_, v)| v)
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls /readyz until `cond(status, body)` holds, bounded.
async fn readyz_until(addr: SocketAddr, what: &str, cond: impl Fn(u16, &str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = http(addr, "GET", "/readyz").await;
        if cond(status, &body) {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "/readyz not '{what}' in 15 s: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scrape once every backend is up and eligible and both replicas have a
/// measured lag (bounded, 15 s).
async fn scrape_when_gauges_ready(admin: SocketAddr) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(admin).await;
        let ready = ["primary", "r1", "r2"].iter().all(|b| {
            gauge(&text, "causeway_backend_up", b) == Some(1.0)
                && gauge(&text, "causeway_backend_eligible", b) == Some(1.0)
        }) && ["r1", "r2"]
            .iter()
            .all(|b| gauge(&text, "causeway_replica_lag_ms", b).is_some());
        if ready {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "gauges incomplete after 15 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_statements() {
    let (tp, admin) = start_admin_proxy().await;
    let db = support::unique_db("admin");
    let mut writer = tp.conn().await;
    writer
        .query_drop(format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
        ))
        .await
        .expect("schema");
    // reads on a connection that never writes: no token, always a replica
    let mut reader = tp.conn().await;
    let before = scrape(admin).await;
    const READS: usize = 37;
    const WRITES: usize = 11;
    for i in 0..READS {
        let one: i64 = reader
            .query_first(format!("SELECT {i} + 1"))
            .await
            .expect("read")
            .expect("row");
        assert_eq!(one, i as i64 + 1);
    }
    for i in 0..WRITES {
        writer
            .query_drop(format!("INSERT INTO {db}.t (v) VALUES ({i})"))
            .await
            .expect("write");
        assert_eq!(writer.affected_rows(), 1);
    }
    let after = scrape(admin).await;
    let delta = |route: &str| {
        sum(&after, "causeway_statements_total", &[("route", route)])
            - sum(&before, "causeway_statements_total", &[("route", route)])
    };
    assert_eq!(delta("replica"), READS as f64, "replica reads counted");
    assert_eq!(delta("primary"), WRITES as f64, "primary writes counted");
    assert_eq!(delta("fallback"), 0.0);
    // read_balance = "session": the reader's reads all count on its replica
    let per: Vec<f64> = ["r1", "r2"]
        .iter()
        .map(|r| {
            sum(&after, "causeway_statements_total", &[("backend", r)])
                - sum(&before, "causeway_statements_total", &[("backend", r)])
        })
        .collect();
    assert!(per.contains(&(READS as f64)), "per replica {per:?}");
    let count = |text: &str, tier: &str| {
        sum(
            text,
            "causeway_statement_duration_seconds_count",
            &[("tier", tier)],
        )
    };
    assert_eq!(
        count(&after, "replica") - count(&before, "replica"),
        READS as f64
    );
    assert_eq!(
        count(&after, "primary") - count(&before, "primary"),
        WRITES as f64
    );

    // gauges: every backend, measured by the monitor (bounded wait)
    let text = scrape_when_gauges_ready(admin).await;
    for b in ["primary", "r1", "r2"] {
        let c = gauge(&text, "causeway_backend_connections", b).expect("connections gauge");
        assert!(c >= 1.0, "{b}: {c} connections while sessions hold them");
    }
    assert!(gauge(&text, "causeway_replica_lag_ms", "primary").is_none());
    let clients = sum(&text, "causeway_client_connections", &[]);
    assert!(clients >= 2.0, "client gauge {clients}");
    assert!(
        text.contains("# TYPE causeway_statements_total counter"),
        "{text}"
    );
    // pool gauges, the wait for a connection, and pins
    for b in ["primary", "r1", "r2"] {
        let idle = gauge(&text, "causeway_backend_connections_idle", b).expect("idle gauge");
        let used = gauge(&text, "causeway_backend_connections_in_use", b).expect("in-use gauge");
        assert!(
            idle >= 0.0 && used >= 0.0,
            "{b}: idle {idle}, in use {used}"
        );
    }
    let waits = sum(
        &text,
        "causeway_pool_wait_seconds_count",
        &[("backend", "primary")],
    );
    assert!(waits >= WRITES as f64, "{waits} waits recorded:\n{text}");
    let pins = |t: &str| {
        sum(
            t,
            "causeway_session_pins_total",
            &[("reason", "user variable")],
        )
    };
    let pins_before = pins(&text);
    writer.query_drop("SET @pinned = 1").await.expect("pin");
    let text = scrape(admin).await;
    assert_eq!(pins(&text) - pins_before, 1.0, "a pin is counted");
    drop((reader, writer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_readyz_and_unknown_paths() {
    let (_tp, admin) = start_admin_proxy().await;
    assert_eq!(
        http(admin, "GET", "/healthz").await,
        (200, "ok\n".to_string())
    );
    let body = readyz_until(admin, "200", |s, _| s == 200).await;
    assert_eq!(body, "ready\n");
    assert_eq!(http(admin, "GET", "/nope").await.0, 404);
    assert_eq!(http(admin, "POST", "/metrics").await.0, 405);
    assert_eq!(http(admin, "HEAD", "/healthz").await, (200, String::new()));
    // a malformed request line is a 400, not a hang
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"hello\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_the_primary_is_down() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }; // dropped: nothing listens there now
    let primary = support::topology().primary().addr();
    let text = admin_on(support::config_text(support::topology()))
        .replacen(
            &format!("address = \"{primary}\""),
            &format!("address = \"{closed}\""),
            1,
        )
        // a name of its own: gauges are keyed by backend name process-wide
        .replacen("name = \"primary\"", "name = \"deadprimary\"", 1);
    let config = Config::from_str_named(&text, "dead.toml").expect("config");
    let proxy = Proxy::new(config).expect("proxy");
    let admin = proxy.serve_admin().await.unwrap().unwrap();
    let body = readyz_until(admin, "503 unreachable", |s, b| {
        s == 503 && b.contains("unreachable")
    })
    .await;
    assert!(
        body.contains("deadprimary") && body.contains(&closed),
        "{body}"
    );
    assert_eq!(
        http(admin, "GET", "/healthz").await.0,
        200,
        "alive though not ready"
    );
    let text = scrape(admin).await;
    assert_eq!(
        gauge(&text, "causeway_backend_up", "deadprimary"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        gauge(&text, "causeway_backend_eligible", "deadprimary"),
        Some(0.0)
    );
    proxy.shutdown();
    // the endpoint closes with the proxy
    let start = Instant::now();
    while tokio::net::TcpStream::connect(admin).await.is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "admin still listening"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_admin_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let text = support::config_text(support::topology()).replacen(
        "[admin]\nenabled = false",
        &format!("[admin]\nenabled = true\nlisten = \"{addr}\""),
        1,
    );
    let proxy: Arc<Proxy> = Proxy::new(Config::from_str_named(&text, "t.toml").unwrap()).unwrap();
    let err = proxy.serve_admin().await.expect_err("address in use");
    assert!(matches!(err, ProxyError::Admin(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("[admin] listen") && msg.contains(&addr),
        "{msg}"
    );
    proxy.shutdown();
}
