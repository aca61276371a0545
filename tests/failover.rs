//! Health and lag against a real topology of its own: a replica whose
//! applier stops falls out of the read rotation and returns after START
//! REPLICA; a replica whose mysqld is killed under read load costs the
//! clients no error (reads are retried once elsewhere) and rejoins after a
//! restart.

#[path = "support/mod.rs"]
mod support;

use causeway::proxy::Proxy;
use causeway_config::Config;
use causeway_sandbox::{Options, Topology};
use mysql_async::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn own_proxy(topo: &Topology, read_balance: &str) -> (Arc<Proxy>, u16) {
    let text = support::config_text(topo).replace(
        "[monitor]\n",
        "[monitor]\ninterval_ms = 200\nconnect_timeout_ms = 300\n",
    ) + &format!(
        "[routing]\nmax_lag_ms = 500\nlag_hysteresis_ms = 100\nread_balance = \"{read_balance}\"\n"
    );
    let config = Config::from_str_named(&text, "failover.toml").unwrap();
    let proxy = Proxy::new(config).unwrap();
    let listener = proxy.bind().await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(Arc::clone(&proxy).serve(listener));
    (proxy, port)
}

async fn wait_view(proxy: &Proxy, replica: usize, eligible: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topo = proxy.topology.load_full();
        let r = &topo.replicas[replica];
        if r.state.view.load().eligible == eligible {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {replica} never became eligible={eligible}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(250), r.state.changed.notified()).await;
    }
}

/// Reads until one lands on `sid` (bounded). A causal session changes
/// replica only once the monitor has probed after its last read (monotonic
/// reads), so the reads leave it a moment.
async fn reads_reach(c: &mut mysql_async::Conn, sid: u32) {
    for _ in 0..2_000 {
        let s: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        if s == sid {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("no read reached server {sid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_killed_replicas_leave_and_rejoin_without_client_errors() {
    let mut opts = Options::default();
    opts.extra_mysqld_options
        .push("max_connections=1000".into());
    let topo = Arc::new(Topology::start(opts).await.unwrap());
    let (proxy, port) = own_proxy(&topo, "statement").await;
    let r1 = topo.replicas()[0].server_id();
    let r2 = topo.replicas()[1].server_id();
    wait_view(&proxy, 0, true).await;
    wait_view(&proxy, 1, true).await;
    let mut c = mysql_async::Conn::new(support::opts(port, "app", "apppw", None))
        .await
        .unwrap();
    reads_reach(&mut c, r1).await;

    // 1. applier stopped: out of the rotation, back after START REPLICA
    let mut r1c = topo.replicas()[0].conn().await.unwrap();
    r1c.query_drop("STOP REPLICA SQL_THREAD").await.unwrap();
    let mut p = topo.primary().conn().await.unwrap();
    p.query_drop("CREATE DATABASE IF NOT EXISTS lagdb")
        .await
        .unwrap();
    p.query_drop("CREATE TABLE IF NOT EXISTS lagdb.t (a INT)")
        .await
        .unwrap();
    p.query_drop("INSERT INTO lagdb.t VALUES (1)")
        .await
        .unwrap();
    wait_view(&proxy, 0, false).await;
    for _ in 0..300 {
        let s: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_ne!(s, r1, "an excluded replica got a read");
    }
    r1c.query_drop("START REPLICA SQL_THREAD").await.unwrap();
    wait_view(&proxy, 0, true).await;
    reads_reach(&mut c, r1).await;

    // 2. mysqld killed under read load: no client error, with reads spread
    // per statement (`port`) and per session (`sport`, sessions keep a
    // replica: those on r2 must move)
    let (sproxy, sport) = own_proxy(&topo, "session").await;
    wait_view(&sproxy, 0, true).await;
    wait_view(&sproxy, 1, true).await;
    let killed = Arc::new(AtomicBool::new(false));
    let after_kill = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // every load session has read before the kill
    let reading = Arc::new(tokio::sync::Barrier::new(17));
    for i in 0..16 {
        let killed = Arc::clone(&killed);
        let after_kill = Arc::clone(&after_kill);
        let reading = Arc::clone(&reading);
        let port = if i % 2 == 0 { port } else { sport };
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(support::opts(port, "app", "apppw", None))
                .await
                .unwrap();
            let mut n = 0u64;
            let mut seen = Vec::new();
            loop {
                let r: Result<Option<u32>, _> = c.query_first("SELECT @@server_id").await;
                let s = r.expect("a read failed while a replica died").unwrap();
                if seen.last() != Some(&s) {
                    seen.push(s);
                }
                n += 1;
                if n == 1 {
                    reading.wait().await;
                }
                if killed.load(Ordering::Relaxed)
                    && after_kill.fetch_add(1, Ordering::Relaxed) > 8_000
                {
                    return (port, n, seen);
                }
                assert!(n < 1_000_000, "load loop bound");
            }
        }));
    }
    // let the load spread over both replicas, then kill r2
    reads_reach(&mut c, r2).await;
    reading.wait().await;
    topo.replicas()[1].kill();
    killed.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut moved = 0;
    for t in tasks {
        let (p, n, seen) = t.await.unwrap();
        total += n;
        if p == sport {
            // a session-balanced session changes server only when its
            // replica dies: from r2 to r1, once
            assert!(seen == [r1] || seen == [r2, r1], "{seen:?}");
            moved += usize::from(seen == [r2, r1]);
        }
    }
    assert!(total > 8_000);
    assert!(moved > 0, "no session-balanced session was on r2");
    sproxy.shutdown();
    wait_view(&proxy, 1, false).await;
    topo.replicas()[1].start().await.unwrap();
    wait_view(&proxy, 1, true).await;
    reads_reach(&mut c, r2).await;
    proxy.shutdown();
}
