//! Failover against real MySQL, each test on a topology of its own: the
//! primary's death blocks no read (logins with a default database, causal
//! reads), the writer is followed without a reload (`[failover] mode =
//! "follow"`), a split brain is fenced, a token naming writes that died with
//! the old primary is refused at once, the old primary rejoins as a replica,
//! and static mode still needs a reload.

#[path = "support/mod.rs"]
mod support;

use causeway::proxy::Proxy;
use causeway_config::Config;
use causeway_sandbox::{Options, Server, Topology};
use mysql_async::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn start_topology() -> Arc<Topology> {
    let mut opts = Options::default();
    opts.extra_mysqld_options
        .push("max_connections=1000".into());
    Arc::new(Topology::start(opts).await.unwrap())
}

/// A proxy in front of `topo`: monitor every 100 ms, `extra` appended.
async fn own_proxy(topo: &Topology, extra: &str) -> (Arc<Proxy>, u16) {
    let text = support::config_text(topo).replace(
        "[monitor]\n",
        "[monitor]\ninterval_ms = 100\nconnect_timeout_ms = 300\n",
    ) + extra;
    let config = Config::from_str_named(&text, "writer_failover.toml").unwrap();
    let proxy = Proxy::new(config).unwrap();
    let listener = proxy.bind().await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(Arc::clone(&proxy).serve(listener));
    (proxy, port)
}

/// Polls `cond` on the proxy's current snapshot until it holds (bounded).
async fn until(proxy: &Proxy, what: &str, cond: impl Fn(&causeway::topology::Topology) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cond(&proxy.topology.load()) {
            return;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every backend measured, replicas eligible.
async fn settled(proxy: &Proxy) {
    until(proxy, "every backend measured and eligible", |t| {
        t.backends().all(|b| {
            let v = b.state.view.load();
            v.measured_at.is_some() && v.eligible && v.server_uuid.is_some()
        })
    })
    .await;
}

async fn client(port: u16, db: Option<&str>) -> mysql_async::Conn {
    mysql_async::Conn::new(support::opts(port, "app", "apppw", db))
        .await
        .unwrap()
}

async fn last_route(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap()
}

async fn token(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap()
}

async fn root(s: &Server) -> mysql_async::Conn {
    s.conn().await.unwrap()
}

/// One schema with a table `t (k INT PRIMARY KEY, v INT)`, replicated.
async fn schema(topo: &Topology, port: u16, db: &str) {
    let mut c = client(port, None).await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (k INT PRIMARY KEY, v INT)"))
        .await
        .unwrap();
    topo.wait_replicated(Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_blocks_no_login_and_no_causal_read() {
    let topo = start_topology().await;
    let (proxy, port) = own_proxy(&topo, "").await;
    settled(&proxy).await;
    schema(&topo, port, "fo1").await;
    let mut w = client(port, Some("fo1")).await;
    w.query_drop("INSERT INTO t VALUES (1, 10)").await.unwrap();
    let tok = token(&mut w).await;
    assert!(!tok.is_empty());
    topo.wait_replicated(Duration::from_secs(30)).await.unwrap();
    // a session reading before the kill
    let mut old = client(port, Some("fo1")).await;
    let v: i32 = old.query_first("SELECT v FROM t WHERE k = 1").await.unwrap().unwrap();
    assert_eq!(v, 10);
    // pooled connections to the primary exist (the writer's session holds none now)
    w.query_drop("SET SESSION sql_mode = 'STRICT_ALL_TABLES'").await.unwrap();
    drop(w);

    topo.primary().kill();
    // at once, before the monitor noticed, and again once it did
    for round in 0..2 {
        if round == 1 {
            until(&proxy, "primary seen down", |t| {
                !t.backend("primary").unwrap().state.view.load().reachable
            })
            .await;
        }
        let mut fresh = client(port, Some("fo1")).await;
        let v: i32 = fresh.query_first("SELECT v FROM t WHERE k = 1").await.unwrap().unwrap();
        assert_eq!(v, 10, "round {round}");
        assert!(last_route(&mut fresh).await.starts_with("replica:"), "round {round}");
        // a fresh causal session with the token: served by a replica
        let mut causal = client(port, None).await;
        causal
            .query_drop(format!("SET @@causeway.token = '{tok}'"))
            .await
            .unwrap();
        let v: i32 = causal
            .query_first("SELECT v FROM fo1.t WHERE k = 1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 10, "round {round}");
        let route = last_route(&mut causal).await;
        assert!(route.starts_with("replica:"), "round {round}: {route}");
        let v: i32 = old.query_first("SELECT v FROM t WHERE k = 1").await.unwrap().unwrap();
        assert_eq!(v, 10, "round {round}");
    }
    // a write fails with the real cause, not a protocol violation
    let mut c = client(port, Some("fo1")).await;
    let e = c
        .query_drop("INSERT INTO t VALUES (2, 20)")
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains("protocol violation"), "{e}");
    assert!(
        e.contains("refused") || e.contains("no writer") || e.contains("timed out"),
        "{e}"
    );
    proxy.shutdown();
}
