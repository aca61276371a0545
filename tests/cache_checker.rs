//! A token checker through the cache tier against a real GTID topology:
//! writers and causal readers on separate connections see no stale read
//! while the replicas are held back then released (fallbacks and a waited
//! read required), while an eventual control in the same run does read
//! stale.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::cache::{cached_proxy, route, setup, stats, token};
use support::delay;

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
