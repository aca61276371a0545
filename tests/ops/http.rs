//! A minimal HTTP/1.1 client for the admin endpoint (one request per
//! connection, read to EOF), and Prometheus text helpers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request; returns status, head and body.
pub async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("admin answers in time")
        .expect("read");
    let out = String::from_utf8(out).expect("utf-8 answer");
    let (head, body) = out.split_once("\r\n\r\n").expect("http head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line in {head:?}"));
    (status, head.to_string(), body.to_string())
}

/// GET `path`, expecting 200 and JSON.
pub async fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, head, body) = get(addr, "GET", path).await;
    assert_eq!(status, 200, "{path}: {head}\n{body}");
    assert!(
        head.contains("Content-Type: application/json"),
        "{path}: {head}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Value of gauge `name` for `backend` in Prometheus text.
pub fn gauge(text: &str, name: &str, backend: &str) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|(l, _)| l.get("backend").map(String::as_str) == Some(backend))
        .map(|(_, v)| v)
}

/// Samples of `name`: labels → value.
pub fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
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
        let map = labels
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        out.push((map, value.parse().expect("sample value")));
    }
    out
}

/// Metric names (without `_bucket`/`_sum`/`_count` folding) in a scrape.
pub fn names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}
