//! Backend pool limits: when every connection slot to a backend is held, a
//! new session waits up to the connect timeout and then gets MySQL's
//! "Too many connections" error; the slot is usable again once freed.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_gives_1040_then_recovers() {
    let proxy = support::start_proxy_with(|t| {
        t.replace(
            "connect_timeout_ms = 5000",
            "connect_timeout_ms = 300\npool_max_per_backend = 2",
        )
    })
    .await;
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    // a transaction holds a primary connection for the session's life
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("SELECT 1 FOR UPDATE").await.unwrap();
    b.query_drop("BEGIN").await.unwrap();
    b.query_drop("SELECT 1 FOR UPDATE").await.unwrap();
    let mut c = proxy.conn().await;
    let e = c.query_drop("DO 1").await.unwrap_err();
    let mysql_async::Error::Server(e) = e else {
        panic!("server error expected")
    };
    assert_eq!((e.code, e.state.as_str()), (1040, "08004"), "{}", e.message);
    assert!(e.message.contains("primary"), "{}", e.message);
    a.query_drop("COMMIT").await.unwrap();
    drop(a);
    // the freed slot comes back after its reset; bounded retry
    let mut ok = false;
    for _ in 0..50 {
        if c.query_drop("DO 1").await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "a freed slot is reused");
    b.query_drop("COMMIT").await.unwrap();
}

/// A read whose replica has no free pool slot goes, at once, to a replica
/// that has one, and with every replica full to the primary: it neither
/// waits for the connect timeout nor fails with 1040.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_replica_pool_sends_reads_elsewhere() {
    let proxy = support::start_proxy_with(|t| {
        t.replace(
            "connect_timeout_ms = 5000",
            // sessions that keep their replica connection fill the pools
            "connect_timeout_ms = 5000\npool_max_per_backend = 1\npool_mode = \"session\"",
        )
    })
    .await;
    async fn read_route(c: &mut mysql_async::Conn) -> String {
        c.query_drop("SELECT 1").await.unwrap();
        c.query_first::<String, _>("SELECT @@causeway.last_route")
            .await
            .unwrap()
            .unwrap()
    }
    // each session keeps its replica connection: one slot per replica
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    let ra = read_route(&mut a).await;
    let rb = read_route(&mut b).await;
    assert!(ra.starts_with("replica:"), "{ra}");
    assert!(rb.starts_with("replica:"), "{rb}");
    assert_ne!(ra, rb, "the second session found the first replica full");
    let mut c = proxy.conn().await;
    let started = std::time::Instant::now();
    let rc = read_route(&mut c).await;
    assert_eq!(rc, "primary:fallback");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the read did not wait for a replica slot ({:?})",
        started.elapsed()
    );
    // a freed replica slot is used again
    a.disconnect().await.unwrap();
    let mut seen_replica = false;
    // bounded: the slot comes back once the background reset is done
    for _ in 0..500 {
        if read_route(&mut c).await.starts_with("replica:") {
            seen_replica = true;
            break;
        }
    }
    assert!(seen_replica, "reads return to a replica with a free slot");
}
