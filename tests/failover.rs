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

async fn own_proxy(topo: &Topology) -> (Arc<Proxy>, u16) {
    let text = support::config_text(topo).replace(
        "[monitor]\n",
        "[monitor]\ninterval_ms = 200\nconnect_timeout_ms = 300\n",
    )
        + "[routing]\nmax_lag_ms = 500\nlag_hysteresis_ms = 100\nread_balance = \"statement\"\n";
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

/// Reads until one lands on `sid` (bounded).
async fn reads_reach(c: &mut mysql_async::Conn, sid: u32) {
    for _ in 0..2_000 {
        let s: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        if s == sid {
            return;
        }
    }
    panic!("no read reached server {sid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_killed_replicas_leave_and_rejoin_without_client_errors() {
    let mut opts = Options::default();
    opts.extra_mysqld_options
        .push("max_connections=1000".into());
    let topo = Arc::new(Topology::start(opts).await.unwrap());
    let (proxy, port) = own_proxy(&topo).await;
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

    // 2. mysqld killed under read load: no client error
    let killed = Arc::new(AtomicBool::new(false));
    let after_kill = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let killed = Arc::clone(&killed);
        let after_kill = Arc::clone(&after_kill);
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(support::opts(port, "app", "apppw", None))
                .await
                .unwrap();
            let mut n = 0u64;
            loop {
                let r: Result<Option<u32>, _> = c.query_first("SELECT @@server_id").await;
                let s = r.expect("a read failed while a replica died").unwrap();
                assert!(s > 0);
                n += 1;
                if killed.load(Ordering::Relaxed)
                    && after_kill.fetch_add(1, Ordering::Relaxed) > 4_000
                {
                    return n;
                }
                assert!(n < 1_000_000, "load loop bound");
            }
        }));
    }
    // let the load spread over both replicas, then kill r2
    reads_reach(&mut c, r2).await;
    topo.replicas()[1].kill();
    killed.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert!(total > 4_000);
    wait_view(&proxy, 1, false).await;
    topo.replicas()[1].start().await.unwrap();
    wait_view(&proxy, 1, true).await;
    reads_reach(&mut c, r2).await;
    proxy.shutdown();
}
