//! The control-plane monitor against real MySQL: GTID sets follow writes,
//! idle replicas report ~0 lag, a stopped applier or a delayed replica is
//! excluded for lag and re-admitted with hysteresis (lag held between the
//! thresholds keeps it out), a killed replica is
//! excluded within interval + connect timeout and re-admitted after restart,
//! reloads keep unchanged tasks, and an account the server refuses fails
//! open without inventing GTIDs. Tests that break replication or kill
//! servers start their own one-replica topology.

#[path = "support/mod.rs"]
mod support;

use causeway::monitor::{Monitor, MonitorError};
use causeway::topology::{Backend, Topology, View};
use causeway_config::Config;
use causeway_gtid::GtidSet;
use causeway_sandbox::{Options, Server, Topology as Sandbox};
use mysql_async::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A causeway topology in front of `sb`; `tweak` edits the config text.
fn build(sb: &Sandbox, tweak: impl FnOnce(String) -> String) -> Arc<Topology> {
    let text = tweak(support::config_text(sb));
    let config = Config::from_str_named(&text, "monitor-test.toml").expect("test config");
    Arc::new(Topology::build(Arc::new(config), None).expect("topology"))
}

/// Adds monitor keys after the monitor password and a `[routing]` section.
fn timings(monitor: &str, routing: &str) -> impl FnOnce(String) -> String {
    let (monitor, routing) = (monitor.to_string(), routing.to_string());
    move |t: String| {
        let t = t.replacen(
            "password = \"monitorpw\"\n",
            &format!("password = \"monitorpw\"\n{monitor}\n"),
            1,
        );
        format!("{t}\n[routing]\n{routing}\n")
    }
}

fn view(b: &Backend) -> Arc<View> {
    b.state.view.load_full()
}

/// Polls `cond` on the backend's view (woken by its Notify, and at least
/// every 20 ms) until it holds; returns the view and the time it took.
async fn wait_for(
    b: &Backend,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&View) -> bool,
) -> (Arc<View>, Duration) {
    let start = Instant::now();
    loop {
        let notified = b.state.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let v = view(b);
        if cond(&v) {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "{}: not '{what}' within {timeout:?}; view: {v:?}",
            b.name()
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
    }
}

const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

async fn root(server: &Server) -> mysql_async::Conn {
    server.conn().await.expect("root connection")
}

async fn gtid_executed(conn: &mut mysql_async::Conn) -> GtidSet {
    let s: String = conn
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .unwrap()
        .unwrap();
    GtidSet::parse(&s).unwrap()
}

/// Runs a write on the primary and returns its gtid_executed right after.
async fn write(conn: &mut mysql_async::Conn, db: &str) -> GtidSet {
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .await
        .unwrap();
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {db}.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"
    ))
    .await
    .unwrap();
    conn.query_drop(format!("INSERT INTO {db}.t (v) VALUES (1)"))
        .await
        .unwrap();
    gtid_executed(conn).await
}

