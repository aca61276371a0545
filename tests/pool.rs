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
