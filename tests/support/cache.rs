//! Cache-tier test helpers: a proxy with the cache on and one rule caching
//! `{db}.products`, ready once its binlog reader follows and the monitor
//! has measured every backend; the schema those tests read; SQL on every
//! replica.
#![allow(dead_code)]

use mysql_async::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A proxy with the cache on and one rule caching `{db}.products`.
pub async fn cached_proxy(db: &str, extra: &str) -> super::TestProxy {
    cached_proxy_probing(db, extra, 50).await
}

/// [`cached_proxy`] whose monitor reads GTID sets every `gtid_interval_ms`.
pub async fn cached_proxy_probing(
    db: &str,
    extra: &str,
    gtid_interval_ms: u64,
) -> super::TestProxy {
    cached_proxy_keys(db, extra, gtid_interval_ms, "").await
}

/// [`cached_proxy_probing`] with more `[cache]` keys (`cache_keys`, lines).
pub async fn cached_proxy_keys(
    db: &str,
    extra: &str,
    gtid_interval_ms: u64,
    cache_keys: &str,
) -> super::TestProxy {
    let cache_keys = cache_keys.to_string();
    let db = db.to_string();
    let extra = extra.to_string();
    let p = super::start_proxy_with(move |t| {
        let t = t.replace(
            "password = \"monitorpw\"\n",
            &format!("password = \"monitorpw\"\ngtid_interval_ms = {gtid_interval_ms}\n"),
        );
        format!(
            "{t}{extra}\n[cache]\nenabled = true\nuser = \"repl\"\npassword = \"replpw\"\n{cache_keys}\n[[rules]]\nname = \"catalog\"\nmatch_tables = [\"{db}.products\"]\ncache_ttl_ms = 60000\n"
        )
    })
    .await;
    let cache = p.proxy.cache.clone().expect("cache on");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cache.processed().1 {
        assert!(
            Instant::now() < deadline,
            "binlog reader never followed: {:?}",
            cache.reader()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // entries are stored only from backends the monitor knows have
    // everything the reader started from
    let start = cache.processed().0;
    loop {
        let topo = p.proxy.topology.load();
        let known = std::iter::once(&topo.primary)
            .chain(topo.replicas.iter())
            .all(|b| b.state.view.load().gtid_executed.contains(&start));
        if known {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the monitor never measured the backends"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p
}

pub async fn setup(db: &str) {
    // a failed test may have left the appliers stopped
    replicas_sql("START REPLICA SQL_THREAD").await;
    let mut c = super::direct_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!(
        "CREATE TABLE {db}.products (id INT PRIMARY KEY, name VARCHAR(64), v BIGINT NOT NULL DEFAULT 0)"
    ))
    .await
    .unwrap();
    c.query_drop(format!(
        "INSERT INTO {db}.products (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')"
    ))
    .await
    .unwrap();
    super::sync_replicas().await;
}

/// Runs `sql` on every replica.
pub async fn replicas_sql(sql: &str) {
    for r in super::topology().replicas() {
        r.conn().await.unwrap().query_drop(sql).await.unwrap();
    }
}

/// `@@causeway.last_route` of `c`.
pub async fn route(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap()
}

/// `@@causeway.token` of `c`.
pub async fn token(c: &mut mysql_async::Conn) -> String {
    c.query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap()
}

/// (hits, misses, bypasses) of the `catalog` rule.
pub fn stats(p: &super::TestProxy) -> (u64, u64, u64) {
    let cache = p.proxy.cache.clone().unwrap();
    let s = cache.rule_stats(&Arc::from("catalog"));
    (
        s.hits.load(Ordering::Relaxed),
        s.misses.load(Ordering::Relaxed),
        s.bypasses.load(Ordering::Relaxed),
    )
}
