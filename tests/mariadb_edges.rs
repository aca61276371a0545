//! causeway on real MariaDB 10.11, the edges: oversized and malformed
//! MariaDB tokens, KILL and a vanished client ending `MASTER_GTID_WAIT` on
//! the replica, the OK packet's `last_gtid` tracker, and the cache (binlog
//! invalidation refused, ttl working). Skipped only with `CAUSEWAY_MARIADB=0`.

#[path = "mariadb/support.rs"]
mod support;

use mysql_async::prelude::Queryable;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_mariadb_token_is_refused_fast() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let p = start_proxy().await;
    let mut c = p.conn().await;
    let entries: Vec<String> = (0..70_000u32).map(|d| format!("{d}-1-1")).collect();
    let big = entries.join(",");
    assert!(big.len() > 1 << 19);
    let big = format!("{big},{}", "1".repeat((1 << 20) - big.len()));
    let t = Instant::now();
    let e = server_err(
        c.query_drop(format!("SET @@causeway.token = '{big}'"))
            .await,
    );
    let took = t.elapsed();
    eprintln!("1 MB MariaDB token refused in {took:?}");
    assert_eq!((e.code, e.state.as_str()), (1231, "42000"), "{}", e.message);
    assert!(e.message.contains("65536 bytes"), "{}", e.message);
    assert!(took < Duration::from_secs(2), "{took:?}");
    // too many domains under the byte limit: same code
    let many = entries[..300].join(",");
    let e = server_err(
        c.query_drop(format!("SET @@causeway.token = '{many}'"))
            .await,
    );
    assert_eq!(e.code, 1231);
    assert!(e.message.contains("256 domains"), "{}", e.message);
    // two GTIDs for one domain
    let e = server_err(c.query_drop("SET @@causeway.token = '0-1-5,0-2-6'").await);
    assert_eq!(e.code, 1231);
    let tok = token(&mut c).await;
    assert_eq!(tok, "", "refused tokens change nothing");
}

