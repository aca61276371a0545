//! Issue 10, case 6: a client's token must never become a weapon against a
//! backend. Against real MySQL: huge tokens (1 MB, 10 MB; `SET` and comment
//! forms) are refused at once and never reach a replica; `wait_timeout_ms`
//! is capped; KILL QUERY / KILL CONNECTION end a causal wait, on the
//! replica too; a wait asks a replica only for what it lacks; a replica that
//! refuses the monitor with 1040 is not healthy. Tests change replication
//! or connection limits, so they run one at a time.

#[path = "support/mod.rs"]
mod support;

use causeway_gtid::GtidSet;
use mysql_async::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::external::ExternalProxy;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// A UUID the sandbox's servers never issued.
const FOREIGN: &str = "3E11FA47-71CA-11E1-9E33-C80AA9429562";

/// One UUID followed by disjoint intervals `:1:3:5...` up to `bytes` long.
fn token_of_size(bytes: usize) -> (String, usize) {
    let mut s = format!("{FOREIGN}:1");
    let mut n = 1usize;
    while s.len() < bytes {
        s.push_str(&format!(":{}", 2 * n + 1));
        n += 1;
    }
    (s, n)
}

fn server_error(r: Result<(), mysql_async::Error>) -> mysql_async::ServerError {
    match r {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("server error expected, got {other:?}"),
    }
}

async fn replicas_sql(sql: &str) {
    for r in support::topology().replicas() {
        r.conn().await.unwrap().query_drop(sql).await.unwrap();
    }
}

/// Replica statements running `WAIT_FOR_EXECUTED_GTID_SET` whose text
/// matches `like`, over all replicas: (count, longest INFO).
async fn waits_on_replicas(like: &str) -> (i64, i64) {
    let (mut n, mut longest) = (0, 0);
    for r in support::topology().replicas() {
        let mut c = r.conn().await.unwrap();
        let row: Option<(i64, Option<i64>)> = c
            .exec_first(
                "SELECT COUNT(*), MAX(LENGTH(INFO)) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE 'SELECT WAIT_FOR_EXECUTED_GTID_SET%' AND INFO LIKE ?",
                (like,),
            )
            .await
            .unwrap();
        let (c, l) = row.unwrap();
        n += c;
        longest = longest.max(l.unwrap_or(0));
    }
    (n, longest)
}

/// How many `WAIT_FOR_EXECUTED_GTID_SET` statements the replicas ran so far
/// (performance_schema's digest summary).
async fn waits_run_on_replicas() -> u64 {
    let mut n = 0;
    for r in support::topology().replicas() {
        let mut c = r.conn().await.unwrap();
        let v: Option<Option<u64>> = c
            .query_first(
                "SELECT CAST(SUM(COUNT_STAR) AS UNSIGNED) \
                 FROM performance_schema.events_statements_summary_by_digest \
                 WHERE DIGEST_TEXT LIKE '%WAIT_FOR_EXECUTED_GTID_SET%'",
            )
            .await
            .unwrap();
        n += v.flatten().unwrap_or(0);
    }
    n
}

