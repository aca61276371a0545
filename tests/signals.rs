//! The `causeway` binary and its signals against a real topology: SIGHUP
//! reloads the config file (a weight change shows in SHOW CAUSEWAY
//! BACKENDS; a broken file keeps the old topology), and SIGTERM lets the
//! statement in flight finish, refuses new clients and exits 0.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child if the test fails before it exits.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

async fn connect(port: u16, user: &str, pw: &str) -> mysql_async::Conn {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match mysql_async::Conn::new(support::opts(port, user, pw, None)).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "causeway never accepted: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `causeway_reloads_total{result="<result>"}` from the admin endpoint's
/// /metrics (0 before the first such reload: the series does not exist yet).
async fn reloads(admin_port: u16, result: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", admin_port))
        .await
        .expect("connect admin");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("admin answers in time")
        .expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let series = format!("causeway_reloads_total{{result=\"{result}\"}} ");
    out.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// Polls (bounded) until `reloads(result)` reaches `n`.
async fn wait_reloads(admin_port: u16, result: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = reloads(admin_port, result).await;
        assert!(got <= n, "{got} reloads with result {result}, expected {n}");
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reload {result} #{n} never processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn r1_weight(admin: &mut mysql_async::Conn) -> String {
    let rows: Vec<mysql_async::Row> = admin.query("SHOW CAUSEWAY BACKENDS").await.unwrap();
    rows.iter()
        .find(|r| r.get::<String, _>(0).unwrap() == "r1")
        .map(|r| r.get::<String, _>(4).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_drains() {
    let topo = support::topology();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("cw-signals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("causeway.toml");
    let admin_port = free_port();
    let base = support::config_text(topo)
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\"\nshutdown_drain_ms = 10000"),
        )
        .replacen(
            "[admin]\nenabled = false",
            &format!("[admin]\nenabled = true\nlisten = \"127.0.0.1:{admin_port}\""),
            1,
        );
    std::fs::write(&path, &base).unwrap();
    let mut child = Reap(
        Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["--config", path.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );

    let mut admin = connect(port, "admin", "adminpw").await;
    assert_eq!(r1_weight(&mut admin).await, "1");
    assert_eq!(reloads(admin_port, "ok").await, 0);
    assert_eq!(reloads(admin_port, "error").await, 0);
    // SIGHUP with a new weight: SHOW CAUSEWAY BACKENDS follows (bounded poll)
    std::fs::write(&path, base.replacen("weight = 1", "weight = 7", 1)).unwrap();
    signal(&child.0, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while r1_weight(&mut admin).await != "7" {
        assert!(Instant::now() < deadline, "reload not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_reloads(admin_port, "ok", 1).await;
    // a broken file is refused (checked once the reload was processed:
    // counted as an error); the running topology stays
    std::fs::write(&path, "[server\nlisten = ").unwrap();
    signal(&child.0, "-HUP");
    wait_reloads(admin_port, "error", 1).await;
    assert_eq!(
        reloads(admin_port, "ok").await,
        1,
        "the broken file was not applied"
    );
    let mut app = connect(port, "app", "apppw").await;
    let v: Option<i64> = app.query_first("SELECT 41 + 1").await.unwrap();
    assert_eq!(v, Some(42));
    assert_eq!(r1_weight(&mut admin).await, "7");

    // SIGTERM while a statement runs: it completes, then the process exits 0
    let in_flight = tokio::spawn(async move {
        let v: Option<i64> = app
            .query_first("SELECT SLEEP(1) + 5 AS drain_me")
            .await
            .unwrap();
        v
    });
    // wait (bounded) until the statement runs on some server
    let deadline = Instant::now() + Duration::from_secs(20);
    'found: loop {
        for s in topo.servers() {
            let mut c = s.conn().await.unwrap();
            let n: Option<i64> = c
                .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%drain_me%' AND INFO NOT LIKE '%PROCESSLIST%'")
                .await
                .unwrap();
            if n.unwrap_or(0) > 0 {
                break 'found;
            }
        }
        assert!(Instant::now() < deadline, "the statement never started");
    }
    signal(&child.0, "-TERM");
    assert_eq!(
        in_flight.await.unwrap(),
        Some(5),
        "the statement in flight finished"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "causeway did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        mysql_async::Conn::new(support::opts(port, "app", "apppw", None))
            .await
            .is_err(),
        "no new clients after shutdown"
    );
    std::fs::remove_dir_all(&dir).ok();
}