/// A proxy with the cache on (`invalidation` as given) caching `{db}.t`.
async fn cached(db: &str, invalidation: &str) -> TestProxy {
    let db = db.to_string();
    let inv = invalidation.to_string();
    start_proxy_with(move |t| {
        format!(
            "{t}\n[cache]\nenabled = true\ninvalidation = \"{inv}\"\nuser = \"repl\"\n\
             password = \"replpw\"\n\n[[rules]]\nname = \"catalog\"\n\
             match_tables = [\"{db}.t\"]\ncache_ttl_ms = 60000\n"
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_binlog_refused_on_mariadb_ttl_works() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let db = unique_db("mdb_cache");
    setup(&db).await;
    // binlog invalidation: the reader refuses MariaDB with a clear error
    let p = cached(&db, "binlog").await;
    let cache = p.proxy.cache.clone().expect("cache on");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = cache.reader().expect("reader status");
        if st.state == "refused" {
            let e = st.error.unwrap_or_default();
            assert!(
                e.contains("not supported on MariaDB") && e.contains("ttl"),
                "{e}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "reader never refused: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(p);
    // ttl: a repeated eventual read is answered from memory
    let p = cached(&db, "ttl").await;
    let cache = p.proxy.cache.clone().expect("cache on");
    let mut c = p.conn().await;
    c.query_drop("SET @@causeway.consistency = 'eventual'")
        .await
        .unwrap();
    for _ in 0..3 {
        let n: Option<i64> = c
            .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
            .await
            .unwrap();
        assert_eq!(n, Some(0));
    }
    let s = cache.rule_stats(&Arc::from("catalog"));
    let (hits, misses) = (
        s.hits.load(Ordering::Relaxed),
        s.misses.load(Ordering::Relaxed),
    );
    assert_eq!((hits, misses), (2, 1), "ttl mode caches on MariaDB");
}

/// `MASTER_GTID_WAIT`s running on the replicas for domain 77 (the future
/// token of the KILL test).
async fn waits_on_replicas() -> i64 {
    let mut n = 0;
    for r in topology().replicas() {
        let mut c = root(r).await;
        let k: Option<i64> = c
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE 'SELECT MASTER_GTID_WAIT(''77-%'",
            )
            .await
            .unwrap();
        n += k.unwrap();
        c.disconnect().await.unwrap();
    }
    n
}

/// Starts a causal read of a token no server has (domain 77), waiting up
/// to 30 s, and returns once its wait runs on a replica.
async fn blocked_read(
    mut c: mysql_async::Conn,
) -> tokio::task::JoinHandle<Result<Option<i64>, mysql_async::Error>> {
    c.query_drop(
        "SET @@causeway.token = '77-1-5', @@causeway.wait_timeout_ms = 30000, \
         @@causeway.on_timeout = 'error'",
    )
    .await
    .unwrap();
    let read = tokio::spawn(async move { c.query_first("SELECT 1").await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while waits_on_replicas().await == 0 {
        assert!(
            Instant::now() < deadline,
            "the wait never reached a replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    read
}

/// Polls until no replica runs the wait (bounded).
async fn no_wait_left() -> Duration {
    let t = Instant::now();
    while waits_on_replicas().await > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the replica's wait outlived the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_a_vanished_client_end_the_wait_on_the_replica() {
    if skip() {
        return;
    }
    let _serial = serial().await;
    let p = start_proxy().await;
    let c = p.conn().await;
    let id = c.id();
    let read = blocked_read(c).await;
    let mut killer = p.conn().await;
    let t = Instant::now();
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the read ended")
        .unwrap();
    match r {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1317, "{}", e.message),
        other => panic!("1317 expected, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let gone = no_wait_left().await;
    eprintln!("MariaDB: KILL QUERY ended the wait; replica wait gone after {gone:?}");
    // the client goes away mid-wait: the replica's wait ends with it
    let read = blocked_read(p.conn().await).await;
    read.abort();
    let _ = read.await;
    let gone = no_wait_left().await;
    eprintln!("MariaDB: a vanished client's wait gone after {gone:?}");
}

/// The `last_gtid` value of an OK packet's session state, if any.
fn ok_last_gtid(ok: &causeway::protocol::OkPacket) -> Option<String> {
    use causeway::protocol::messages;
    ok.state_entries()
        .filter(|(ty, _)| *ty == messages::track::SYSTEM_VARIABLES)
        .filter_map(|(_, data)| messages::sysvar_from_state_data(data))
        .find(|(name, _)| *name == b"last_gtid")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_tracker_carries_last_gtid_and_the_token_merges_per_domain() {
    use causeway::backend::{BackendConn, LinkKey, Login};
    if skip() {
        return;
    }
    let _serial = serial().await;
    let p = start_proxy().await;
    let db = unique_db("mdb_ok");
    setup(&db).await;
    // a client that asks for CLIENT_SESSION_TRACK (causeway's own link code)
    let login = Login {
        user: "app".into(),
        password: "apppw".into(),
    };
    let key = LinkKey {
        user: "app".into(),
        caps: 0,
        collation: 45,
    };
    let addr = p.addr.to_string();
    let mut c = BackendConn::connect(
        "causeway",
        &addr,
        &login,
        key,
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    // other tests of this binary write to the same primary meanwhile: a
    // write's GTID lies past the position before it, within the one after
    let within = |what: &str, seq: u64, before: u64, after: u64| {
        assert!(
            before < seq && seq <= after,
            "{what}: {seq} not in ({before}, {after}]"
        );
    };
    let before = seq0(&primary_pos().await);
    let ok = c
        .query_ok(&format!("INSERT INTO {db}.t VALUES (1, 1)"))
        .await
        .unwrap()
        .unwrap();
    let tracked = ok_last_gtid(&ok).expect("the write's OK tracks last_gtid");
    within(
        "tracked",
        seq0(&tracked),
        before,
        seq0(&primary_pos().await),
    );
    // a token holding another domain: the OK's entry carries all of it
    c.query_ok("SET @@causeway.token = '5-1-3'")
        .await
        .unwrap()
        .unwrap();
    let before = seq0(&primary_pos().await);
    let ok = c
        .query_ok(&format!("INSERT INTO {db}.t VALUES (2, 2)"))
        .await
        .unwrap()
        .unwrap();
    let tracked = ok_last_gtid(&ok).expect("the write's OK tracks last_gtid");
    let pos = primary_pos().await;
    within("the write's own GTID", seq0(&tracked), before, seq0(&pos));
    assert!(
        tracked.starts_with("0-1-"),
        "as the primary reports it: {tracked}"
    );
    let tok = c
        .query_value("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    let tok = String::from_utf8(tok.unwrap()).unwrap();
    assert_eq!(
        tok,
        format!("0-0-{},5-0-3", seq0(&tracked)),
        "merged per domain"
    );
    // a client without CLIENT_SESSION_TRACK (mysql_async) gets no entry
    let mut m = p.conn().await;
    let before = seq0(&primary_pos().await);
    m.query_drop(format!("INSERT INTO {db}.t VALUES (3, 3)"))
        .await
        .unwrap();
    let last = m.last_ok_packet().expect("an OK");
    assert!(last.session_state_info_ref().is_none(), "{last:?}");
    let tok = seq0(&token(&mut m).await);
    within(
        "mysql_async's token",
        tok,
        before,
        seq0(&primary_pos().await),
    );
}
