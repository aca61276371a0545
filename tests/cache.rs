//! The cache tier against a real GTID topology: hits never reach a replica,
//! writes through causeway and writes made directly on the primary are never
//! hidden from a causal read that carries them, non-deterministic reads and
//! reads in transactions are not cached, privileges still apply, and a
//! token checker through the cache sees no stale read while the replicas
//! are held back (with an eventual control that does). Tests run one at a
//! time (they compare the replicas' statement counters).

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::delay;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

use support::cache::{cached_proxy, cached_proxy_probing, replicas_sql, setup};

async fn route(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap()
}

async fn token(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap()
}

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

fn stats(p: &support::TestProxy) -> (u64, u64, u64) {
    let cache = p.proxy.cache.clone().unwrap();
    let s = cache.rule_stats(&Arc::from("catalog"));
    (
        s.hits.load(Ordering::Relaxed),
        s.misses.load(Ordering::Relaxed),
        s.bypasses.load(Ordering::Relaxed),
    )
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

/// What the token checker counted.
#[derive(Default)]
struct Checked {
    reads: AtomicU64,
    stale: AtomicU64,
    hits: AtomicU64,
    fallbacks: AtomicU64,
    eventual_reads: AtomicU64,
    eventual_stale: AtomicU64,
}

/// The last value each writer wrote to `products` row `id` = index + 1,
/// with the writer's token after it.
type Last = Vec<Arc<std::sync::Mutex<(i64, String)>>>;

/// Writer `id`: increments its row until `end`; each read-back on its own
/// session must see its own write. Publishes (value, token) after each.
fn checker_writer(
    p: Arc<support::TestProxy>,
    db: String,
    id: u32,
    last: Last,
    n_: Arc<Checked>,
    end: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = p.conn().await;
        let mut n = 0i64;
        while Instant::now() < end {
            c.query_drop(format!(
                "UPDATE {db}.products SET v = v + 1 WHERE id = {id}"
            ))
            .await
            .unwrap();
            n += 1;
            let v: i64 = c
                .query_first(format!("SELECT v FROM {db}.products WHERE id = {id}"))
                .await
                .unwrap()
                .unwrap();
            if v != n {
                n_.stale.fetch_add(1, Ordering::Relaxed);
            }
            let t = token(&mut c).await;
            *last[id as usize - 1].lock().unwrap() = (n, t);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
}

/// Causal reader of row `id` with the writer's latest token (waits of
/// 300 ms, so reads fall back while the replicas are held).
fn checker_reader(
    p: Arc<support::TestProxy>,
    db: String,
    id: u32,
    last: Last,
    n_: Arc<Checked>,
    end: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = p.conn().await;
        c.query_drop("SET @@causeway.wait_timeout_ms = 300")
            .await
            .unwrap();
        while Instant::now() < end {
            let (want, t) = last[id as usize - 1].lock().unwrap().clone();
            if !t.is_empty() {
                c.query_drop(format!("SET @@causeway.token = '{t}'"))
                    .await
                    .unwrap();
            }
            let v: i64 = c
                .query_first(format!("SELECT v FROM {db}.products WHERE id = {id}"))
                .await
                .unwrap()
                .unwrap();
            n_.reads.fetch_add(1, Ordering::Relaxed);
            if v < want {
                n_.stale.fetch_add(1, Ordering::Relaxed);
            }
            match route(&mut c).await.as_str() {
                "cache" => n_.hits.fetch_add(1, Ordering::Relaxed),
                "primary:fallback" => n_.fallbacks.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
    })
}

/// The control: the same reads in eventual mode, compared with the same
/// expectations; they must read stale while the replicas are held.
fn checker_eventual(
    p: Arc<support::TestProxy>,
    db: String,
    last: Last,
    n_: Arc<Checked>,
    end: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut c = p.conn().await;
        c.query_drop("SET @@causeway.consistency = 'eventual'")
            .await
            .unwrap();
        let mut id = 0u32;
        while Instant::now() < end {
            id = id % 4 + 1;
            let (want, _) = last[id as usize - 1].lock().unwrap().clone();
            let v: i64 = c
                .query_first(format!("SELECT v FROM {db}.products WHERE id = {id}"))
                .await
                .unwrap()
                .unwrap();
            n_.eventual_reads.fetch_add(1, Ordering::Relaxed);
            if v < want {
                n_.eventual_stale.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Once reads have fallen back and the control has read stale, one causal
/// read (not cacheable: NOW(6)) with a 20 s wait; the harness releases the
/// replicas while it waits. Returns its route and whether it was fresh.
async fn checker_long_wait(
    p: &support::TestProxy,
    db: &str,
    last: &Last,
    n_: &Checked,
) -> (String, bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while n_.fallbacks.load(Ordering::Relaxed) < 3 || n_.eventual_stale.load(Ordering::Relaxed) < 1
    {
        assert!(
            Instant::now() < deadline,
            "no fallback or no stale control read while held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (want, t) = last[0].lock().unwrap().clone();
    let mut c = p.conn().await;
    c.query_drop(format!("SET @@causeway.token = '{t}'"))
        .await
        .unwrap();
    c.query_drop("SET @@causeway.wait_timeout_ms = 20000")
        .await
        .unwrap();
    let row: (String, i64) = c
        .query_first(format!("SELECT NOW(6), v FROM {db}.products WHERE id = 1"))
        .await
        .unwrap()
        .unwrap();
    (route(&mut c).await, row.1 >= want)
}

/// Writers and causal readers of the same rows through the cache, with
/// the replicas held back until a read has waited on one of them: no
/// causal read is stale, reads fell back while held and one waited, and an
/// eventual reader of the same rows in the same run did read stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn token_checker_through_the_cache_sees_no_stale_read() {
    let _g = SERIAL.lock().await;
    delay::delay_replicas(0).await;
    let db = support::unique_db("cache_checker");
    setup(&db).await;
    let p = Arc::new(cached_proxy(&db, "\n[routing]\nmax_lag_ms = 600000\n").await);
    delay::hold_replicas(&p.proxy).await;
    let (h0, m0, _) = stats(&p);
    let n = Arc::new(Checked::default());
    let last: Last = (0..4)
        .map(|_| Arc::new(std::sync::Mutex::new((0, String::new()))))
        .collect();
    let end = Instant::now() + Duration::from_secs(12);
    let mut tasks = Vec::new();
    for id in 1..=4u32 {
        let args = (Arc::clone(&p), db.clone(), id, last.clone(), Arc::clone(&n));
        tasks.push(checker_writer(args.0, args.1, args.2, args.3, args.4, end));
        let args = (Arc::clone(&p), db.clone(), id, last.clone(), Arc::clone(&n));
        tasks.push(checker_reader(args.0, args.1, args.2, args.3, args.4, end));
    }
    tasks.push(checker_eventual(
        Arc::clone(&p),
        db.clone(),
        last.clone(),
        Arc::clone(&n),
        end,
    ));
    let release = tokio::spawn(delay::release_when_waiting(Duration::from_secs(15)));
    let (long_route, long_fresh) = checker_long_wait(&p, &db, &last, &n).await;
    let released = release.await;
    for t in tasks {
        t.await.unwrap();
    }
    delay::release_replicas().await;
    let (h1, m1, _) = stats(&p);
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (stale, reads, hits, fallbacks) = (
        get(&n.stale),
        get(&n.reads),
        get(&n.hits),
        get(&n.fallbacks),
    );
    let (ev_reads, ev_stale) = (get(&n.eventual_reads), get(&n.eventual_stale));
    println!(
        "token checker: {reads} reads, {hits} from the cache, {fallbacks} fallbacks, {stale} stale; \
         long read {long_route}; eventual control {ev_stale} stale of {ev_reads}; \
         rule hits +{}, misses +{}",
        h1 - h0,
        m1 - m0
    );
    released.expect("the harness saw the long read wait on a replica");
    assert_eq!(stale, 0, "stale reads through the cache");
    assert!(long_fresh, "the long read saw its write");
    assert!(
        long_route.starts_with("replica:") && long_route.ends_with(":waited"),
        "{long_route}"
    );
    assert!(
        fallbacks >= 3,
        "reads fell back while the replicas were held"
    );
    assert!(
        ev_stale > 0,
        "the eventual control read stale ({ev_reads} reads)"
    );
    assert!(reads > 100, "the checker ran ({reads} reads)");
    assert!(hits > 0, "the checker read through the cache");
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
