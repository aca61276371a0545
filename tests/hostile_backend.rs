//! Hostile and broken clients against the backend side (issue 10, cases 1
//! and 5), on real MySQL through the real `causeway` binary:
//!
//! - a client that vanishes in the middle of a large result never leaves
//!   its backend connection to the next client: every byte another client
//!   receives belongs to its own statements (sequence ids 1.., expected
//!   content), on the primary route and the replica route, with one pool
//!   slot per backend so the next client must use the same slot;
//! - idle connections of one key (collation latin1) are closed by time and
//!   reclaimed when the pool is full, so they never lock out another key.
//!
//! Raw clients are `causeway::backend::BackendConn`s logged in to the
//! proxy (it speaks the client side of the protocol), driven packet by
//! packet through their `io`.

#[path = "support/mod.rs"]
mod support;

use causeway::backend::reply::{check_reply, Reply};
use causeway::backend::BackendConn;
use mysql_async::prelude::Queryable;
use std::time::{Duration, Instant};
use support::external::ExternalProxy;
use support::raw::{queue_query, read_within, RawLogin};

/// A large, unbuffered result whose rows look like OK packets.
const BIG_SELECT: &str =
    "SELECT '', X'000000000000' FROM information_schema.COLUMNS a, information_schema.COLUMNS b";
const LATIN1: u8 = 8;
const UTF8MB4: u8 = 255;
const IO_LIMIT: Duration = Duration::from_secs(15);

/// Logs in to the proxy on `port` with a raw client.
async fn raw_login(port: u16, user: &str, password: &str, collation: u8) -> BackendConn {
    RawLogin {
        user,
        password,
        collation,
        limit: IO_LIMIT,
        ..RawLogin::app(format!("127.0.0.1:{port}"))
    }
    .connect()
    .await
}

/// Sends `sql` and reads its whole reply (classic EOF protocol), checking
/// that the packets carry sequence ids 1, 2, 3, … and that nothing follows
/// the reply. Returns (first packet, rows).
async fn query(c: &mut BackendConn, sql: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    queue_query(&mut c.io, sql);
    c.io.flush().await.expect("send");
    let mut expect_seq = 1u8;
    let mut next = |seq: u8, what: &str| {
        assert_eq!(seq, expect_seq, "{sql}: {what} has sequence id {seq}");
        expect_seq = expect_seq.wrapping_add(1);
    };
    let (seq, first) = read_within(&mut c.io, IO_LIMIT).await;
    next(seq, "the first packet");
    let mut rows = Vec::new();
    match first.first() {
        Some(0x00) => {
            assert_eq!(
                check_reply(seq, &first, c.caps),
                Ok(Reply::Ok),
                "{sql}: not an exact OK: {first:02x?}"
            );
        }
        Some(0xFF) => panic!("{sql}: error {}", String::from_utf8_lossy(&first)),
        _ => {
            let cols = first.first().copied().unwrap_or(0);
            assert!(
                (1..0xFB).contains(&cols),
                "{sql}: column count {first:02x?}"
            );
            for _ in 0..cols {
                let (seq, def) = read_within(&mut c.io, IO_LIMIT).await;
                next(seq, "a column definition");
                assert_eq!(def.get(..4), Some(&b"\x03def"[..]), "{sql}: column def");
            }
            let (seq, eof) = read_within(&mut c.io, IO_LIMIT).await;
            next(seq, "the column EOF");
            assert!(
                eof.first() == Some(&0xFE) && eof.len() < 9,
                "{sql}: {eof:02x?}"
            );
            loop {
                let (seq, p) = read_within(&mut c.io, IO_LIMIT).await;
                next(seq, "a row or the final EOF");
                if p.first() == Some(&0xFE) && p.len() < 9 {
                    break;
                }
                assert_ne!(p.first(), Some(&0xFF), "{sql}: error {p:02x?}");
                rows.push(p);
            }
        }
    }
    assert!(c.io.rbuf.is_empty(), "{sql}: bytes after the reply");
    (first, rows)
}

/// One text value row as a string.
fn row_text(row: &[u8]) -> String {
    let (len, rest) = row.split_first().expect("row");
    assert_eq!(rest.len(), usize::from(*len), "one short value: {row:02x?}");
    String::from_utf8_lossy(rest).into_owned()
}

