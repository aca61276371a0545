//! The cache tier against a real GTID topology: hits never reach a replica,
//! writes through causeway and writes made directly on the primary are never
//! hidden from a causal read that carries them, non-deterministic reads and
//! reads in transactions are not cached, and privileges still apply (the
//! token checker through the cache: tests/cache_checker.rs). Tests run one
//! at a time (they compare the replicas' statement counters).

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

use support::cache::{
    cached_proxy, cached_proxy_probing, replicas_sql, route, setup, stats, token,
};

async fn com_select(conns: &mut [mysql_async::Conn]) -> Vec<u64> {
    let mut out = Vec::new();
    for c in conns.iter_mut() {
        let row: (String, String) = c
            .query_first("SHOW GLOBAL STATUS LIKE 'Com_select'")
            .await
            .unwrap()
            .unwrap();
        out.push(row.1.parse().unwrap());
    }
    out
}

async fn replica_conns() -> Vec<mysql_async::Conn> {
    let mut v = Vec::new();
    for r in support::topology().replicas() {
        v.push(r.conn().await.unwrap());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_reads_cause_no_select_on_any_replica() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("cache_hits");
    setup(&db).await;
    // fewer monitor probes: less noise in the replicas' Com_select
    let p = cached_proxy_probing(&db, "", 1000).await;
    let mut c = p.conn().await;
    let sql = format!("SELECT name FROM {db}.products WHERE id = 1");
    // the miss that fills the entry
    let first: Option<String> = c.query_first(&sql).await.unwrap();
    assert_eq!(first.as_deref(), Some("one"));
    assert!(route(&mut c).await.starts_with("replica:"));
    let mut reps = replica_conns().await;
    // idle baseline of the same length as the measured run
    let window = Duration::from_secs(2);
    let before = com_select(&mut reps).await;
    tokio::time::sleep(window).await;
    let idle = com_select(&mut reps).await;
    let (h0, m0, _) = stats(&p);
    let t0 = Instant::now();
    for _ in 0..50 {
        let v: Option<String> = c.query_first(&sql).await.unwrap();
        assert_eq!(v.as_deref(), Some("one"));
    }
    let spent = t0.elapsed();
    assert!(spent < window, "50 hits took {spent:?}");
    tokio::time::sleep(window - spent).await;
    let busy = com_select(&mut reps).await;
    let (h1, m1, _) = stats(&p);
    assert_eq!(h1 - h0, 50, "every read was a hit");
    assert_eq!(m1, m0);
    assert_eq!(route(&mut c).await, "cache");
    for i in 0..before.len() {
        let idle_delta = idle[i] - before[i];
        let busy_delta = busy[i] - idle[i];
        println!("replica {i}: Com_select idle {idle_delta}, during 50 cached reads {busy_delta}");
        // the monitor's probes (a few SELECTs a second, with jitter of a
        // whole probe cycle) run in both windows; the reads would add 50
        assert!(
            busy_delta < idle_delta + 10,
            "replica {i}: {busy_delta} selects during cached reads, {idle_delta} idle"
        );
    }
    // prepared statements are cached too (binary protocol, own key)
    let ps = format!("SELECT name FROM {db}.products WHERE id = ?");
    let v: Option<String> = c.exec_first(&ps, (2,)).await.unwrap();
    assert_eq!(v.as_deref(), Some("two"));
    let v: Option<String> = c.exec_first(&ps, (2,)).await.unwrap();
    assert_eq!(v.as_deref(), Some("two"));
    assert_eq!(route(&mut c).await, "cache");
    let v: Option<String> = c.exec_first(&ps, (3,)).await.unwrap();
    assert_eq!(v.as_deref(), Some("three"));
    assert_ne!(route(&mut c).await, "cache");
    // a statement-level opt-out
    let v: Option<String> = c
        .query_first(format!("/* causeway cache=off */ {sql}"))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("one"));
    assert_ne!(route(&mut c).await, "cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_causeway_is_seen_at_once() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("cache_ryw");
    setup(&db).await;
    let p = cached_proxy(&db, "").await;
    let mut a = p.conn().await;
    let mut b = p.conn().await;
    let sql = format!("SELECT name FROM {db}.products WHERE id = 1");
    for _ in 0..2 {
        let v: Option<String> = b.query_first(&sql).await.unwrap();
        assert_eq!(v.as_deref(), Some("one"));
    }
    assert_eq!(route(&mut b).await, "cache");
    a.query_drop(format!(
        "UPDATE {db}.products SET name = 'uno' WHERE id = 1"
    ))
    .await
    .unwrap();
    let v: Option<String> = a.query_first(&sql).await.unwrap();
    assert_eq!(v.as_deref(), Some("uno"), "the writer reads its write");
    let t = token(&mut a).await;
    assert!(!t.is_empty());
    b.query_drop(format!("SET @@causeway.token = '{t}'"))
        .await
        .unwrap();
    let v: Option<String> = b.query_first(&sql).await.unwrap();
    assert_eq!(
        v.as_deref(),
        Some("uno"),
        "a session carrying the token reads the write"
    );
    // once the replicas have it, it is cached again
    support::sync_replicas().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Option<String> = b.query_first(&sql).await.unwrap();
        assert_eq!(v.as_deref(), Some("uno"));
        if route(&mut b).await == "cache" {
            break;
        }
        assert!(Instant::now() < deadline, "never cached again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_write_on_the_primary_is_never_hidden() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("cache_direct");
    setup(&db).await;
    let p = cached_proxy(&db, "").await;
    let mut causal = p.conn().await;
    let mut eventual = p.conn().await;
    eventual
        .query_drop("SET @@causeway.consistency = 'eventual'")
        .await
        .unwrap();
    let sql = format!("SELECT name FROM {db}.products WHERE id = 2");
    for c in [&mut causal, &mut eventual] {
        for _ in 0..2 {
            let v: Option<String> = c.query_first(&sql).await.unwrap();
            assert_eq!(v.as_deref(), Some("two"));
        }
        assert_eq!(route(c).await, "cache");
    }
    let mut direct = support::direct_conn().await;
    for round in 0..5 {
        let name = format!("two-{round}");
        direct
            .query_drop(format!(
                "UPDATE {db}.products SET name = '{name}' WHERE id = 2"
            ))
            .await
            .unwrap();
        let g: String = direct
            .query_first("SELECT @@GLOBAL.gtid_executed")
            .await
            .unwrap()
            .unwrap();
        causal
            .query_drop(format!("SET @@causeway.token = '{}'", g.replace('\n', "")))
            .await
            .unwrap();
        let v: Option<String> = causal.query_first(&sql).await.unwrap();
        assert_eq!(
            v.as_deref(),
            Some(name.as_str()),
            "causal read with the write's GTID set"
        );
        let t0 = Instant::now();
        loop {
            let v: Option<String> = eventual.query_first(&sql).await.unwrap();
            if v.as_deref() == Some(name.as_str()) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "eventual read stale after 3 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "round {round}: eventual reader saw the direct write after {:?}",
            t0.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nondeterministic_reads_and_transactions_are_not_cached() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("cache_nondet");
    setup(&db).await;
    let p = cached_proxy(&db, "").await;
    let mut c = p.conn().await;
    let (h0, _, _) = stats(&p);
    let sql = format!("SELECT NOW(6), name FROM {db}.products WHERE id = 1");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let row: Option<(String, String)> = c.query_first(&sql).await.unwrap();
        seen.push(row.unwrap().0);
        assert_ne!(route(&mut c).await, "cache");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(seen[0] != seen[2], "NOW() answers must differ: {seen:?}");
    let plain = format!("SELECT name FROM {db}.products WHERE id = 1");
    c.query_drop("BEGIN").await.unwrap();
    for _ in 0..3 {
        let v: Option<String> = c.query_first(&plain).await.unwrap();
        assert_eq!(v.as_deref(), Some("one"));
        assert_ne!(route(&mut c).await, "cache");
    }
    c.query_drop("COMMIT").await.unwrap();
    let (h1, _, _) = stats(&p);
    assert_eq!(h1, h0, "no hit for NOW() or inside a transaction");
    // a table no rule covers is not cached either
    let other = format!("SELECT 1 FROM {db}.products p JOIN mysql.user u LIMIT 1");
    for _ in 0..2 {
        let _: Option<i64> = c.query_first(&other).await.unwrap();
    }
    assert_ne!(route(&mut c).await, "cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_without_the_privilege_gets_1142() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("cache_priv");
    setup(&db).await;
    let mut d = support::direct_conn().await;
    d.query_drop("CREATE USER IF NOT EXISTS 'noread'@'%' IDENTIFIED BY 'noreadpw'")
        .await
        .unwrap();
    support::sync_replicas().await;
    let p = cached_proxy(
        &db,
        "\n[[users]]\nname = \"noread\"\npassword = \"noreadpw\"\nbackend_user = \"noread\"\nbackend_password = \"noreadpw\"\n",
    )
    .await;
    let mut app = p.conn().await;
    let sql = format!("SELECT name FROM {db}.products WHERE id = 1");
    for _ in 0..2 {
        let v: Option<String> = app.query_first(&sql).await.unwrap();
        assert_eq!(v.as_deref(), Some("one"));
    }
    assert_eq!(route(&mut app).await, "cache");
    let mut nr = mysql_async::Conn::new(p.opts("noread", "noreadpw"))
        .await
        .unwrap();
    for _ in 0..2 {
        let e = nr.query_first::<String, _>(&sql).await.unwrap_err();
        match e {
            mysql_async::Error::Server(s) => assert_eq!(s.code, 1142, "{s:?}"),
            other => panic!("expected 1142, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hit_and_miss_counters_move_and_show_cache_reports() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("cache_show");
    setup(&db).await;
    let p = cached_proxy(&db, "").await;
    let mut c = p.conn().await;
    let sql = format!("SELECT name FROM {db}.products WHERE id = 4");
    for _ in 0..3 {
        let v: Option<String> = c.query_first(&sql).await.unwrap();
        assert_eq!(v.as_deref(), Some("four"));
    }
    let mut admin = mysql_async::Conn::new(p.opts("admin", "adminpw"))
        .await
        .unwrap();
    let rows: Vec<mysql_async::Row> = admin.query("SHOW CAUSEWAY CACHE").await.unwrap();
    let mut saw_rule = false;
    let mut saw_reader = false;
    for r in rows {
        let kind: String = r.get(0).unwrap();
        if kind == "rule" {
            saw_rule = true;
            let name: String = r.get(1).unwrap();
            assert_eq!(name, "catalog");
            let entries: u64 = r.get::<String, _>(2).unwrap().parse().unwrap();
            let hits: u64 = r.get::<String, _>(4).unwrap().parse().unwrap();
            let misses: u64 = r.get::<String, _>(5).unwrap().parse().unwrap();
            assert!(entries >= 1);
            assert_eq!((hits, misses), (2, 1));
        } else {
            saw_reader = true;
            let state: String = r.get(8).unwrap();
            assert_eq!(state, "following");
        }
    }
    assert!(saw_rule && saw_reader);
    // not for non-admins
    let e = c.query_drop("SHOW CAUSEWAY CACHE").await.unwrap_err();
    assert!(
        matches!(e, mysql_async::Error::Server(ref s) if s.code == 1227),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_replica_never_fills_the_cache_with_what_the_reader_saw_overwritten() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("cache_lag");
    setup(&db).await;
    let p = cached_proxy(
        &db,
        "\n[routing]\nmax_lag_ms = 600000\nlag_hysteresis_ms = 1000\n",
    )
    .await;
    let cache = p.proxy.cache.clone().unwrap();
    let mut eventual = p.conn().await;
    eventual
        .query_drop("SET @@causeway.consistency = 'eventual'")
        .await
        .unwrap();
    let mut causal = p.conn().await;
    causal
        .query_drop("SET @@causeway.wait_timeout_ms = 300")
        .await
        .unwrap();
    let sql = format!("SELECT name FROM {db}.products WHERE id = 3");
    replicas_sql("STOP REPLICA SQL_THREAD").await;
    let mut direct = support::direct_conn().await;
    direct
        .query_drop(format!(
            "UPDATE {db}.products SET name = 'tres' WHERE id = 3"
        ))
        .await
        .unwrap();
    let g: String = direct
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .unwrap()
        .unwrap();
    let g = causeway_gtid::GtidSet::parse(&g.replace('\n', "")).unwrap();
    // the reader has seen the write; the replicas have not applied it
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.processed().0.contains(&g) {
        assert!(Instant::now() < deadline, "reader never saw the write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // (a failure here leaves the appliers stopped; `setup` restarts them)
    {
        for _ in 0..5 {
            let v: Option<String> = eventual.query_first(&sql).await.unwrap();
            assert_eq!(
                v.as_deref(),
                Some("three"),
                "the stale replica answers eventual reads"
            );
            assert!(
                route(&mut eventual).await.starts_with("replica:"),
                "never from the cache"
            );
        }
        causal
            .query_drop(format!("SET @@causeway.token = '{g}'"))
            .await
            .unwrap();
        let v: Option<String> = causal.query_first(&sql).await.unwrap();
        assert_eq!(
            v.as_deref(),
            Some("tres"),
            "the causal read carries the write"
        );
    }
    replicas_sql("START REPLICA SQL_THREAD").await;
    let t0 = Instant::now();
    loop {
        let v: Option<String> = eventual.query_first(&sql).await.unwrap();
        if v.as_deref() == Some("tres") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "eventual read stale 3 s after the replicas resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "eventual reader saw the write {:?} after the replicas resumed",
        t0.elapsed()
    );
}
