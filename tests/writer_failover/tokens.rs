//! Tokens across a failover: a token lost with the old primary is refused
//! at once, a forged one after the bounded wait; the old primary rejoins as
//! a replica and takes reads.

use crate::*;
use causeway::failover::Writers;
use causeway_sandbox::replication;
use mysql_async::prelude::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_token_is_refused_at_once_and_the_old_primary_rejoins() {
    let topo = start_topology().await;
    let (proxy, port) = own_proxy(&topo, "[routing]\nwait_timeout_ms = 1500\n").await;
    settled(&proxy).await;
    status_until(&proxy, "one writer", |w| {
        *w == Writers::One("primary".into())
    })
    .await;
    schema(&topo, port, "fo4").await;
    let (r1, r2) = (&topo.replicas()[0], &topo.replicas()[1]);
    for r in [r1, r2] {
        root(r)
            .await
            .query_drop("STOP REPLICA IO_THREAD")
            .await
            .unwrap();
    }
    // a session pinned to the old writer (a user variable lives there)
    let mut pinned = client(port, Some("fo4")).await;
    pinned.query_drop("SET @x = 41").await.unwrap();
    let x: i64 = pinned.query_first("SELECT @x + 1").await.unwrap().unwrap();
    assert_eq!(x, 42);
    let mut c = client(port, Some("fo4")).await;
    c.query_drop("INSERT INTO t VALUES (1, 1)").await.unwrap();
    let tok = token(&mut c).await;
    drop(c);
    // (logged in now: with both receivers stopped no replica is eligible,
    // so a login's first reads would need the primary)
    let mut waiter = client(port, Some("fo4")).await;
    topo.primary().kill();
    status_until(&proxy, "no writer", |w| *w == Writers::None).await;
    // an autocommit write sent while there is no writer waits for one
    // ([failover] write_wait_ms, 10 s here) and goes to the new writer
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let waiting = tokio::spawn(async move {
        let _ = sent_tx.send(Instant::now());
        let r = waiter.query_drop("INSERT INTO t VALUES (7, 7)").await;
        (r, Instant::now())
    });
    let sent_at = sent_rx.await.unwrap();
    replication::promote(r1).await.unwrap();
    let promoted = Instant::now();
    let (r, done_at) = waiting.await.unwrap();
    r.expect("the waiting write reached the new writer");
    assert!(sent_at < promoted && done_at > promoted);
    assert_eq!(direct_v(r1, "fo4", 7).await, Some(7));
    replication::repoint(r2, r1).await.unwrap();
    until(&proxy, "r1 is the writer", |t| t.primary.name() == "r1").await;
    // its state cannot follow to r1: an error naming it, then disconnected
    let e = server_err(pinned.query_drop("SELECT @x").await.unwrap_err());
    assert_eq!((e.code, e.state.as_str()), (1290, "HY000"));
    assert!(
        e.message.contains("session state") && e.message.contains("'primary'"),
        "{}",
        e.message
    );
    assert!(
        pinned.query_drop("SELECT 1").await.is_err(),
        "the pinned client is disconnected"
    );
    // the monitor has seen the new state: the old primary unreachable, the
    // others measured since r2 was re-pointed (a loaded host delays probes)
    let repointed = Instant::now();
    until(&proxy, "every server measured after the re-point", |t| {
        t.backends().all(|b| {
            let v = b.state.view.load();
            if b.name() == "primary" {
                !v.reachable
            } else {
                v.reachable && v.measured_at.is_some_and(|m| m > repointed)
            }
        })
    })
    .await;
    let mut reader = client(port, Some("fo4")).await;
    let t = Instant::now();
    let e = server_err(
        reader
            .query_drop(format!(
                "/* causeway token={tok} */ SELECT v FROM t WHERE k = 1"
            ))
            .await
            .unwrap_err(),
    );
    let took = t.elapsed();
    eprintln!("lost token refused in {:.3} s", took.as_secs_f64());
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!((e.code, e.state.as_str()), (1105, "HY000"));
    assert!(e.message.contains("lost in a failover"), "{}", e.message);
    assert_eq!(
        proxy
            .failover
            .lost_tokens
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // a forged token no server has: refused after the bounded wait, even
    // with on_timeout = "primary", never answered from the writer
    let forged = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9223372036854775806";
    let t = Instant::now();
    let e = server_err(
        reader
            .query_drop(format!(
                "/* causeway token={forged} */ SELECT v FROM t WHERE k = 1"
            ))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 1105, "{}", e.message);
    assert!(e.message.contains("no reachable server"), "{}", e.message);
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    // a token of the new writer is served
    let mut w = client(port, Some("fo4")).await;
    w.query_drop("INSERT INTO t VALUES (2, 2)").await.unwrap();
    let fresh = token(&mut w).await;
    let v: Option<i64> = reader
        .query_first(format!(
            "/* causeway token={fresh} */ SELECT v FROM t WHERE k = 2"
        ))
        .await
        .unwrap();
    assert_eq!(v, Some(2));

    // rejoin: the old primary returns read-only, replicating from r1
    let old = topo.primary();
    old.add_option("read-only=ON").unwrap();
    old.add_option("super-read-only=ON").unwrap();
    old.start().await.unwrap();
    replication::repoint(old, r1).await.unwrap();
    until(&proxy, "the old primary eligible as a replica", |t| {
        t.backend("primary").is_some_and(|b| {
            let v = b.state.view.load();
            b.role == causeway::topology::Role::Replica && v.eligible && v.reachable
        })
    })
    .await;
    assert_eq!(proxy.failover.status().writers, Writers::One("r1".into()));
    // it takes reads again: a read-only-statement session reaches its server id
    let old_id = old.server_id();
    let mut reached = false;
    for _ in 0..64 {
        // each session has a home replica (read_balance = "session")
        let mut s = client(port, Some("fo4")).await;
        s.query_drop("SET @@causeway.consistency = 'eventual'")
            .await
            .unwrap();
        let id: u32 = s.query_first("SELECT @@server_id").await.unwrap().unwrap();
        let n: i64 = s
            .query_first("SELECT COUNT(*) FROM t")
            .await
            .unwrap()
            .unwrap();
        assert!(n >= 1);
        if id == old_id {
            reached = true;
            break;
        }
    }
    assert!(reached, "no read reached the rejoined old primary");
    proxy.shutdown();
}
