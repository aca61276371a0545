//! The admin HTTP server (hyper) under hostile clients, judged from
//! outside on the real binary: 500 idle connections, a 1 MB request line,
//! a 64 MB header and a slow head neither hang the endpoint nor grow the
//! process, and the MySQL side keeps serving.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::http::get;
use crate::support::external::{free_port, ExternalProxy};
use crate::support::raw::read_until_closed;

/// The binary with its admin endpoint on a free port.
pub async fn external_with_admin(
    tweak: impl FnOnce(String) -> String,
) -> (ExternalProxy, SocketAddr) {
    let port = free_port();
    let p = ExternalProxy::start(|t| {
        tweak(t.replacen(
            "[admin]\nenabled = false",
            &format!("[admin]\nenabled = true\nlisten = \"127.0.0.1:{port}\""),
            1,
        ))
    })
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "admin never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (p, addr)
}

/// Sends `len` bytes of `fill` after `prefix` until done or the server
/// stops reading; returns how many bytes went out.
async fn flood(s: &mut TcpStream, prefix: &[u8], fill: u8, len: usize) -> usize {
    let mut sent = 0;
    if s.write_all(prefix).await.is_err() {
        return 0;
    }
    let chunk = vec![fill; 64 * 1024];
    while sent < len {
        match tokio::time::timeout(Duration::from_secs(5), s.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break, // reset, or the server stopped reading
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_bounds_hostile_clients() {
    let (mut p, admin) = external_with_admin(|t| t).await;
    let (status, _, body) = get(admin, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let idle_hwm = p.vm_hwm_kib();

    // 500 idle connections: the endpoint still answers at once
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(admin).await.expect("connect"));
    }
    let t = Instant::now();
    let (status, _, _) = get(admin, "GET", "/readyz").await;
    assert_eq!(status, 200);
    let served_in = t.elapsed();
    assert!(
        served_in < Duration::from_secs(1),
        "/readyz took {served_in:?} beside 500 idle"
    );
    // ... and closes them after the header timeout (5 s), not never
    let t = Instant::now();
    let first = read_until_closed(&mut idle[0], Duration::from_secs(15)).await;
    let closed_after = t.elapsed();
    assert!(
        closed_after < Duration::from_secs(10),
        "idle closed after {closed_after:?}"
    );
    assert!(!String::from_utf8_lossy(&first).contains("200 OK"));
    drop(idle);

    // a 1 MB request line: refused (4xx) early and closed
    let mut s = TcpStream::connect(admin).await.unwrap();
    let sent = flood(&mut s, b"GET /", b'a', 1024 * 1024).await;
    let line_answer =
        String::from_utf8_lossy(&read_until_closed(&mut s, Duration::from_secs(15)).await)
            .into_owned();
    assert!(
        line_answer.starts_with("HTTP/1.1 4"),
        "1 MB request line: {line_answer:?} after {sent} bytes"
    );
    let line_status = line_answer.lines().next().unwrap_or("").to_string();

    // a 64 MB header: the server stops reading at its head limit
    let mut s = TcpStream::connect(admin).await.unwrap();
    let header_sent = flood(&mut s, b"GET /metrics HTTP/1.1\r\nX-Big: ", b'b', 64 << 20).await;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut s, Duration::from_secs(15)).await)
        .into_owned();
    assert!(
        header_sent < 64 << 20 || answer.starts_with("HTTP/1.1 431"),
        "64 MB header accepted whole: {answer:?}"
    );

    // a head sent one byte a second is cut at the header timeout
    let mut s = TcpStream::connect(admin).await.unwrap();
    let t = Instant::now();
    let slow = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), slow).await;
    let cut_after = t.elapsed();
    assert!(
        cut_after < Duration::from_secs(15),
        "a slow head was not cut: {cut_after:?}"
    );

    let (status, _, body) = get(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("causeway_client_connections"));
    p.assert_healthy_after_attack(idle_hwm).await;
    println!(
        "hostile admin: /readyz beside 500 idle in {served_in:?}; idle closed after {closed_after:?}; \
         1 MB request line: {line_status:?}; 64 MB header: {:?} after {header_sent} bytes written; \
         slow head cut after {cut_after:?}; VmHWM idle {idle_hwm} KiB, after {} KiB",
        answer.lines().next().unwrap_or(""),
        p.vm_hwm_kib()
    );
}
