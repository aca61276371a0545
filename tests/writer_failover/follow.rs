//! Following the writer: kill under load then promotion (token checker,
//! eventual reader, replicas that do not follow the writer excluded), and
//! a split brain fenced.

use crate::*;
use causeway::failover::Writers;
use causeway_sandbox::replication;
use mysql_async::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the load tasks of the kill-under-load test counted.
#[derive(Debug, Default)]
struct Counts {
    writes_ok: u64,
    writes_failed: u64,
    checked: u64,
    stale: u64,
    lost: u64,
    check_errors: u64,
    eventual_ok: u64,
    eventual_errors: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_under_load_then_promote_follows_the_writer_without_reload() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let topo = start_topology().await;
    // a lag budget no test run reaches: a replica is excluded here only
    // for not following the writer
    let extra = "[failover]\nwrite_wait_ms = 300\n[routing]\nmax_lag_ms = 600000\n";
    let (proxy, port) = own_proxy(&topo, extra).await;
    settled(&proxy).await;
    status_until(&proxy, "one writer", |w| {
        *w == Writers::One("primary".into())
    })
    .await;
    schema(&topo, port, "fo2").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i64, String)>();
    // writer: one row per write, its token handed to the checker
    let writer = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut c = client(port, Some("fo2")).await;
            let (mut ok, mut failed, mut k) = (0u64, 0u64, 0i64);
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                match c
                    .query_drop(format!("INSERT INTO t VALUES ({k}, {k})"))
                    .await
                {
                    Ok(()) => {
                        ok += 1;
                        let _ = tx.send((k, token(&mut c).await));
                    }
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (ok, failed)
        })
    };
    // checker: another connection reads each write with its token
    let checker = tokio::spawn(async move {
        let mut c = client(port, Some("fo2")).await;
        let mut n = Counts::default();
        while let Some((k, tok)) = rx.recv().await {
            let sql = format!("/* causeway token={tok} */ SELECT v FROM t WHERE k = {k}");
            match c.query_first::<i64, _>(sql).await {
                Ok(Some(v)) => {
                    assert_eq!(v, k);
                    n.checked += 1;
                }
                Ok(None) => n.stale += 1,
                Err(e) if e.to_string().contains("lost in a failover") => n.lost += 1,
                Err(_) => n.check_errors += 1,
            }
        }
        n
    });
    // eventual reader: must never fail
    let eventual = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut c = client(port, Some("fo2")).await;
            c.query_drop("SET @@causeway.consistency = 'eventual'")
                .await
                .unwrap();
            let (mut ok, mut errors) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match c.query_first::<i64, _>("SELECT COUNT(*) FROM t").await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        eprintln!("eventual read failed: {e}");
                        errors += 1;
                    }
                }
            }
            (ok, errors)
        })
    };
    // load runs, then the primary dies
    let mut probe = client(port, Some("fo2")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe
        .query_first::<i64, _>("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap_or(0)
        < 50
    {
        assert!(Instant::now() < deadline, "no load");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    topo.primary().kill();
    status_until(&proxy, "no writer", |w| *w == Writers::None).await;
    // writes fail fast while no writer exists
    let t = Instant::now();
    let e = server_err(
        probe
            .query_drop("INSERT INTO t VALUES (-1, -1)")
            .await
            .unwrap_err(),
    );
    let took = t.elapsed();
    assert_eq!((e.code, e.state.as_str()), (1290, "HY000"), "{}", e.message);
    assert!(e.message.contains("no writer"), "{}", e.message);
    assert!(took < Duration::from_secs(2), "{took:?}");
    // new clients log in with a default database and read
    let mut fresh = client(port, Some("fo2")).await;
    let _: Option<i64> = fresh.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    // promote r1 by hand (r2 is re-pointed to it below)
    replication::promote(&topo.replicas()[0]).await.unwrap();
    let promoted = Instant::now();
    let mut w = client(port, Some("fo2")).await;
    let first_write = loop {
        if w.query_drop("INSERT INTO t VALUES (-2, -2)").await.is_ok() {
            break promoted.elapsed();
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(30),
            "no write after promotion"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!(
        "promotion to first successful write: {:.3} s",
        first_write.as_secs_f64()
    );
    assert!(first_write < Duration::from_secs(3), "{first_write:?}");
    // ground truth: the write is on the promoted server
    assert_eq!(direct_v(&topo.replicas()[0], "fo2", -2).await, Some(-2));
    assert_eq!(proxy.topology.load().primary.name(), "r1");
    assert_eq!(proxy.failover.changes.load(Ordering::Relaxed), 1);
    // SHOW CAUSEWAY BACKENDS names the writer
    let mut admin = mysql_async::Conn::new(support::opts(port, "admin", "adminpw", None))
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = admin
        .query_map("SHOW CAUSEWAY BACKENDS", |r: mysql_async::Row| {
            let name: String = r.get("name").unwrap();
            let role: String = r.get("role").unwrap();
            let writer: String = r.get("writer").unwrap();
            (name, role, writer)
        })
        .await
        .unwrap();
    let writers: Vec<&(String, String, String)> = rows.iter().filter(|r| r.2 == "1").collect();
    assert_eq!(writers.len(), 1, "{rows:?}");
    assert_eq!(
        (writers[0].0.as_str(), writers[0].1.as_str()),
        ("r1", "primary")
    );
    // r2 still replicates from the dead old writer: it serves no read until
    // it is re-pointed to the new one
    let r2_follows = |want: bool| {
        move |t: &causeway::topology::Topology| {
            let v = t.backend("r2").unwrap().state.view.load();
            v.eligible == want && v.source_mismatch == Some(!want)
        }
    };
    until(
        &proxy,
        "r2 excluded: it does not follow the writer",
        r2_follows(false),
    )
    .await;
    replication::repoint(&topo.replicas()[1], &topo.replicas()[0])
        .await
        .unwrap();
    until(
        &proxy,
        "r2 eligible: it follows the writer",
        r2_follows(true),
    )
    .await;
    // more load on the new writer, then stop
    let before: i64 = probe
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: i64 = direct_count(&topo.replicas()[0], "fo2").await;
        if now >= before + 50 {
            break;
        }
        assert!(Instant::now() < deadline, "no writes after the failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (writes_ok, writes_failed) = writer.await.unwrap();
    let mut n = checker.await.unwrap();
    let (eventual_ok, eventual_errors) = eventual.await.unwrap();
    n.writes_ok = writes_ok;
    n.writes_failed = writes_failed;
    n.eventual_ok = eventual_ok;
    n.eventual_errors = eventual_errors;
    eprintln!("token checker across the failover: {n:?}");
    assert_eq!(n.stale, 0, "{n:?}");
    assert_eq!(n.eventual_errors, 0, "{n:?}");
    assert!(n.checked > 100 && n.writes_failed > 0, "{n:?}");
    proxy.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_brain_refuses_writes_and_reads_go_on() {
    let topo = start_topology().await;
    let (proxy, port) = own_proxy(&topo, "").await;
    settled(&proxy).await;
    status_until(&proxy, "one writer", |w| {
        *w == Writers::One("primary".into())
    })
    .await;
    schema(&topo, port, "fo3").await;
    let mut c = client(port, Some("fo3")).await;
    c.query_drop("INSERT INTO t VALUES (1, 1)").await.unwrap();
    // a transaction open on the writer when the split brain starts
    let mut trx = client(port, Some("fo3")).await;
    trx.query_drop("BEGIN").await.unwrap();
    trx.query_drop("INSERT INTO t VALUES (8, 8)").await.unwrap();
    let trx_id: u64 = trx
        .query_first("SELECT CONNECTION_ID() + 0")
        .await
        .unwrap()
        .unwrap();
    let r2 = &topo.replicas()[1];
    root(r2)
        .await
        .query_drop("SET GLOBAL super_read_only = OFF, GLOBAL read_only = OFF")
        .await
        .unwrap();
    status_until(&proxy, "split brain", |w| matches!(w, Writers::Split(_))).await;
    let t = Instant::now();
    let e = server_err(
        c.query_drop("INSERT INTO t VALUES (2, 2)")
            .await
            .unwrap_err(),
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!((e.code, e.state.as_str()), (1290, "HY000"));
    assert!(
        e.message.contains("split brain") && e.message.contains("'primary', 'r2'"),
        "{}",
        e.message
    );
    // the open transaction gets an error at its next statement; its
    // backend connection is closed (the server rolls it back)
    let e = server_err(
        trx.query_drop("INSERT INTO t VALUES (9, 9)")
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 1290);
    assert!(
        e.message.contains("ended this transaction"),
        "{}",
        e.message
    );
    let mut p = root(topo.primary()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = p
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {trx_id}"
            ))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transaction's connection lives on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a transaction is refused too; reads go on
    let e = server_err(c.query_drop("BEGIN").await.unwrap_err());
    assert_eq!(e.code, 1290);
    let n: i64 = c
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
    // ground truth: the refused write reached neither writable server
    assert_eq!(direct_v(topo.primary(), "fo3", 2).await, None);
    assert_eq!(direct_v(r2, "fo3", 2).await, None);
    assert_eq!(
        proxy
            .failover
            .fenced
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    replication::demote(r2).await.unwrap();
    status_until(&proxy, "one writer again", |w| {
        *w == Writers::One("primary".into())
    })
    .await;
    c.query_drop("INSERT INTO t VALUES (3, 3)").await.unwrap();
    // the ended transaction's row was never committed; its session goes on
    assert_eq!(direct_v(topo.primary(), "fo3", 8).await, None);
    trx.query_drop("INSERT INTO t VALUES (10, 10)")
        .await
        .unwrap();
    assert_eq!(direct_v(topo.primary(), "fo3", 10).await, Some(10));
    assert_eq!(direct_v(topo.primary(), "fo3", 3).await, Some(3));
    assert_eq!(proxy.topology.load().primary.name(), "primary");
    proxy.shutdown();
}
