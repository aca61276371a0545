//! The cache tier for clients without CLIENT_DEPRECATE_EOF (PyMySQL): the
//! backend link negotiates it whatever the client has, so a replica read's
//! terminating OK carries the replica's GTID set, the session's monotonic
//! floor becomes known and causal reads hit the cache; and a token checker
//! with PyMySQL never reads stale through it, while an eventual control
//! does. Tests run one at a time (one holds the replicas' appliers back).

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::Queryable;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::cache::{cached_proxy, setup};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Runs `tests/py/<script>` with `args`; returns the `key=value` pairs of
/// its last line.
async fn python(script: &str, args: &[String]) -> HashMap<String, String> {
    let path = format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .await
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'pymysql'"),
        "PyMySQL is missing: run integration/test.sh (pip install pymysql)"
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    println!("{script}: {}", stdout.trim());
    let last = stdout.lines().last().unwrap_or_default();
    last.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> u64 {
    m.get(k)
        .unwrap_or_else(|| panic!("{k} missing in {m:?}"))
        .parse()
        .unwrap()
}

fn rule_hits(p: &support::TestProxy) -> u64 {
    rule_counts(p, "catalog").0
}

/// (hits, misses, bypasses) of `rule`.
fn rule_counts(p: &support::TestProxy, rule: &str) -> (u64, u64, u64) {
    let s = p.proxy.cache.clone().unwrap().rule_stats(&Arc::from(rule));
    (
        s.hits.load(Ordering::Relaxed),
        s.misses.load(Ordering::Relaxed),
        s.bypasses.load(Ordering::Relaxed),
    )
}

/// sysbench `oltp_point_select` (libmariadb: no CLIENT_DEPRECATE_EOF) on
/// `port`, 4 tables of 25 rows; returns its report.
async fn point_select(port: u16, db: &str, phase: &str) -> String {
    let out = tokio::process::Command::new("sysbench")
        .arg("oltp_point_select")
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            "--mysql-ssl=off",
        ])
        .args(["--mysql-user=app", "--mysql-password=apppw"])
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--mysql-db={db}"))
        .args(["--tables=4", "--table-size=25", "--db-ps-mode=disable"])
        .args(["--threads=2", "--time=3", "--rand-type=uniform"])
        .arg(phase)
        .kill_on_drop(true)
        .output()
        .await
        .expect("sysbench");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sysbench {phase}: {text}\n{err}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_repeated_reads_hit_in_causal_and_eventual_mode() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("pycache");
    setup(&db).await;
    let p = cached_proxy(&db, "").await;
    for mode in ["causal", "eventual"] {
        let h0 = rule_hits(&p);
        let args = [
            "127.0.0.1".to_string(),
            p.port().to_string(),
            db.clone(),
            mode.to_string(),
        ];
        let out = python("cache_hits.py", &args).await;
        let hits = num(&out, "hits");
        let counted = rule_hits(&p) - h0;
        assert!(hits >= 45, "{mode}: {hits} of 50 reads from the cache");
        assert_eq!(counted, hits, "{mode}: the cache counted {counted} hits");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pymysql_token_checker_through_the_cache_reads_nothing_stale() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("pychecker");
    setup(&db).await;
    // a lag budget the stopped appliers stay within: the eventual control
    // keeps reading the replicas
    let p = cached_proxy(&db, "[routing]\nmax_lag_ms = 600000\n").await;
    let args = [
        "127.0.0.1".to_string(),
        p.port().to_string(),
        db.clone(),
        "10".to_string(),
    ];
    let run = tokio::spawn(async move { python("cache_checker.py", &args).await });
    // the replicas' appliers are held for part of the run (a read lock on
    // the table: replication keeps running, so the replicas stay
    // eligible, but fall behind): causal reads must then wait, fall back
    // or hit only what is proven fresh
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut locks = Vec::new();
    for r in support::topology().replicas() {
        let mut c = r.conn().await.unwrap();
        c.query_drop(format!("LOCK TABLES {db}.products READ"))
            .await
            .unwrap();
        locks.push(c);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for mut c in locks {
        c.query_drop("UNLOCK TABLES").await.unwrap();
    }
    let out = run.await.unwrap();
    let (reads, stale, hits) = (
        num(&out, "causal_reads"),
        num(&out, "causal_stale"),
        num(&out, "causal_hits"),
    );
    let (writes, ev_stale) = (num(&out, "writes"), num(&out, "eventual_stale"));
    assert!(writes >= 10 && reads >= 60, "the checker ran: {out:?}");
    assert_eq!(
        stale, 0,
        "causal reads through the cache read stale: {out:?}"
    );
    assert!(hits > 0, "causal reads hit the cache: {out:?}");
    assert!(
        ev_stale > 0,
        "the eventual control reads stale while the appliers are stopped: {out:?}"
    );
    let mut d = support::direct_conn().await;
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_point_select_in_causal_mode_hits_the_cache() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("sbcache");
    setup(&db).await;
    let primary = support::topology().primary().port();
    point_select(primary, &db, "prepare").await;
    support::sync_replicas().await;
    let tables: Vec<String> = (1..=4).map(|i| format!("\"{db}.sbtest{i}\"")).collect();
    let rule = format!(
        "[[rules]]\nname = \"sb\"\nmatch_tables = [{}]\ncache_ttl_ms = 60000\n",
        tables.join(", ")
    );
    let p = cached_proxy(&db, &rule).await;
    let report = point_select(p.port(), &db, "run").await;
    let (hits, misses, bypasses) = rule_counts(&p, "sb");
    let total = hits + misses + bypasses;
    let rate = hits as f64 / total.max(1) as f64;
    println!("sysbench causal: {hits} hits, {misses} misses, {bypasses} bypasses: {rate:.3}");
    assert!(total > 1000, "sysbench ran through the cache:\n{report}");
    assert!(rate >= 0.9, "hit rate {rate:.3}");
    let mut d = support::direct_conn().await;
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
