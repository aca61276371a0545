//! The cache's shared level (`[cache] redis_url`) with two causeway
//! instances on one Redis (Debian's `redis-server`, started by the test like
//! MySQL) and on Valkey: B serves what A cached without a replica SELECT
//! (counted in the replicas' performance_schema digests); B with A's token
//! never reads the value A overwrote; a direct write on the primary reaches
//! B within 3 s; a Redis killed mid-run costs hits, never answers; two
//! users with different privileges or different SET state never share an
//! entry. Also: invalidated entries are freed eagerly (entry count, no
//! lookup). Tests run one at a time (they compare server counters).

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use support::cache::{cached_proxy, cached_proxy_keys, route, setup, token};
use support::redis::{Kind, RedisServer};

static SERIAL: Mutex<()> = Mutex::const_new(());

/// A cached proxy using `redis` as its shared level, once connected to it.
async fn shared_proxy(db: &str, redis: &RedisServer, extra: &str) -> support::TestProxy {
    let keys = format!("redis_url = \"{}\"\nredis_timeout_ms = 50\n", redis.url());
    let p = cached_proxy_keys(db, extra, 50, &keys).await;
    let cache = p.proxy.cache.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.shared().unwrap().link_state() != "connected" {
        assert!(
            Instant::now() < deadline,
            "never connected to {}",
            redis.url()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p
}

/// (all hits, shared hits, misses) of the `catalog` rule.
fn levels(p: &support::TestProxy) -> (u64, u64, u64) {
    let s = p
        .proxy
        .cache
        .clone()
        .unwrap()
        .rule_stats(&Arc::from("catalog"));
    (
        s.hits.load(Ordering::Relaxed),
        s.shared_hits.load(Ordering::Relaxed),
        s.misses.load(Ordering::Relaxed),
    )
}

/// A counter of `p`'s shared level.
macro_rules! stat {
    ($p:expr, $f:ident) => {
        $p.proxy
            .cache
            .clone()
            .unwrap()
            .shared()
            .unwrap()
            .stats
            .$f
            .load(Ordering::Relaxed)
    };
}

/// Waits (bounded) until `p` has written `n` entries to the shared level.
async fn wait_sets(p: &support::TestProxy, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while stat!(p, sets) < n {
        assert!(Instant::now() < deadline, "the shared write never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SELECTs on `{db}.products` the replicas ran (performance_schema).
async fn replica_selects(db: &str) -> u64 {
    let mut n = 0;
    for r in support::topology().replicas() {
        let mut c = r.conn().await.unwrap();
        let v: Option<Option<u64>> = c
            .query_first(format!(
                "SELECT CAST(SUM(COUNT_STAR) AS UNSIGNED) \
                 FROM performance_schema.events_statements_summary_by_digest \
                 WHERE DIGEST_TEXT LIKE 'SELECT%{db}%products%'"
            ))
            .await
            .unwrap();
        n += v.flatten().unwrap_or(0);
    }
    n
}

/// Waits (bounded) until `p`'s binlog reader has processed `set`.
async fn wait_processed(p: &support::TestProxy, set: &str) {
    let want = causeway_gtid::GtidSet::parse(set).unwrap();
    let cache = p.proxy.cache.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cache.processed().0.contains(&want) {
        assert!(Instant::now() < deadline, "reader never processed {set}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn primary_executed() -> String {
    let mut d = support::direct_conn().await;
    let s: String = d
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .unwrap()
        .unwrap();
    s.replace('\n', "")
}

/// B serves from the shared level what A cached, with no replica SELECT.
async fn b_serves_what_a_cached(kind: Kind) {
    let redis = RedisServer::start(kind);
    let db = support::unique_db("shared_hit");
    setup(&db).await;
    let a = shared_proxy(&db, &redis, "").await;
    let b = shared_proxy(&db, &redis, "").await;
    let sql = format!("SELECT name FROM {db}.products WHERE id = 1");
    let mut ca = a.conn().await;
    let v: Option<String> = ca.query_first(&sql).await.unwrap();
    assert_eq!(v.as_deref(), Some("one"));
    assert!(route(&mut ca).await.starts_with("replica:"));
    wait_sets(&a, 1).await;
    assert_eq!(redis.dbsize(), 1);
    let before = replica_selects(&db).await;
    assert!(before >= 1, "A's miss ran on a replica");
    let mut cb = b.conn().await;
    for i in 0..20 {
        let v: Option<String> = cb.query_first(&sql).await.unwrap();
        assert_eq!(v.as_deref(), Some("one"));
        if i == 0 {
            assert_eq!(route(&mut cb).await, "cache");
        }
    }
    let after = replica_selects(&db).await;
    let (hits, shared, misses) = levels(&b);
    println!("{kind:?}: replica SELECTs {before} -> {after}; B hits {hits} (shared {shared}), misses {misses}");
    assert_eq!(after, before, "B sent a SELECT to a replica");
    assert_eq!((hits, shared, misses), (20, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_b_serves_what_a_cached_without_a_replica_select() {
    let _g = SERIAL.lock().await;
    b_serves_what_a_cached(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn valkey_b_serves_what_a_cached_without_a_replica_select() {
    let _g = SERIAL.lock().await;
    b_serves_what_a_cached(Kind::Valkey).await;
}

/// B carrying A's token never reads the value A overwrote, though the
/// shared level still holds it (refused by B's own reader).
async fn b_with_a_token_never_reads_the_old_value(kind: Kind) {
    let redis = RedisServer::start(kind);
    let db = support::unique_db("shared_token");
    setup(&db).await;
    let a = shared_proxy(&db, &redis, "").await;
    let b = shared_proxy(&db, &redis, "").await;
    let sql = format!("SELECT v FROM {db}.products WHERE id = 2");
    let mut ca = a.conn().await;
    let mut cb = b.conn().await;
    for i in 1..=15i64 {
        // the shared level holds the current value (A's fill, or B's from
        // the previous round) before A overwrites it
        let v: Option<i64> = ca.query_first(&sql).await.unwrap();
        assert_eq!(v, Some(i - 1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while redis.dbsize() == 0 {
            assert!(
                Instant::now() < deadline,
                "nothing reached the shared level"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            let v: Option<i64> = ca.query_first(&sql).await.unwrap();
            assert_eq!(v, Some(i - 1));
        }
        ca.query_drop(format!("UPDATE {db}.products SET v = {i} WHERE id = 2"))
            .await
            .unwrap();
        let tok = token(&mut ca).await;
        // B's reader has the write: the cache is used, not bypassed
        wait_processed(&b, &tok).await;
        cb.query_drop(format!("SET @@causeway.token = '{tok}'"))
            .await
            .unwrap();
        let v: Option<i64> = cb.query_first(&sql).await.unwrap();
        assert_eq!(v, Some(i), "B read the value A overwrote (token {tok})");
    }
    let refused = stat!(&b, refused);
    println!("{kind:?}: B refused {refused} shared entries older than A's writes");
    assert!(
        refused >= 10,
        "the stale shared entries were found and refused: {refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_b_with_a_token_never_reads_the_old_value() {
    let _g = SERIAL.lock().await;
    b_with_a_token_never_reads_the_old_value(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn valkey_b_with_a_token_never_reads_the_old_value() {
    let _g = SERIAL.lock().await;
    b_with_a_token_never_reads_the_old_value(Kind::Valkey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_write_on_the_primary_reaches_b_within_3s() {
    let _g = SERIAL.lock().await;
    let redis = RedisServer::start(Kind::Redis);
    let db = support::unique_db("shared_direct");
    setup(&db).await;
    let a = shared_proxy(&db, &redis, "").await;
    let b = shared_proxy(&db, &redis, "").await;
    let sql = format!("SELECT name FROM {db}.products WHERE id = 4");
    for round in 0..3u32 {
        let old = if round == 0 {
            "four".to_string()
        } else {
            format!("n{}", round - 1)
        };
        // A reads the current value (a new session may first meet a
        // replica still applying the previous round's write)
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut ca = a.conn().await;
            let v: Option<String> = ca.query_first(&sql).await.unwrap();
            if v.as_deref() == Some(old.as_str()) && redis.dbsize() >= 1 {
                break;
            }
            assert!(Instant::now() < deadline, "A never read {old}: {v:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let new = format!("n{round}");
        let mut d = support::direct_conn().await;
        d.query_drop(format!(
            "UPDATE {db}.products SET name = '{new}' WHERE id = 4"
        ))
        .await
        .unwrap();
        let wrote = Instant::now();
        let mut cb = b.conn().await;
        loop {
            let v: Option<String> = cb.query_first(&sql).await.unwrap();
            if v.as_deref() == Some(new.as_str()) {
                break;
            }
            assert!(
                wrote.elapsed() < Duration::from_secs(3),
                "B still reads {v:?} 3 s after the write"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "round {round}: B saw the direct write after {:?}",
            wrote.elapsed()
        );
    }
    // the shared level was in use: B refused A's entries made before writes
    assert!(stat!(&b, found) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_every_read_still_answered() {
    let _g = SERIAL.lock().await;
    let mut redis = RedisServer::start(Kind::Redis);
    let db = support::unique_db("shared_kill");
    setup(&db).await;
    let a = shared_proxy(&db, &redis, "").await;
    let b = shared_proxy(&db, &redis, "").await;
    let read = format!("SELECT v FROM {db}.products WHERE id = 3");
    let still = format!("SELECT name FROM {db}.products WHERE id = 1");
    let mut ca = a.conn().await;
    let mut slowest = Duration::ZERO;
    for i in 1..=40i64 {
        if i == 15 {
            redis.kill();
        }
        ca.query_drop(format!("UPDATE {db}.products SET v = {i} WHERE id = 3"))
            .await
            .unwrap();
        let tok = token(&mut ca).await;
        // a new B session each time: no local floor, so the levels are asked
        let mut cb = b.conn().await;
        cb.query_drop(format!("SET @@causeway.token = '{tok}'"))
            .await
            .unwrap();
        let t = Instant::now();
        let v: Option<i64> = cb.query_first(&read).await.unwrap();
        let n: Option<String> = cb.query_first(&still).await.unwrap();
        slowest = slowest.max(t.elapsed());
        assert_eq!(v, Some(i), "round {i}");
        assert_eq!(n.as_deref(), Some("one"), "round {i}");
        let v: Option<i64> = ca.query_first(&read).await.unwrap();
        assert_eq!(v, Some(i), "round {i} on A");
    }
    let cache = b.proxy.cache.clone().unwrap();
    let s = cache.shared().unwrap();
    let failed = s.stats.errors.load(Ordering::Relaxed) + s.stats.timeouts.load(Ordering::Relaxed);
    let skipped = s.stats.skipped.load(Ordering::Relaxed);
    println!(
        "B: shared failures {failed}, skipped {skipped}, breaker {}, slowest round {slowest:?}",
        s.breaker.state()
    );
    assert!(failed + skipped >= 1, "the dead Redis was never asked");
    assert!(
        slowest < Duration::from_secs(2),
        "a read waited {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_costs_hits_never_answers_and_recovers() {
    let _g = SERIAL.lock().await;
    let redis = RedisServer::start(Kind::Redis);
    let db = support::unique_db("shared_frozen");
    setup(&db).await;
    let a = shared_proxy(&db, &redis, "").await;
    let b = shared_proxy(&db, &redis, "").await;
    let sql = format!("SELECT name FROM {db}.products WHERE id = 2");
    let mut ca = a.conn().await;
    let v: Option<String> = ca.query_first(&sql).await.unwrap();
    assert_eq!(v.as_deref(), Some("two"));
    wait_sets(&a, 1).await;
    // B's reads ask a Redis that never answers: each waits at most the
    // timeout (50 ms) until the breaker opens, then not at all
    redis.freeze(true);
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let mut cb = b.conn().await;
        let t = Instant::now();
        let v = tokio::time::timeout(Duration::from_secs(5), cb.query_first::<String, _>(&sql))
            .await
            .unwrap_or_else(|_| panic!("read {i} hung on a frozen Redis"))
            .unwrap();
        slowest = slowest.max(t.elapsed());
        assert_eq!(v.as_deref(), Some("two"));
        // a new key each time: B's memory cannot answer
        let other = format!("SELECT name FROM {db}.products WHERE id = 2 AND {i} = {i}");
        let v: Option<String> =
            tokio::time::timeout(Duration::from_secs(5), cb.query_first(&other))
                .await
                .unwrap_or_else(|_| panic!("read {i} hung on a frozen Redis"))
                .unwrap();
        assert_eq!(v.as_deref(), Some("two"));
    }
    let (timeouts, skipped) = (stat!(&b, timeouts), stat!(&b, skipped));
    let state = b
        .proxy
        .cache
        .clone()
        .unwrap()
        .shared()
        .unwrap()
        .breaker
        .state();
    println!("frozen: B timeouts {timeouts}, skipped {skipped}, breaker {state}, slowest read {slowest:?}");
    assert!((1..=10).contains(&timeouts), "timeouts {timeouts}");
    assert!(skipped >= 20, "the breaker opened: skipped {skipped}");
    // thawed: the breaker's probe closes it and the shared level serves again
    redis.freeze(false);
    let found = stat!(&b, found);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    while stat!(&b, found) == found {
        assert!(
            Instant::now() < deadline,
            "the shared level never came back"
        );
        let probe = format!("SELECT name FROM {db}.products WHERE id = 2 AND 1000 = {n}");
        n += 1;
        let _: Option<String> = ca.query_first(&probe).await.unwrap();
        let mut cb = b.conn().await;
        let _: Option<String> = cb.query_first(&probe).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_with_other_privileges_or_set_state_never_share() {
    let _g = SERIAL.lock().await;
    let redis = RedisServer::start(Kind::Redis);
    let db = support::unique_db("shared_users");
    setup(&db).await;
    let mut d = support::direct_conn().await;
    d.query_drop("CREATE USER IF NOT EXISTS 'noread'@'%' IDENTIFIED BY 'noreadpw'")
        .await
        .unwrap();
    support::sync_replicas().await;
    let users = "\n[[users]]\nname = \"noread\"\npassword = \"noreadpw\"\nbackend_user = \"noread\"\nbackend_password = \"noreadpw\"\n";
    let a = shared_proxy(&db, &redis, users).await;
    let b = shared_proxy(&db, &redis, users).await;
    // privileges: A's app fills the shared level, B's noread gets 1142
    let sql = format!("SELECT name FROM {db}.products WHERE id = 1");
    let mut ca = a.conn().await;
    let v: Option<String> = ca.query_first(&sql).await.unwrap();
    assert_eq!(v.as_deref(), Some("one"));
    wait_sets(&a, 1).await;
    let mut nr = mysql_async::Conn::new(b.opts("noread", "noreadpw"))
        .await
        .unwrap();
    for _ in 0..2 {
        match nr.query_first::<String, _>(&sql).await.unwrap_err() {
            mysql_async::Error::Server(s) => assert_eq!(s.code, 1142, "{s:?}"),
            other => panic!("expected 1142, got {other:?}"),
        }
    }
    // SET state: the same text under another div_precision_increment
    let div = format!("SELECT v / 3 FROM {db}.products WHERE id = 1");
    let mut ca = a.conn().await;
    ca.query_drop("SET SESSION div_precision_increment = 8")
        .await
        .unwrap();
    let wide: Option<String> = ca.query_first(&div).await.unwrap();
    assert_eq!(wide.as_deref(), Some("0.00000000"));
    wait_sets(&a, 2).await;
    let mut cb = b.conn().await;
    let narrow: Option<String> = cb.query_first(&div).await.unwrap();
    assert_eq!(narrow.as_deref(), Some("0.0000"));
    assert_ne!(route(&mut cb).await, "cache");
    assert_eq!(levels(&b).1, 0, "B served nothing from the shared level");
    // and B shares with a session in the same state
    let mut cb2 = b.conn().await;
    cb2.query_drop("SET SESSION div_precision_increment = 8")
        .await
        .unwrap();
    let again: Option<String> = cb2.query_first(&div).await.unwrap();
    assert_eq!(again.as_deref(), Some("0.00000000"));
    assert_eq!(route(&mut cb2).await, "cache");
    assert_eq!(levels(&b).1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalidated_entries_are_freed_eagerly() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("cache_free");
    setup(&db).await;
    let mut d = support::direct_conn().await;
    d.query_drop(format!("CREATE TABLE {db}.other (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let p = cached_proxy(&db, "").await;
    let cache = p.proxy.cache.clone().unwrap();
    let mut c = p.conn().await;
    for id in 1..=3 {
        let sql = format!("SELECT name FROM {db}.products WHERE id = {id}");
        let _: Option<String> = c.query_first(&sql).await.unwrap();
    }
    assert_eq!(cache.entry_count(), 3);
    let full = cache.bytes();
    // a write to another table frees nothing
    d.query_drop(format!("INSERT INTO {db}.other VALUES (1)"))
        .await
        .unwrap();
    wait_processed(&p, &primary_executed().await).await;
    assert_eq!(cache.entry_count(), 3);
    // a write to the table frees its entries when the reader reports it,
    // with no lookup
    d.query_drop(format!("UPDATE {db}.products SET v = v + 1 WHERE id = 2"))
        .await
        .unwrap();
    wait_processed(&p, &primary_executed().await).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while cache.entry_count() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} entries still held after the write",
            cache.entry_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let empty = cache.bytes();
    println!("bytes held: {full} with 3 entries, {empty} after the write");
    assert!(empty < full);
}
