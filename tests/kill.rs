//! KILL through causeway with causeway's connection ids (the ids clients
//! see): KILL QUERY interrupts the statement on whichever backend runs it,
//! KILL CONNECTION ends the session, other users' sessions are refused
//! (1095) and unknown ids get 1094 — as MySQL answers.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::time::{Duration, Instant};

fn server_error(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.message),
        other => panic!("server error expected, got {other}"),
    }
}

/// Waits (bounded) until some server runs a statement containing `text`.
async fn running_somewhere(text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for s in support::topology().servers() {
            let mut c = s.conn().await.unwrap();
            let n: Option<i64> = c
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE ? AND INFO NOT LIKE '%PROCESSLIST%'",
                    (format!("%{text}%"),),
                )
                .await
                .unwrap();
            if n.unwrap_or(0) > 0 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{text} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_and_connection_by_causeway_id() {
    let proxy = support::start_proxy().await;
    let mut a = proxy.conn().await;
    let a_id = a.id();
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let v: Option<i64> = a
            .query_first("SELECT SLEEP(30) AS kill_me_7")
            .await
            .unwrap();
        (v, started.elapsed(), a)
    });
    running_somewhere("kill_me_7").await;
    let mut b = proxy.conn().await;
    b.query_drop(format!("KILL QUERY {a_id}")).await.unwrap();
    let (v, took, mut a) = tokio::time::timeout(Duration::from_secs(20), sleeper)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, Some(1), "SLEEP interrupted returns 1");
    assert!(
        took < Duration::from_secs(20),
        "interrupted early: {took:?}"
    );
    // the killed query's session lives on
    let one: Option<i64> = a.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    // another user may not kill it; unknown ids are refused
    let mut other = mysql_async::Conn::new(proxy.opts("nopw", ""))
        .await
        .unwrap();
    let e = server_error(other.query_drop(format!("KILL {a_id}")).await.unwrap_err());
    assert_eq!(e.0, 1095, "{}", e.1);
    let e = server_error(b.query_drop("KILL 4000000000").await.unwrap_err());
    assert_eq!(e.0, 1094, "{}", e.1);

    // KILL CONNECTION ends the session
    b.query_drop(format!("KILL CONNECTION {a_id}"))
        .await
        .unwrap();
    assert!(
        a.query_drop("SELECT 1").await.is_err(),
        "killed session is closed"
    );
    // killing oneself: 1317 and the connection closes
    let own = b.id();
    let e = b.query_drop(format!("KILL {own}")).await.unwrap_err();
    assert_eq!(server_error(e).0, 1317);
    // the proxy serves new clients
    let mut c = proxy.conn().await;
    assert_eq!(c.query_first::<i64, _>("SELECT 2").await.unwrap(), Some(2));
}
