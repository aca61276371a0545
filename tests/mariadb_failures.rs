//! Disruptive MariaDB tests on their own topology: the lag budget (a
//! replica held back with `MASTER_DELAY` is excluded, then readmitted) and
//! a replica killed under a read load (no client error, reads move to the
//! other replica, the killed one comes back). Serialized: each disturbs
//! the replicas. Skipped only with `CAUSEWAY_MARIADB=0`.

#[path = "mariadb/support.rs"]
mod support;

use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fast_monitor(t: String) -> String {
    t.replacen(
        "[monitor]\n",
        "[monitor]\ninterval_ms = 100\ngtid_interval_ms = 50\nconnect_timeout_ms = 1000\n",
        1,
    )
}

/// Polls `cond` on replica `name`'s view until it holds (bounded).
async fn wait_view(
    p: &TestProxy,
    name: &str,
    what: &str,
    cond: impl Fn(&causeway::topology::View) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topo = p.proxy.shared().topology.load();
        let b = topo
            .replicas
            .iter()
            .find(|b| b.name() == name)
            .expect("replica");
        let v = b.state.view.load();
        if cond(&v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {what}: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn set_delay(r: &causeway_sandbox::Server, seconds: u32) {
    let mut c = root(r).await;
    c.query_drop("STOP SLAVE").await.unwrap();
    c.query_drop(format!("CHANGE MASTER TO MASTER_DELAY = {seconds}"))
        .await
        .unwrap();
    c.query_drop("START SLAVE").await.unwrap();
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_budget_excludes_a_lagging_replica_and_readmits_it() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let _serial = SERIAL.lock().await;
    let p = start_proxy_with(|t| {
        fast_monitor(t).replace(
            "[failover]",
            "[routing]\nmax_lag_ms = 700\nread_balance = \"statement\"\n[failover]",
        )
    })
    .await;
    let db = unique_db("mdb_lag");
    let mut w = root(topology().primary()).await;
    w.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    w.query_drop(format!(
        "CREATE TABLE {db}.t (id INT AUTO_INCREMENT PRIMARY KEY)"
    ))
    .await
    .unwrap();
    topology()
        .wait_replicated(Duration::from_secs(30))
        .await
        .unwrap();
    let r1 = &topology().replicas()[0];
    set_delay(r1, 3600).await;
    // the primary keeps writing: r1's lag grows past the budget
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let db = db.clone();
        tokio::spawn(async move {
            let mut w = root(topology().primary()).await;
            while !stop.load(Ordering::Relaxed) {
                w.query_drop(format!("INSERT INTO {db}.t VALUES ()"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    wait_view(&p, "r1", "excluded for lag", |v| {
        !v.eligible && v.reachable && v.lag_ms.is_some_and(|l| l > 700)
    })
    .await;
    // eventual reads now come only from r2 (server_id 3), never r1
    let mut c = p.conn().await;
    c.query_drop("SET @@causeway.consistency = 'eventual'")
        .await
        .unwrap();
    for _ in 0..20 {
        let sid: Option<u32> = c
            .query_first(format!("SELECT @@server_id FROM {db}.t LIMIT 1"))
            .await
            .unwrap();
        assert_eq!(sid, Some(3), "a read reached the lagging replica");
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    set_delay(r1, 0).await;
    wait_view(&p, "r1", "readmitted", |v| {
        v.eligible && v.lag_ms == Some(0)
    })
    .await;
    let mut seen_r1 = false;
    for _ in 0..40 {
        let sid: Option<u32> = c
            .query_first(format!("SELECT @@server_id FROM {db}.t LIMIT 1"))
            .await
            .unwrap();
        seen_r1 |= sid == Some(2);
    }
    assert!(seen_r1, "r1 serves reads again once within the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_under_load_loses_no_read() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let _serial = SERIAL.lock().await;
    let p = start_proxy_with(fast_monitor).await;
    let db = unique_db("mdb_kill");
    let mut w = root(topology().primary()).await;
    w.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    w.query_drop(format!("CREATE TABLE {db}.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    w.query_drop(format!("INSERT INTO {db}.t VALUES (1)"))
        .await
        .unwrap();
    topology()
        .wait_replicated(Duration::from_secs(30))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let on_r2 = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let on_r2 = Arc::clone(&on_r2);
        let (opts, db) = (p.opts(), db.clone());
        clients.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                let r: Result<Option<(i64, u32)>, _> = c
                    .query_first(format!("SELECT COUNT(*), @@server_id FROM {db}.t"))
                    .await;
                match r {
                    Ok(Some((1, sid))) => {
                        if sid == 3 {
                            on_r2.fetch_add(1, Ordering::Relaxed);
                        }
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    other => {
                        eprintln!("read failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r2 = &topology().replicas()[1];
    let before = ok.load(Ordering::Relaxed);
    let r2_before = on_r2.load(Ordering::Relaxed);
    assert!(
        r2_before > 0,
        "r2 served part of the load before it was killed"
    );
    r2.kill();
    wait_view(&p, "r2", "down", |v| !v.reachable).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = ok.load(Ordering::Relaxed);
    r2.start().await.unwrap();
    wait_view(&p, "r2", "back", |v| v.eligible && v.reachable).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "replica killed under load: {ok} reads ok ({} while r2 was down), {failed} failed",
        during - before
    );
    assert_eq!(failed, 0);
    assert!(during > before + 10, "reads went on while r2 was down");
}