#[test]
fn start_needs_a_runtime() {
    let sb = support::topology();
    let topo = build(sb, |t| t);
    assert!(matches!(
        Monitor::start(&topo),
        Err(MonitorError::NoRuntime)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtid_sets_follow_writes_and_notify_fires() {
    let sb = support::topology();
    let topo = build(sb, |t| t);
    let monitor = Monitor::start(&topo).unwrap();
    for b in topo.backends() {
        wait_for(b, Duration::from_secs(10), "measured", |v| {
            v.measured_at.is_some() && v.reachable && v.eligible
        })
        .await;
    }
    let mut conn = root(sb.primary()).await;
    let db = support::unique_db("mon_gtid");
    for _ in 0..3 {
        let primary = &topo.primary;
        let notified = primary.state.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let wanted = write(&mut conn, &db).await;
        // The Notify fires for the change (the poll runs every 50 ms).
        tokio::time::timeout(Duration::from_secs(2), notified)
            .await
            .expect("the primary's Notify fired after a write");
        let (v, took) = wait_for(primary, Duration::from_secs(2), "has the write", |v| {
            v.gtid_executed.contains(&wanted)
        })
        .await;
        assert!(
            took <= Duration::from_millis(250),
            "primary view took {took:?}"
        );
        assert!(v.reachable && v.eligible && !v.read_only);
        for r in &topo.replicas {
            let (v, _) = wait_for(r, Duration::from_secs(10), "replicated the write", |v| {
                v.gtid_executed.contains(&wanted)
            })
            .await;
            assert!(v.read_only, "sandbox replicas are read_only");
            assert!(v.replicating);
        }
    }
    // The views hold exactly what the servers report.
    for (b, s) in topo.backends().zip(sb.servers()) {
        let mut c = root(s).await;
        let direct = gtid_executed(&mut c).await;
        wait_for(b, Duration::from_secs(10), "equals the server's set", |v| {
            v.gtid_executed.contains(&direct)
        })
        .await;
    }
    let stats = monitor.stats();
    assert_eq!(stats.len(), 3);
    assert_eq!(stats[0].name, "primary");
    assert!(stats.iter().all(|s| s.checks > 0 && s.connects >= 1));
    monitor.shutdown().await;
    assert!(monitor.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_caught_up_replicas_report_near_zero_lag() {
    let sb = support::topology();
    let topo = build(sb, |t| t);
    let _monitor = Monitor::start(&topo).unwrap();
    wait_for(&topo.primary, Duration::from_secs(10), "lag 0", |v| {
        v.lag_ms == Some(0)
    })
    .await;
    for r in &topo.replicas {
        let (v, _) = wait_for(r, Duration::from_secs(10), "lag <= 100 ms", |v| {
            v.lag_ms.is_some_and(|l| l <= 100) && v.eligible
        })
        .await;
        assert!(v.replicating && v.reachable, "{v:?}");
    }
}

/// Writes a row on the primary every 100 ms until `stop`; returns how many.
fn steady_writer(
    mut conn: mysql_async::Conn,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            write(&mut conn, "lagband").await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n
    })
}

/// Sets the replica's SOURCE_DELAY (seconds), with replication running.
async fn source_delay(r1: &mut mysql_async::Conn, seconds: u32) {
    r1.query_drop("STOP REPLICA").await.unwrap();
    r1.query_drop(format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_DELAY = {seconds}"
    ))
    .await
    .unwrap();
    r1.query_drop("START REPLICA").await.unwrap();
}

/// Budget 6000 ms, hysteresis 5000 ms: a replica excluded for lag comes
/// back only below 1000 ms. Its lag is held between the thresholds (2 to
/// 4 s: SOURCE_DELAY = 2, applied in whole seconds, under a steady write
/// every 100 ms, on a loaded host) for 3 s, during which it must stay out;
/// it returns once the writes stop and it catches up, with a lag under
/// 1000 ms. A delay of 7 s then excludes a replica whose threads run, for
/// lag alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_is_excluded_and_readmitted_with_hysteresis() {
    let sb = Sandbox::start(Options::with_replicas(1)).await.unwrap();
    let topo = build(
        &sb,
        timings(
            "interval_ms = 200",
            "max_lag_ms = 6000\nlag_hysteresis_ms = 5000",
        ),
    );
    let _monitor = Monitor::start(&topo).unwrap();
    let replica = &topo.replicas[0];
    let ten = Duration::from_secs(10);
    wait_for(replica, ten, "eligible", |v| {
        v.eligible && v.lag_ms == Some(0)
    })
    .await;
    let mut primary = root(sb.primary()).await;
    let mut r1 = root(&sb.replicas()[0]).await;

    // 1. A stopped applier: not replicating, lag grows past the budget. A
    // steady writer runs from here on, so that when the applier restarts
    // 2 s behind there is always a write it lacks that is over 1 s old.
    r1.query_drop("STOP REPLICA SQL_THREAD").await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = steady_writer(root(sb.primary()).await, Arc::clone(&stop));
    wait_for(replica, ten, "not replicating", |v| {
        !v.replicating && !v.eligible
    })
    .await;
    let wanted = write(&mut primary, "lag1").await;
    let (v, _) = wait_for(replica, ten, "lag > 6000", |v| {
        v.lag_ms.is_some_and(|l| l > 6000)
    })
    .await;
    assert!(!v.eligible && !v.gtid_executed.contains(&wanted), "{v:?}");

    // 2. The applier runs again, 2 s behind the steady writer: lag between
    // budget - hysteresis and the budget, so it stays excluded.
    source_delay(&mut r1, 2).await;
    let in_band = |l: u64| (1000..6000).contains(&l);
    wait_for(replica, ten, "replicating, lag in 1000..6000", |v| {
        v.replicating && v.lag_ms.is_some_and(in_band)
    })
    .await;
    let held = Instant::now();
    let mut samples = Vec::new();
    while held.elapsed() < Duration::from_secs(3) {
        let v = view(replica);
        samples.push(v.lag_ms);
        assert!(
            v.replicating && v.reachable && v.lag_ms.is_some_and(in_band),
            "lag held between the thresholds: {v:?}"
        );
        assert!(
            !v.eligible,
            "readmitted at lag {:?} ms (>= 1000): {v:?}",
            v.lag_ms
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lags: Vec<u64> = samples.iter().flatten().copied().collect();
    lags.dedup();
    assert!(
        lags.len() >= 2,
        "the monitor published the lag as it moved: {lags:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.unwrap();
    let wanted = gtid_executed(&mut primary).await;

    // 3. The writes stop: it catches up and comes back below 1000 ms.
    let (v, _) = wait_for(replica, ten, "eligible again", |v| v.eligible).await;
    assert!(v.replicating && v.lag_ms.is_some_and(|l| l < 1000), "{v:?}");
    println!(
        "held out for 3 s at lag {lags:?} ms over {writes} writes; back at {:?} ms",
        v.lag_ms
    );
    let (v, _) = wait_for(replica, ten, "caught up", |v| {
        v.gtid_executed.contains(&wanted)
    })
    .await;
    assert!(v.eligible, "{v:?}");

    // 4. A delayed replica: threads run, only lag excludes it, and it returns
    // once it has caught up.
    source_delay(&mut r1, 7).await;
    wait_for(replica, ten, "replicating again", |v| {
        v.replicating && v.eligible
    })
    .await;
    let wanted = write(&mut primary, "lag2").await;
    let (v, _) = wait_for(replica, ten, "excluded for lag", |v| !v.eligible).await;
    assert!(v.replicating && v.reachable, "only lag excludes it: {v:?}");
    assert!(v.lag_ms.is_some_and(|l| l > 6000), "{v:?}");
    let (v, _) = wait_for(replica, ten, "caught up", |v| v.eligible).await;
    assert!(v.gtid_executed.contains(&wanted), "{v:?}");
    assert!(v.lag_ms.is_some_and(|l| l < 1000), "{v:?}");
    source_delay(&mut r1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_or_killed_replica_is_excluded_then_readmitted() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("causeway=debug")
        .with_test_writer()
        .try_init();
    let sb = Sandbox::start(Options::with_replicas(1)).await.unwrap();
    let topo = build(
        &sb,
        timings("interval_ms = 300\nconnect_timeout_ms = 500", ""),
    );
    let monitor = Monitor::start(&topo).unwrap();
    let replica = &topo.replicas[0];
    let ten = Duration::from_secs(10);
    wait_for(replica, ten, "measured and eligible", |v| {
        v.measured_at.is_some() && v.eligible
    })
    .await;

    // A hung server (SIGSTOP): the query times out, no retry.
    let pid = sb.replicas()[0].pid().unwrap();
    causeway_sandbox::process::signal(pid, SIGSTOP);
    let (v, took) = wait_for(replica, ten, "hung: unreachable", |v| !v.reachable).await;
    causeway_sandbox::process::signal(pid, SIGCONT);
    assert!(!v.eligible && v.last_error.is_some(), "{v:?}");
    assert!(
        took <= Duration::from_millis(300 + 500 + 300),
        "took {took:?}"
    );
    wait_for(replica, ten, "resumed: eligible", |v| v.eligible).await;

    sb.replicas()[0].kill();
    let (v, took) = wait_for(replica, ten, "unreachable", |v| !v.reachable).await;
    assert!(!v.eligible && v.last_error.is_some(), "{v:?}");
    assert!(v.lag_ms.is_none());
    // interval + connect timeout, plus scheduling slack
    assert!(
        took <= Duration::from_millis(300 + 500 + 300),
        "took {took:?}"
    );
    // The primary is unaffected.
    assert!(view(&topo.primary).eligible);

    sb.replicas()[0].start().await.unwrap();
    let (v, _) = wait_for(replica, Duration::from_secs(30), "eligible again", |v| {
        v.eligible
    })
    .await;
    assert!(
        v.reachable && v.replicating && v.last_error.is_none(),
        "{v:?}"
    );
    let replica_stats = monitor
        .stats()
        .into_iter()
        .find(|s| s.name == "r1")
        .unwrap();
    assert!(
        replica_stats.failures > 0 && replica_stats.connects >= 2,
        "{replica_stats:?} {:?}",
        view(replica)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_keeps_unchanged_tasks_and_stops_removed_ones() {
    let sb = support::topology();
    let topo = build(sb, |t| t);
    let monitor = Monitor::start(&topo).unwrap();
    assert_eq!(monitor.len(), 3);
    for b in topo.backends() {
        wait_for(b, Duration::from_secs(10), "measured", |v| {
            v.measured_at.is_some()
        })
        .await;
    }
    // Reload: drop r2, change the lag budget of r1 (same address: same state).
    let text = support::config_text(sb);
    let cut = text.find("[[replicas]]\nname = \"r2\"").unwrap();
    let text = text[..cut].replace("weight = 1\n", "weight = 1\nmax_lag_ms = 4000\n");
    let config = Config::from_str_named(&text, "reload.toml").unwrap();
    let next = Arc::new(Topology::build(Arc::new(config), Some(&topo)).unwrap());
    assert!(Arc::ptr_eq(&next.primary.state, &topo.primary.state));
    assert!(Arc::ptr_eq(
        &next.replicas[0].state,
        &topo.replicas[0].state
    ));
    let before = monitor.stats();
    monitor.sync(&next);
    assert_eq!(monitor.len(), 2);
    let after = monitor.stats();
    assert_eq!(after.len(), 2);
    for s in &after {
        let old = before.iter().find(|b| b.name == s.name).unwrap();
        assert!(s.checks >= old.checks, "{} restarted", s.name);
        assert_eq!(s.connects, old.connects, "{} reconnected", s.name);
    }
    // r2's task stopped: its view is no longer refreshed.
    let r2 = &topo.replicas[1];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let frozen = view(r2).measured_at;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(view(r2).measured_at, frozen, "r2 still monitored");
    // ...while the others are (heartbeat at least once per interval).
    let fresh = view(&next.replicas[0]).measured_at.unwrap();
    assert!(fresh.elapsed() < Duration::from_millis(1300));
    monitor.stop();
    assert!(monitor.is_empty());
    monitor.sync(&next);
    assert!(monitor.is_empty(), "sync after stop is a no-op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_monitor_account_fails_open_without_gtids() {
    let sb = support::topology();
    let topo = build(sb, |t| {
        t.replacen("password = \"monitorpw\"", "password = \"wrong\"", 1)
    });
    let monitor = Monitor::start(&topo).unwrap();
    for b in topo.backends() {
        let (v, _) = wait_for(b, Duration::from_secs(10), "refused", |v| {
            v.last_error.is_some()
        })
        .await;
        assert!(v.reachable && v.eligible, "fails open: {v:?}");
        assert!(v.gtid_executed.is_empty(), "claims unread GTIDs: {v:?}");
        assert!(v.last_error.as_deref().unwrap().contains("denied"), "{v:?}");
    }
    drop(monitor);
}