/// Nothing arrives on `c` unasked for `quiet`.
async fn assert_silent(c: &mut BackendConn, quiet: Duration) {
    match tokio::time::timeout(quiet, c.io.fill()).await {
        Err(_) => {}
        Ok(r) => panic!(
            "unsolicited bytes or close: {r:?}, {:02x?}",
            &c.io.rbuf[..c.io.rbuf.len().min(64)]
        ),
    }
}

/// Session A: starts the big result (after `prelude`), reads its column
/// definitions and 10 rows, then resets the connection (SO_LINGER 0).
async fn vanish_mid_result(port: u16, prelude: &[&str], route_prefix: &str) {
    let mut a = raw_login(port, "native", "nativepw", UTF8MB4).await;
    for sql in prelude {
        query(&mut a, sql).await;
    }
    // the route the big result takes, checked with a small read first
    query(&mut a, "SELECT 1").await;
    let (_, rows) = query(&mut a, "SELECT @@causeway.last_route").await;
    let route = row_text(&rows[0]);
    assert!(route.starts_with(route_prefix), "A's reads go to {route}");
    queue_query(&mut a.io, BIG_SELECT);
    a.io.flush().await.expect("send");
    let (_, cols) = read_within(&mut a.io, IO_LIMIT).await;
    assert_eq!(cols, vec![2]);
    for _ in 0..3 {
        read_within(&mut a.io, IO_LIMIT).await; // 2 column definitions, EOF
    }
    for _ in 0..10 {
        let (_, row) = read_within(&mut a.io, IO_LIMIT).await;
        assert_eq!(row, vec![0x00, 0x06, 0, 0, 0, 0, 0, 0]);
    }
    socket2::SockRef::from(a.io.tcp().unwrap())
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(a);
}

/// Session B: `SET NAMES utf8mb4` gets its own OK, `SELECT 1` exactly one
/// row `1`, and nothing else arrives. Returns the route of the SELECT.
async fn innocent_client(port: u16, in_trans: bool) -> String {
    let mut b = raw_login(port, "native", "nativepw", UTF8MB4).await;
    let (ok, rows) = query(&mut b, "SET NAMES utf8mb4").await;
    assert_eq!(ok.first(), Some(&0x00));
    assert!(rows.is_empty());
    if in_trans {
        query(&mut b, "BEGIN").await;
    }
    let (first, rows) = query(&mut b, "SELECT 1").await;
    assert_eq!(first, vec![1], "one column");
    assert_eq!(rows, vec![vec![1, b'1']], "exactly the row 1");
    let (_, route) = query(&mut b, "SELECT @@causeway.last_route").await;
    if in_trans {
        query(&mut b, "COMMIT").await;
    }
    assert_silent(&mut b, Duration::from_millis(200)).await;
    row_text(&route[0])
}

