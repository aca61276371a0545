//! The primary's death blocks no login and no read; static mode needs a
//! reload, which restores writes.

use crate::*;
use causeway::failover::Writers;
use causeway_config::Config;
use causeway_sandbox::replication;
use mysql_async::prelude::*;
use std::time::{Duration, Instant};

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
    let v: i32 = old
        .query_first("SELECT v FROM t WHERE k = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, 10);
    // pooled connections to the primary exist (the writer's session holds none now)
    w.query_drop("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
        .await
        .unwrap();
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
        let v: i32 = fresh
            .query_first("SELECT v FROM t WHERE k = 1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 10, "round {round}");
        assert!(
            last_route(&mut fresh).await.starts_with("replica:"),
            "round {round}"
        );
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
        let v: i32 = old
            .query_first("SELECT v FROM t WHERE k = 1")
            .await
            .unwrap()
            .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_needs_a_reload_and_the_reload_restores_writes() {
    let topo = start_topology().await;
    let extra = "[failover]\nmode = \"static\"\n";
    let (proxy, port) = own_proxy(&topo, extra).await;
    settled(&proxy).await;
    schema(&topo, port, "fo5").await;
    let mut c = client(port, Some("fo5")).await;
    c.query_drop("INSERT INTO t VALUES (1, 1)").await.unwrap();
    topo.primary().kill();
    let r1 = &topo.replicas()[0];
    replication::promote(r1).await.unwrap();
    replication::repoint(&topo.replicas()[1], r1).await.unwrap();
    until(&proxy, "r1 seen writable", |t| {
        let v = t.backend("r1").unwrap().state.view.load();
        v.reachable && !v.read_only && v.server_uuid.is_some()
    })
    .await;
    // static: the writer is still [primary], whose death the write meets
    assert_eq!(proxy.topology.load().primary.name(), "primary");
    assert_eq!(proxy.failover.status().writers, Writers::Unknown);
    let e = c
        .query_drop("INSERT INTO t VALUES (2, 2)")
        .await
        .unwrap_err();
    let e = server_err(e);
    // cannot connect, or a pooled socket the dead server had closed
    assert!(matches!(e.code, 2003 | 2013), "{} {}", e.code, e.message);
    assert!(!e.message.contains("protocol violation"), "{}", e.message);
    // the operator's reload names r1 as [primary]
    let text = config_with_primary(&topo, "r1").replace(
        "[monitor]\n",
        "[monitor]\ninterval_ms = 100\nconnect_timeout_ms = 300\n",
    ) + extra;
    let config = Config::from_str_named(&text, "static.toml").unwrap();
    let t = Instant::now();
    proxy.apply(config).unwrap();
    let took = loop {
        if c.query_drop("INSERT INTO t VALUES (3, 3)").await.is_ok() {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no write after the reload"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!(
        "static mode: reload to first write {:.3} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(direct_v(r1, "fo5", 3).await, Some(3));
    assert_eq!(proxy.topology.load().primary.name(), "r1");
    proxy.shutdown();
}