/// Polls the replicas' process lists until `stop`, recording the longest
/// `WAIT_FOR_EXECUTED_GTID_SET` statement seen.
fn watch_replica_waits(stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, i64)> {
    tokio::spawn(async move {
        let (mut polls, mut longest) = (0u64, 0i64);
        while !stop.load(Ordering::Relaxed) {
            let (_, l) = waits_on_replicas("%").await;
            longest = longest.max(l);
            polls += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (polls, longest)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_tokens_are_refused_at_once_and_never_reach_a_replica() {
    let _g = SERIAL.lock().await;
    let mut proxy = ExternalProxy::start(|t| t).await;
    proxy.assert_served_within(Duration::from_secs(5)).await;
    let idle_hwm = proxy.vm_hwm_kib();
    let mut c = mysql_async::Conn::new(proxy.opts("app", "apppw"))
        .await
        .unwrap();
    let route_before: String = c
        .query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap();
    let waits_before = waits_run_on_replicas().await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_replica_waits(Arc::clone(&stop));
    let served_max = Arc::new(AtomicU64::new(0));
    for (bytes, label) in [(1 << 20, "1 MB"), (10 << 20, "10 MB")] {
        let (token, intervals) = token_of_size(bytes);
        if label == "10 MB" {
            assert!(intervals > 1_300_000, "{intervals} intervals");
        }
        for form in ["set", "comment"] {
            let sql = match form {
                "set" => format!("SET @@causeway.token = '{token}'"),
                _ => format!("/* causeway token={token} */ SELECT 1"),
            };
            // a control client is served while the hostile statement runs
            let control = {
                let opts = proxy.opts("app", "apppw");
                let served_max = Arc::clone(&served_max);
                tokio::spawn(async move {
                    let t = Instant::now();
                    let mut c = mysql_async::Conn::new(opts).await.unwrap();
                    let v: Option<i64> = c.query_first("SELECT 1").await.unwrap();
                    assert_eq!(v, Some(1));
                    let took = t.elapsed();
                    served_max.fetch_max(took.as_millis() as u64, Ordering::Relaxed);
                    took
                })
            };
            let started = Instant::now();
            let e = server_error(c.query_drop(&sql).await);
            let took = started.elapsed();
            eprintln!("{label} token ({form} form, {intervals} intervals): refused in {took:?}");
            assert_eq!(
                (e.code, e.state.as_str()),
                (1231, "42000"),
                "{label} {form}"
            );
            assert!(e.message.contains("65536 bytes"), "{}", e.message);
            assert!(
                e.message.len() < 600,
                "message echoes the value: {} bytes",
                e.message.len()
            );
            assert!(took < Duration::from_secs(5), "{label} {form}: {took:?}");
            let control_took = tokio::time::timeout(Duration::from_secs(5), control)
                .await
                .expect("control client finished")
                .unwrap();
            assert!(
                control_took < Duration::from_secs(1),
                "control client took {control_took:?}"
            );
        }
    }
    // under the byte limit but over the interval limit, also refused
    let (many, _) = token_of_size(60_000);
    let e = server_error(
        c.query_drop(format!("SET @@causeway.token = '{many}'"))
            .await,
    );
    assert_eq!(e.code, 1231);
    assert!(e.message.contains("4096 intervals"), "{}", e.message);
    // nothing was sent anywhere for this session, and its token is unchanged
    let route: String = c
        .query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(route, route_before, "a refused statement reached a backend");
    assert_eq!(
        waits_run_on_replicas().await,
        waits_before,
        "a replica ran a wait"
    );
    let tok: String = c
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tok, "");
    stop.store(true, Ordering::Relaxed);
    let (polls, longest) = watcher.await.unwrap();
    assert!(polls > 0);
    assert!(longest < 1024, "a replica ran a wait of {longest} bytes");
    eprintln!(
        "control clients served within {} ms; VmHWM idle {idle_hwm} KiB, after {} KiB",
        served_max.load(Ordering::Relaxed),
        proxy.vm_hwm_kib()
    );
    proxy.assert_healthy_after_attack(idle_hwm).await;
}

/// Starts `SELECT 1` with an unreachable token on `c` in a task; returns once
/// a replica runs its wait.
async fn blocked_causal_read(
    mut c: mysql_async::Conn,
) -> tokio::task::JoinHandle<(Result<Option<i64>, mysql_async::Error>, Instant)> {
    c.query_drop("SET @@causeway.consistency = 'causal'")
        .await
        .unwrap();
    c.query_drop("SET @@causeway.wait_timeout_ms = 60000")
        .await
        .unwrap();
    c.query_drop(format!("SET @@causeway.token = '{FOREIGN}:1'"))
        .await
        .unwrap();
    let read = tokio::spawn(async move {
        let r = c.query_first::<i64, _>("SELECT 1").await;
        (r, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while waits_on_replicas("%3e11fa47-71ca-11e1-9e33-c80aa9429562%")
        .await
        .0
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the causal wait never started on a replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    read
}

/// Waits (bounded) until no replica runs a wait for the foreign UUID.
async fn no_wait_left() -> Duration {
    let started = Instant::now();
    while waits_on_replicas("%3e11fa47%").await.0 > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the replica-side wait outlived the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeout_is_capped_and_kill_ends_a_causal_wait_on_the_replica() {
    let _g = SERIAL.lock().await;
    let proxy = support::start_proxy().await;
    let mut c = proxy.conn().await;
    let e = server_error(
        c.query_drop("SET @@causeway.wait_timeout_ms = 999999999")
            .await,
    );
    assert_eq!((e.code, e.state.as_str()), (1231, "42000"));
    assert!(e.message.contains("60000"), "{}", e.message);
    let ms: String = c
        .query_first("SELECT @@causeway.wait_timeout_ms")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ms, "1000", "not silently clamped");

    let waits_at_start = waits_run_on_replicas().await;
    // KILL QUERY: 1317 within 2 s, the replica's wait is gone, the session lives
    let id = c.id();
    let read = blocked_causal_read(c).await;
    let mut killer = proxy.conn().await;
    let killed_at = Instant::now();
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (r, ended) = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the read ended")
        .unwrap();
    let took = ended - killed_at;
    let e = match r {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("1317 expected, got {other:?}"),
    };
    assert_eq!((e.code, e.state.as_str()), (1317, "70100"), "{}", e.message);
    assert!(took < Duration::from_secs(2), "KILL QUERY took {took:?}");
    let gone = no_wait_left().await;
    eprintln!("KILL QUERY ended the read in {took:?}; replica wait gone after {gone:?}");

    // KILL CONNECTION: the client sees its connection closed, likewise fast
    let c = proxy.conn().await;
    let id = c.id();
    let read = blocked_causal_read(c).await;
    let killed_at = Instant::now();
    killer
        .query_drop(format!("KILL CONNECTION {id}"))
        .await
        .unwrap();
    let (r, ended) = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the read ended")
        .unwrap();
    let took = ended - killed_at;
    assert!(
        matches!(
            r,
            Err(mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))
        ),
        "connection closed expected, got {r:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "KILL CONNECTION took {took:?}"
    );
    let gone = no_wait_left().await;
    eprintln!("KILL CONNECTION ended the read in {took:?}; replica wait gone after {gone:?}");
    // the client vanishes mid-wait: the replica's wait ends with it
    assert!(
        waits_run_on_replicas().await >= waits_at_start + 2,
        "the digest count sees the killed waits"
    );
    let c = proxy.conn().await;
    let read = blocked_causal_read(c).await;
    read.abort();
    let _ = read.await;
    let gone = no_wait_left().await;
    eprintln!("client gone: replica wait gone after {gone:?}");
    // the killer's own session is unaffected
    let one: Option<i64> = killer.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

fn view_of(proxy: &support::TestProxy, name: &str) -> Arc<causeway::topology::View> {
    let topo = proxy.proxy.topology.load();
    topo.backend(name).unwrap().state.view.load_full()
}

async fn gtid_executed(c: &mut mysql_async::Conn) -> GtidSet {
    let s: String = c
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .unwrap()
        .unwrap();
    GtidSet::parse(&s).unwrap()
}

/// Waits (bounded) until the monitor's view of each replica has the
/// `gtid_executed` the replica reports.
async fn monitor_saw_each_replica(proxy: &support::TestProxy) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for r in support::topology().replicas() {
        let have = gtid_executed(&mut r.conn().await.unwrap()).await;
        while *view_of(proxy, r.name()).gtid_executed != have {
            assert!(Instant::now() < deadline, "monitor never saw {}", r.name());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The replica running a `WAIT_FOR_EXECUTED_GTID_SET` now (bounded, 20 s),
/// and the statement it runs.
async fn wait_on_a_replica() -> (&'static causeway_sandbox::Server, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for r in support::topology().replicas() {
            let mut rc = r.conn().await.unwrap();
            let info: Option<String> = rc
                .query_first(
                    "SELECT INFO FROM information_schema.PROCESSLIST \
                     WHERE INFO LIKE 'SELECT WAIT_FOR_EXECUTED_GTID_SET%'",
                )
                .await
                .unwrap();
            if let Some(info) = info {
                return (r, info);
            }
        }
        assert!(Instant::now() < deadline, "no wait reached a replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_causal_wait_asks_a_replica_only_for_what_it_lacks() {
    let _g = SERIAL.lock().await;
    let db = support::unique_db("lack");
    let proxy = support::start_proxy_with(|t| {
        t + "[routing]\nmax_lag_ms = 600000\nlag_hysteresis_ms = 1000\n"
    })
    .await;
    replicas_sql("START REPLICA SQL_THREAD").await;
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE kv (k INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    support::sync_replicas().await;
    replicas_sql("STOP REPLICA SQL_THREAD").await;
    monitor_saw_each_replica(&proxy).await;
    c.query_drop("INSERT INTO kv VALUES (1, 10)").await.unwrap();
    c.query_drop("SET @@causeway.wait_timeout_ms = 60000")
        .await
        .unwrap();
    let token: String = c
        .query_first("SELECT @@causeway.token")
        .await
        .unwrap()
        .unwrap();
    let token = GtidSet::parse(&token).unwrap();
    let read = tokio::spawn(async move {
        let v: Option<i32> = c.query_first("SELECT v FROM kv WHERE k = 1").await.unwrap();
        (v, c)
    });
    // the wait's argument is exactly what the replica lacks
    let (replica, info) = wait_on_a_replica().await;
    let have = gtid_executed(&mut replica.conn().await.unwrap()).await;
    let missing = token.difference(&have);
    assert!(!missing.is_empty());
    assert_eq!(
        info,
        format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{missing}', 60.000)"),
        "token {token}, replica has {have}"
    );
    assert!(
        missing.count() < token.count(),
        "only the missing part ({missing}) of {token}"
    );
    eprintln!("token {token}; replica has {have}; wait sent for {missing}");
    replicas_sql("START REPLICA SQL_THREAD").await;
    let (v, mut c) = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the read finished")
        .unwrap();
    assert_eq!(v, Some(10), "read-your-write");
    let route: String = c
        .query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(route, format!("replica:{}:waited", replica.name()));
    // once the monitor sees the replica caught up, no wait is sent at all
    support::sync_replicas().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !view_of(&proxy, replica.name())
        .gtid_executed
        .contains(&token)
    {
        assert!(Instant::now() < deadline, "monitor never saw the catch-up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v: Option<i32> = c.query_first("SELECT v FROM kv WHERE k = 1").await.unwrap();
    assert_eq!(v, Some(10));
    let route: String = c
        .query_first("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap();
    assert!(
        route.starts_with("replica:") && !route.ends_with(":waited"),
        "{route}"
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// GET `path` from the admin endpoint at `port`; the body.
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

fn eligible_metric(metrics: &str, backend: &str) -> Option<String> {
    let key = format!("causeway_backend_eligible{{backend=\"{backend}\"}}");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key).map(|v| v.trim().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refusing_the_monitor_with_1040_is_not_healthy() {
    let _g = SERIAL.lock().await;
    let admin = support::external::free_port();
    let mut proxy = ExternalProxy::start(|t| {
        t.replace(
            "[admin]\nenabled = false",
            &format!("[admin]\nenabled = true\nlisten = \"127.0.0.1:{admin}\""),
        )
    })
    .await;
    let r = &support::topology().replicas()[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    while eligible_metric(&http_get(admin, "/metrics").await, r.name()).as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "replica never eligible");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut root = r.conn().await.unwrap();
    let connected: (String, String) = root
        .query_first("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        .await
        .unwrap()
        .unwrap();
    let limit = connected.1.parse::<u32>().unwrap() + 2;
    root.query_drop(format!("SET GLOBAL max_connections = {limit}"))
        .await
        .unwrap();
    // fill the replica until an ordinary login gets 1040
    let mut fillers = Vec::new();
    let refused = loop {
        match mysql_async::Conn::new(support::opts(r.port(), "app", "apppw", None)).await {
            Ok(c) => fillers.push(c),
            Err(mysql_async::Error::Server(e)) => break e,
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(fillers.len() < 50, "the replica never refused");
    };
    assert_eq!(refused.code, 1040);
    // the monitor must reconnect: end its connection
    let ids: Vec<u64> = root
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'monitor'")
        .await
        .unwrap();
    for id in ids {
        let _ = root.query_drop(format!("KILL {id}")).await;
    }
    let started = Instant::now();
    let res = async {
        while eligible_metric(&http_get(admin, "/metrics").await, r.name()).as_deref() != Some("0")
        {
            if started.elapsed() > Duration::from_secs(20) {
                return Err("replica still eligible while refusing the monitor with 1040");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(started.elapsed())
    }
    .await;
    // restore before asserting, so a failure leaves the replica usable
    drop(fillers);
    root.query_drop("SET GLOBAL max_connections = 2000")
        .await
        .unwrap();
    let took = res.unwrap();
    eprintln!("replica ineligible {took:?} after the monitor was refused with 1040");
    let log = proxy.log();
    assert!(
        log.contains("overloaded") && log.contains("1040"),
        "the log names the case:\n{log}"
    );
    assert!(!log.contains("treating it as healthy"), "{log}");
    for line in log.lines().filter(|l| l.contains("not healthy")) {
        eprintln!("log: {line}");
    }
    // and it comes back once it accepts the monitor again
    let deadline = Instant::now() + Duration::from_secs(20);
    while eligible_metric(&http_get(admin, "/metrics").await, r.name()).as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "replica never re-admitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.assert_alive();
    proxy.assert_no_panic();
}