/// The big result is no longer running on the server at `port` (the
/// abandoned connection was closed, not parked in a pool), bounded wait.
async fn assert_attack_query_gone(port: u16) {
    let mut root = mysql_async::Conn::new(support::opts(port, "root", "", None))
        .await
        .expect("root");
    let started = Instant::now();
    loop {
        let n: Option<i64> = root
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE '%X''000000000000''%' AND ID <> CONNECTION_ID()",
            )
            .await
            .expect("processlist");
        if n == Some(0) {
            eprintln!(
                "abandoned result gone from the server after {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the abandoned result still runs on the server ({n:?} threads)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = root.disconnect().await;
}

/// One replica only, one pool slot per backend: the next client must use
/// the very slot the vanished client had.
fn one_slot_one_replica(t: String) -> String {
    let t = t.replace(
        "connect_timeout_ms = 5000",
        "connect_timeout_ms = 5000\npool_max_per_backend = 1",
    );
    let first = t.find("[[replicas]]").expect("a replica");
    match t[first + 1..].find("[[replicas]]") {
        Some(second) => t[..first + 1 + second].to_string(),
        None => t,
    }
}

async fn fresh_client_works(proxy: &ExternalProxy) {
    let mut c = mysql_async::Conn::new(proxy.opts("app", "apppw"))
        .await
        .expect("fresh client");
    let v: Option<i64> = c.query_first("SELECT 1").await.expect("SELECT 1");
    assert_eq!(v, Some(1));
    c.query_drop("BEGIN").await.expect("BEGIN");
    let v: Option<i64> = c.query_first("SELECT 2 FOR UPDATE").await.expect("primary");
    assert_eq!(v, Some(2));
    c.query_drop("COMMIT").await.expect("COMMIT");
    c.disconnect().await.expect("disconnect");
}

/// Case 1 on the primary route: A's big result runs inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_client_rows_never_reach_the_next_client_primary() {
    let mut proxy = ExternalProxy::start(one_slot_one_replica).await;
    let idle_hwm = proxy.vm_hwm_kib();
    for round in 0..3 {
        vanish_mid_result(proxy.port, &["BEGIN"], "primary").await;
        // B waits for the one primary slot, then gets only its own bytes
        let route = innocent_client(proxy.port, true).await;
        assert!(route.starts_with("primary"), "round {round}: {route}");
        fresh_client_works(&proxy).await;
        assert_attack_query_gone(support::topology().primary().port()).await;
    }
    eprintln!(
        "VmHWM idle {idle_hwm} KiB, after {} KiB",
        proxy.vm_hwm_kib()
    );
    proxy.assert_healthy_after_attack(idle_hwm).await;
}

/// Case 1 on the replica route: A's big result is a plain read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_client_rows_never_reach_the_next_client_replica() {
    support::sync_replicas().await;
    let mut proxy = ExternalProxy::start(one_slot_one_replica).await;
    let idle_hwm = proxy.vm_hwm_kib();
    let replica_port = support::topology().replicas()[0].port();
    for round in 0..3 {
        vanish_mid_result(proxy.port, &[], "replica").await;
        // until the proxy noticed A is gone, B's read finds the replica's
        // one slot taken and goes to the primary; every attempt must see
        // only its own bytes, and one must use the replica's slot
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let route = innocent_client(proxy.port, false).await;
            if route.starts_with("replica") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: B never got the replica"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fresh_client_works(&proxy).await;
        assert_attack_query_gone(replica_port).await;
    }
    eprintln!(
        "VmHWM idle {idle_hwm} KiB, after {} KiB",
        proxy.vm_hwm_kib()
    );
    proxy.assert_healthy_after_attack(idle_hwm).await;
}

/// Creates MySQL account `user` (password `pw`, ALL) on the primary and a
/// schema with a table, returning the schema name.
async fn account_and_table(user: &str, pw: &str) -> String {
    let mut root = support::root_conn().await;
    let db = support::unique_db("fair");
    for sql in [
        format!("CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{pw}'"),
        format!("GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%'"),
        format!("CREATE DATABASE {db}"),
        format!("CREATE TABLE {db}.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"),
    ] {
        root.query_drop(sql).await.expect("setup");
    }
    let _ = root.disconnect().await;
    db
}

/// Connections of MySQL account `user` open on the primary.
async fn server_conns(user: &str) -> i64 {
    let mut root = support::root_conn().await;
    let n: Option<i64> = root
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            (user,),
        )
        .await
        .expect("processlist");
    let _ = root.disconnect().await;
    n.unwrap_or(-1)
}

fn fair_config(user: &str, pw: &str, idle_ms: u64) -> impl FnOnce(String) -> String {
    let (user, pw) = (user.to_string(), pw.to_string());
    move |t: String| {
        t.replace(
            "connect_timeout_ms = 5000",
            &format!(
                // sessions that each keep their connection fill the pool
                "connect_timeout_ms = 5000\npool_max_per_backend = 4\npool_idle_timeout_ms = {idle_ms}\npool_mode = \"session\""
            ),
        )
        .replace(
            "[[users]]\nname = \"app\"",
            &format!(
                "[[users]]\nname = \"{user}\"\npassword = \"{pw}\"\n[[users]]\nname = \"app\""
            ),
        )
    }
}

