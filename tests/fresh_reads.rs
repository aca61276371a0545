//! `consistency = "fresh"` against a real GTID topology: clients pass no
//! token; the writer and the reader are different connections, different
//! proxy instances, or the writer bypasses causeway; the replicas' appliers
//! are stopped and started under them. A read must always see the last
//! write to its table (never stale, never 1054 after an ALTER), while
//! reads of tables nobody writes still go to replicas without waiting. The
//! same pairs in `causal` mode do read stale rows, so the check can fail.
//! Tests run one at a time (they stop the replicas' appliers).

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use support::cache::{replicas_sql, route};

static SERIAL: Mutex<()> = Mutex::const_new(());

/// A proxy in `mode` whose binlog reader follows the primary.
async fn proxy(mode: &str) -> support::TestProxy {
    proxy_with(mode, "").await
}

/// [`proxy`] with more `[routing]` keys.
async fn proxy_with(mode: &str, routing: &str) -> support::TestProxy {
    let mode = mode.to_string();
    let routing = routing.to_string();
    let p = support::start_proxy_with(move |t| {
        format!(
            "{t}\n[routing]\nconsistency = \"{mode}\"\nwait_timeout_ms = 50\n{routing}\n[binlog]\nuser = \"repl\"\npassword = \"replpw\"\n"
        )
    })
    .await;
    p.proxy.binlog.want();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.proxy.binlog.processed().1 {
        assert!(
            Instant::now() < deadline,
            "binlog reader never followed: {:?}",
            p.proxy.binlog.error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // replicas known to have what the reader started from
    let start = p.proxy.binlog.processed().0;
    loop {
        let topo = p.proxy.topology.load();
        if topo
            .replicas
            .iter()
            .all(|b| b.state.view.load().gtid_executed.contains(&start))
        {
            break;
        }
        assert!(Instant::now() < deadline, "monitor never measured replicas");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p
}

async fn setup(db: &str) {
    // a failed test may have left the appliers stopped or delayed
    source_delay(0).await;
    let mut c = support::direct_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    for t in ["t", "other", "quiet"] {
        c.query_drop(format!(
            "CREATE TABLE {db}.{t} (id INT PRIMARY KEY, v BIGINT NOT NULL)"
        ))
        .await
        .unwrap();
        c.query_drop(format!("INSERT INTO {db}.{t} VALUES (1, 0)"))
            .await
            .unwrap();
    }
    support::sync_replicas().await;
}

async fn appliers(running: bool) {
    replicas_sql(if running {
        "START REPLICA SQL_THREAD"
    } else {
        "STOP REPLICA SQL_THREAD"
    })
    .await;
}

/// Delays both replicas' appliers by `secs` (they keep replicating).
async fn source_delay(secs: u32) {
    replicas_sql("STOP REPLICA SQL_THREAD").await;
    replicas_sql(&format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {secs}"
    ))
    .await;
    replicas_sql("START REPLICA SQL_THREAD").await;
}

/// `pairs` write/read pairs on two connections; the appliers stop for 50
/// pairs, then run for 50. Returns (stale reads, reads served by a replica).
/// With `lag_of` (the reading proxy), each read waits [`window`] after the
/// write, and a stale read counts only if that proxy's binlog reader had
/// processed the write (the primary's executed set after it) before the
/// read was sent; stale reads it had not processed yet (beyond the window)
/// are printed.
async fn pairs(
    w: &mut mysql_async::Conn,
    r: &mut mysql_async::Conn,
    db: &str,
    pairs: u64,
    lag_of: Option<&support::TestProxy>,
) -> (u64, u64) {
    let mut pause = Duration::ZERO;
    let (mut stale, mut on_replica, mut beyond, mut unprocessed) = (0, 0, 0, 0);
    let mut primary = support::direct_conn().await;
    let mut routes = std::collections::BTreeMap::<String, u64>::new();
    for i in 1..=pairs {
        if i % 50 == 1 {
            appliers((i / 50) % 2 == 1).await;
            if let Some(p) = lag_of {
                pause = window(p);
            }
        }
        w.query_drop(format!("UPDATE {db}.t SET v = {i} WHERE id = 1"))
            .await
            .unwrap();
        let mut processed = true;
        if let Some(p) = lag_of {
            let g: String = primary
                .query_first("SELECT @@GLOBAL.gtid_executed")
                .await
                .unwrap()
                .unwrap();
            let g = causeway_gtid::GtidSet::parse(&g.replace('\n', "")).unwrap();
            tokio::time::sleep(pause).await;
            processed = p.proxy.binlog.processed().0.contains(&g);
            if !processed {
                unprocessed += 1;
            }
        }
        let v: u64 = r
            .query_first(format!("SELECT v FROM {db}.t WHERE id = 1"))
            .await
            .unwrap()
            .unwrap();
        match (v != i, processed) {
            (true, true) => stale += 1,
            (true, false) => beyond += 1,
            _ => {}
        }
        let at = route(r).await;
        if at.starts_with("replica:") {
            on_replica += 1;
        }
        let kind = at
            .split(':')
            .filter(|s| *s != "r1" && *s != "r2")
            .collect::<Vec<_>>();
        *routes.entry(kind.join(":")).or_default() += 1;
    }
    println!("routes: {routes:?}");
    if lag_of.is_some() {
        println!(
            "window {pause:?}: {unprocessed} reads sent before the reader processed their write, {beyond} of them stale"
        );
    }
    appliers(true).await;
    (stale, on_replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fresh_pairs_on_two_connections_are_never_stale_and_causal_ones_are() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("fresh_pairs");
    setup(&db).await;
    let p = proxy("fresh").await;
    let (mut w, mut r) = (p.conn().await, p.conn().await);
    let (stale, on_replica) = pairs(&mut w, &mut r, &db, 1000, None).await;
    println!("fresh: {stale} stale of 1000, {on_replica} served by a replica");
    assert_eq!(stale, 0, "fresh reads returned stale rows");
    assert!(on_replica > 0, "no read went to a replica at all");
    drop(p);
    let p = proxy("causal").await;
    let (mut w, mut r) = (p.conn().await, p.conn().await);
    let (stale, _) = pairs(&mut w, &mut r, &db, 200, None).await;
    println!("causal: {stale} stale of 200");
    assert!(
        stale > 0,
        "causal mode read no stale row: the test cannot fail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ddl_on_one_connection_is_seen_by_reads_on_another() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("fresh_ddl");
    setup(&db).await;
    let p = proxy("fresh").await;
    let (mut a, mut b) = (p.conn().await, p.conn().await);
    for i in 0..20 {
        appliers(i % 2 == 1).await;
        a.query_drop(format!(
            "ALTER TABLE {db}.t ADD COLUMN c{i} INT DEFAULT {i}"
        ))
        .await
        .unwrap();
        let v: Option<i64> = b
            .query_first(format!("SELECT c{i} FROM {db}.t WHERE id = 1"))
            .await
            .unwrap_or_else(|e| panic!("read of new column c{i}: {e}"));
        assert_eq!(v, Some(i));
        // a renamed table too: both names count
        a.query_drop(format!("RENAME TABLE {db}.quiet TO {db}.q{i}"))
            .await
            .unwrap();
        let n: Option<i64> = b
            .query_first(format!("SELECT COUNT(*) FROM {db}.q{i}"))
            .await
            .unwrap_or_else(|e| panic!("read of renamed table q{i}: {e}"));
        assert_eq!(n, Some(1));
        a.query_drop(format!("RENAME TABLE {db}.q{i} TO {db}.quiet"))
            .await
            .unwrap();
    }
    appliers(true).await;
}

/// How long after a write a read waits: more than the reader's p99 lag
/// measured so far (3x, at least 10 ms: this 2-core box runs six builds).
fn window(p: &support::TestProxy) -> Duration {
    let (_, p99) = p.proxy.binlog.lag_quantiles().expect("lag measured");
    (p99 * 3).max(Duration::from_millis(10))
}

/// The reader's measured p99 lag (after some transactions).
async fn p99_lag(c: &mut mysql_async::Conn) -> Duration {
    let s: String = c
        .query_first("SELECT @@causeway.binlog_lag_ms")
        .await
        .unwrap()
        .expect("lag measured");
    let (p50, p99) = s.split_once(',').unwrap();
    println!("binlog reader lag: p50 {p50} ms, p99 {p99} ms");
    Duration::from_secs_f64(p99.parse::<f64>().unwrap() / 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_writes_on_the_primary_are_seen_after_the_reader_lag() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("fresh_direct");
    setup(&db).await;
    let p = proxy("fresh").await;
    let mut w = support::direct_conn().await;
    let mut r = p.conn().await;
    for i in 0..200 {
        w.query_drop(format!("UPDATE {db}.other SET v = {i} WHERE id = 1"))
            .await
            .unwrap();
    }
    p99_lag(&mut r).await;
    let (stale, on_replica) = pairs(&mut w, &mut r, &db, 500, Some(&p)).await;
    println!("direct writes: {stale} stale of 500, {on_replica} served by a replica");
    assert_eq!(stale, 0);
    p99_lag(&mut r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_another_instance_is_seen_after_the_reader_lag() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("fresh_b_to_a");
    setup(&db).await;
    let a = proxy("fresh").await;
    let b = proxy("fresh").await;
    let mut w = b.conn().await;
    let mut r = a.conn().await;
    for i in 0..200 {
        w.query_drop(format!("UPDATE {db}.other SET v = {i} WHERE id = 1"))
            .await
            .unwrap();
    }
    p99_lag(&mut r).await;
    let (stale, _) = pairs(&mut w, &mut r, &db, 300, Some(&a)).await;
    println!("B to A: {stale} stale of 300");
    assert_eq!(stale, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_of_untouched_tables_do_not_wait_for_writes_elsewhere() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("fresh_untouched");
    setup(&db).await;
    // the replicas lag on purpose (delayed appliers, still replicating, so
    // still eligible): a read needing the writes would wait
    let p = proxy_with("fresh", "max_lag_ms = 600000\n").await;
    let (mut w, mut r) = (p.conn().await, p.conn().await);
    let mut direct = support::direct_conn().await;
    source_delay(60).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p
        .proxy
        .topology
        .load()
        .replicas
        .iter()
        .all(|b| b.state.view.load().eligible)
    {
        assert!(Instant::now() < deadline, "replicas never eligible again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut replica, mut waited, mut total) = (0u64, 0u64, 0u64);
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for i in 0..1000u64 {
        if i % 10 == 0 {
            // 10% writes, through causeway and directly, to another table
            w.query_drop(format!("UPDATE {db}.other SET v = {i} WHERE id = 1"))
                .await
                .unwrap();
            direct
                .query_drop(format!("UPDATE {db}.other SET v = v + 1 WHERE id = 1"))
                .await
                .unwrap();
            continue;
        }
        let v: u64 = r
            .query_first(format!("SELECT v FROM {db}.quiet WHERE id = 1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 0);
        let at = route(&mut r).await;
        *kinds.entry(at.clone()).or_default() += 1;
        total += 1;
        if at.ends_with(":waited") {
            waited += 1;
        } else if at.starts_with("replica:") {
            replica += 1;
        }
    }
    // and a read of the written table does wait (or falls back)
    let v: u64 = r
        .query_first(format!("SELECT v FROM {db}.other WHERE id = 1"))
        .await
        .unwrap()
        .unwrap();
    let at = route(&mut r).await;
    source_delay(0).await;
    println!("untouched routes: {kinds:?}");
    let quiet = vec![format!("{db}.quiet")];
    println!(
        "reader error {:?}; quiet needs {}; processed {}",
        p.proxy.binlog.error(),
        p.proxy.binlog.need(Some(&quiet)).0,
        p.proxy.binlog.processed().0
    );
    println!("untouched: {replica} of {total} on a replica directly, {waited} waited; written table read via {at}");
    assert_eq!(v, 991);
    assert!(
        !at.starts_with("replica:") || at.ends_with(":waited"),
        "{at}"
    );
    assert_eq!(waited, 0);
    assert!(replica * 100 >= total * 99, "{replica} of {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tagged_gtids_do_not_stop_the_reader() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("fresh_tagged");
    setup(&db).await;
    let p = proxy("fresh").await;
    let mut root = support::root_conn().await;
    root.query_drop("SET gtid_next = 'AUTOMATIC:causeway_t'")
        .await
        .unwrap();
    root.query_drop(format!("UPDATE {db}.t SET v = 7 WHERE id = 1"))
        .await
        .unwrap();
    root.query_drop("SET gtid_next = 'AUTOMATIC'")
        .await
        .unwrap();
    let executed: String = root
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .unwrap()
        .unwrap();
    let executed = causeway_gtid::GtidSet::parse(&executed.replace('\n', "")).unwrap();
    assert!(executed.to_string().contains(":causeway_t:"), "{executed}");
    // the running reader decodes the tagged event and keeps following
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (processed, live) = p.proxy.binlog.processed();
        assert!(live, "reader stopped on a tagged GTID");
        if processed.contains(&executed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tagged GTID never processed: {processed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut r = p.conn().await;
    let v: u64 = r
        .query_first(format!("SELECT v FROM {db}.t WHERE id = 1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, 7);
    // a reader starting while the executed set holds a tagged GTID follows
    // (by position: SHOW BINARY LOG STATUS needs REPLICATION CLIENT, the
    // documented grant) and sees later writes
    let host: String = root
        .query_first("SELECT host FROM mysql.user WHERE user = 'repl' LIMIT 1")
        .await
        .unwrap()
        .unwrap();
    root.query_drop(format!(
        "GRANT REPLICATION CLIENT ON *.* TO 'repl'@'{host}'"
    ))
    .await
    .unwrap();
    let q = proxy("fresh").await;
    let mut w = support::direct_conn().await;
    w.query_drop(format!("UPDATE {db}.t SET v = 8 WHERE id = 1"))
        .await
        .unwrap();
    let after: String = w
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .unwrap()
        .unwrap();
    let after = causeway_gtid::GtidSet::parse(&after.replace('\n', "")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !q.proxy.binlog.processed().0.contains(&after) {
        assert!(
            Instant::now() < deadline,
            "restarted reader never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(q.proxy.binlog.processed().1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_of_a_view_waits_for_writes_to_its_base_table() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("fresh_view");
    setup(&db).await;
    let p = proxy("fresh").await;
    let (mut w, mut r) = (p.conn().await, p.conn().await);
    // created through causeway: known at once
    w.query_drop(format!("CREATE VIEW {db}.tv AS SELECT id, v FROM {db}.t"))
        .await
        .unwrap();
    let mut stale = 0;
    for i in 1..=100u64 {
        if i % 50 == 1 {
            appliers((i / 50) % 2 == 1).await;
        }
        w.query_drop(format!("UPDATE {db}.t SET v = {i} WHERE id = 1"))
            .await
            .unwrap();
        let v: u64 = r
            .query_first(format!("SELECT v FROM {db}.tv WHERE id = 1"))
            .await
            .unwrap()
            .unwrap();
        if v != i {
            stale += 1;
        }
    }
    appliers(true).await;
    println!("view: {stale} stale of 100");
    assert_eq!(stale, 0);
}
