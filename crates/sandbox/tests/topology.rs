//! Integration tests for causeway-sandbox against real MySQL: replication,
//! replica restart, accounts, the mysql CLI, and parallel topologies.

use std::time::{Duration, Instant};

use causeway_sandbox::{Options, Server, Topology};
use mysql_async::prelude::Queryable;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(60);

async fn count(server: &Server, sql: &str) -> Result<i64> {
    let mut c = server.conn().await?;
    let n: Option<i64> = c.query_first(sql).await?;
    c.disconnect().await?;
    Ok(n.unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_primary_reach_both_replicas() -> Result {
    let t0 = Instant::now();
    let topo = Topology::start(Options::default()).await?;
    eprintln!("Topology::start took {:?}", t0.elapsed());
    assert_eq!(topo.replicas().len(), 2);
    assert_eq!(topo.primary().name(), "primary");
    assert_eq!(topo.replicas()[0].name(), "r1");
    assert_eq!(topo.replicas()[1].server_id(), 3);

    let mut c = topo.primary().conn().await?;
    c.query_drop("CREATE DATABASE t").await?;
    c.query_drop("CREATE TABLE t.x (id INT PRIMARY KEY, b LONGBLOB)")
        .await?;
    // A 20 MB row: max_allowed_packet must allow it end to end.
    let blob = vec![7u8; 20 << 20];
    c.exec_drop("INSERT INTO t.x VALUES (1, ?), (2, NULL)", (blob,))
        .await?;
    c.disconnect().await?;
    topo.wait_replicated(WAIT).await?;
    for r in topo.replicas() {
        assert_eq!(
            count(r, "SELECT COUNT(*) FROM t.x").await?,
            2,
            "{}",
            r.name()
        );
        assert_eq!(
            count(r, "SELECT LENGTH(b) FROM t.x WHERE id = 1").await?,
            20 << 20
        );
        let st = topo.replica_status(r).await?;
        assert!(st.running(), "{}: {st}", r.name());
        let mut c = r.conn().await?;
        let ro: Option<i64> = c.query_first("SELECT @@read_only").await?;
        assert_eq!(ro, Some(1));
        c.disconnect().await?;
    }

    // Accounts work everywhere (they come from the template).
    for s in topo.servers() {
        for (u, p) in [
            (causeway_sandbox::APP_USER, causeway_sandbox::APP_PASSWORD),
            (causeway_sandbox::NOPW_USER, causeway_sandbox::NOPW_PASSWORD),
            (
                causeway_sandbox::MONITOR_USER,
                causeway_sandbox::MONITOR_PASSWORD,
            ),
        ] {
            let mut c = mysql_async::Conn::new(s.opts_for(u, p)).await?;
            let g: Option<String> = c.query_first("SELECT @@GLOBAL.gtid_executed").await?;
            assert!(g.is_some());
            c.disconnect().await?;
        }
    }
    let r1 = &topo.replicas()[0];
    let mut m = mysql_async::Conn::new(r1.opts_for(
        causeway_sandbox::MONITOR_USER,
        causeway_sandbox::MONITOR_PASSWORD,
    ))
    .await?;
    m.query_drop("SHOW REPLICA STATUS").await?;
    let n: Option<i64> = m
        .query_first("SELECT COUNT(*) FROM performance_schema.replication_applier_status_by_worker")
        .await?;
    assert!(n.unwrap_or(0) >= 1);
    m.disconnect().await?;

    // The real mysql CLI.
    let out = topo
        .primary()
        .mysql_cli()
        .args(["-N", "-e", "SELECT COUNT(*) FROM t.x"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    let out = topo
        .dist()
        .mysql_client_command()
        .args([
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{}", r1.port()),
            "-uapp",
            "-papppw",
            "-N",
            "-e",
            "SELECT @@server_id",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_stop_start_and_kill() -> Result {
    let topo = Topology::start(Options::default()).await?;
    let p = topo.primary();
    let (r1, r2) = (&topo.replicas()[0], &topo.replicas()[1]);
    let port = r1.port();
    let mut c = p.conn().await?;
    c.query_drop("CREATE DATABASE test").await?;
    c.query_drop("CREATE TABLE test.y (id INT PRIMARY KEY)")
        .await?;
    c.disconnect().await?;
    topo.wait_replicated(WAIT).await?;

    r1.stop().await?;
    assert!(!r1.is_running());
    r2.kill();
    assert!(!r2.is_running());
    assert!(r1.conn().await.is_err());
    let mut c = p.conn().await?;
    c.query_drop("INSERT INTO test.y VALUES (1), (2), (3)")
        .await?;
    c.disconnect().await?;
    // Stopped replicas are skipped.
    topo.wait_replicated(WAIT).await?;

    r1.start().await?;
    r2.start().await?;
    assert_eq!(r1.port(), port);
    topo.wait_replicated(WAIT).await?;
    for r in [r1, r2] {
        assert_eq!(count(r, "SELECT COUNT(*) FROM test.y").await?, 3);
        let st = topo.replica_status(r).await?;
        assert!(st.running(), "{}: {st}", r.name());
    }
    // Primary restart keeps its data; replicas reconnect.
    p.stop().await?;
    p.start().await?;
    let mut c = p.conn().await?;
    c.query_drop("INSERT INTO test.y VALUES (4)").await?;
    c.disconnect().await?;
    topo.wait_replicated(WAIT).await?;
    assert_eq!(count(r2, "SELECT COUNT(*) FROM test.y").await?, 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_topologies_do_not_collide() -> Result {
    let (a, b) = tokio::join!(
        Topology::start(Options::with_replicas(1)),
        Topology::start(Options::with_replicas(1))
    );
    let (a, b) = (a?, b?);
    let mut ports: Vec<u16> = a.servers().chain(b.servers()).map(|s| s.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4);
    assert_ne!(a.dir(), b.dir());

    let mut c = a.primary().conn().await?;
    c.query_drop("CREATE DATABASE test").await?;
    c.query_drop("CREATE TABLE test.only_a (id INT PRIMARY KEY)")
        .await?;
    c.disconnect().await?;
    a.wait_replicated(WAIT).await?;
    b.wait_replicated(WAIT).await?;
    let q = "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'only_a'";
    assert_eq!(count(&a.replicas()[0], q).await?, 1);
    assert_eq!(count(&b.replicas()[0], q).await?, 0);
    assert_eq!(count(b.primary(), q).await?, 0);

    let dir = a.dir().to_path_buf();
    let pids: Vec<u32> = a.servers().filter_map(|s| s.pid()).collect();
    assert_eq!(pids.len(), 2);
    drop(a);
    assert!(!dir.exists(), "{} not removed", dir.display());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "mysqld {pid} still alive"
        );
    }
    // b is unaffected.
    assert_eq!(count(b.primary(), "SELECT 1").await?, 1);
    Ok(())
}

/// Default (current-thread) runtime and a primary without replicas.
#[tokio::test]
async fn lone_primary_on_current_thread_runtime() -> Result {
    let topo = Topology::start(Options::with_replicas(0)).await?;
    assert!(topo.replicas().is_empty());
    assert_eq!(count(topo.primary(), "SELECT @@server_id").await?, 1);
    assert_eq!(count(topo.primary(), "SELECT @@read_only").await?, 0);
    topo.wait_replicated(WAIT).await?;
    let port = topo.primary().port();
    topo.primary().kill();
    topo.primary().start().await?;
    assert_eq!(topo.primary().port(), port);
    assert_eq!(count(topo.primary(), "SELECT @@gtid_mode = 'ON'").await?, 1);
    Ok(())
}