/// Four concurrent latin1 sessions each hold a primary connection
/// (`SELECT 1 FOR UPDATE`) and then exit: four idle latin1 connections.
async fn four_latin1_sessions(port: u16, user: &str, pw: &str) {
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let mut c = raw_login(port, user, pw, LATIN1).await;
        let (_, rows) = query(&mut c, "SELECT 1 FOR UPDATE").await;
        assert_eq!(rows, vec![vec![1, b'1']]);
        let (_, route) = query(&mut c, "SELECT @@causeway.last_route").await;
        assert!(row_text(&route[0]).starts_with("primary"));
        sessions.push(c);
    }
    for mut c in sessions {
        let mut seq = 0;
        c.io.queue(&mut seq, &[0x01]); // COM_QUIT
        let _ = c.io.flush().await;
    }
}

/// Waits (bounded) until the primary shows `want` connections of `user`.
async fn await_server_conns(user: &str, want: i64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let n = server_conns(user).await;
        if n == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{user} has {n} connections on the primary, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Case 5 as reported: idle timeout 2 s, four latin1 sessions exited; a
/// default-charset INSERT succeeds at once and still later, and the idle
/// latin1 connections are closed by time although nobody asks for latin1
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_of_another_key_neither_block_nor_linger() {
    let (user, pw) = ("fair_a", "fairpw");
    let db = account_and_table(user, pw).await;
    let mut proxy = ExternalProxy::start(fair_config(user, pw, 2000)).await;
    let idle_hwm = proxy.vm_hwm_kib();
    four_latin1_sessions(proxy.port, user, pw).await;
    await_server_conns(user, 4, Duration::from_secs(10)).await;
    let mut c = mysql_async::Conn::new(proxy.opts(user, pw))
        .await
        .expect("default-charset client");
    let started = Instant::now();
    c.query_drop(format!("INSERT INTO {db}.t (v) VALUES (1)"))
        .await
        .expect("INSERT with a pool full of idle latin1 connections");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "INSERT waited {took:?}");
    c.disconnect().await.expect("disconnect");
    // nobody uses the pool now: every idle connection closes by time
    let reaped = await_server_conns(user, 0, Duration::from_secs(30)).await;
    eprintln!("INSERT took {took:?}; idle connections gone {reaped:?} after the last client");
    let mut c = mysql_async::Conn::new(proxy.opts(user, pw))
        .await
        .expect("client");
    c.query_drop(format!("INSERT INTO {db}.t (v) VALUES (2)"))
        .await
        .expect("INSERT later");
    c.disconnect().await.expect("disconnect");
    let mut root = support::direct_conn().await;
    let n: Option<i64> = root
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .expect("count");
    assert_eq!(n, Some(2));
    eprintln!(
        "VmHWM idle {idle_hwm} KiB, after {} KiB",
        proxy.vm_hwm_kib()
    );
    proxy.assert_healthy_after_attack(idle_hwm).await;
}

/// With a long idle timeout the latin1 connections stay idle, and a full
/// pool closes one of them for the other key instead of failing with 1040.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pool_reclaims_an_idle_connection_of_another_key() {
    let (user, pw) = ("fair_b", "fairpw");
    let db = account_and_table(user, pw).await;
    let mut proxy = ExternalProxy::start(fair_config(user, pw, 600_000)).await;
    let idle_hwm = proxy.vm_hwm_kib();
    four_latin1_sessions(proxy.port, user, pw).await;
    await_server_conns(user, 4, Duration::from_secs(10)).await;
    // the four stay idle (no reaping within the idle timeout)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server_conns(user).await, 4);
    for i in 0..3 {
        let mut c = mysql_async::Conn::new(proxy.opts(user, pw))
            .await
            .expect("default-charset client");
        let started = Instant::now();
        c.query_drop(format!("INSERT INTO {db}.t (v) VALUES ({i})"))
            .await
            .expect("INSERT reclaims a slot");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "INSERT waited {took:?}");
        eprintln!("INSERT {i} with a full pool took {took:?}");
        c.disconnect().await.expect("disconnect");
    }
    // still at most four connections on the server
    let n = server_conns(user).await;
    assert!((1..=4).contains(&n), "{n} connections of {user}");
    let mut root = support::direct_conn().await;
    let n: Option<i64> = root
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .expect("count");
    assert_eq!(n, Some(3));
    eprintln!(
        "VmHWM idle {idle_hwm} KiB, after {} KiB",
        proxy.vm_hwm_kib()
    );
    proxy.assert_healthy_after_attack(idle_hwm).await;
}
