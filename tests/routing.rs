//! Read/write split against a real GTID topology: each routing rule proven
//! with `@@server_id` and `@@causeway.last_route`.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::collections::HashMap;

async fn server_ids() -> (u32, Vec<u32>) {
    let t = support::topology();
    let p = t.primary().server_id();
    (p, t.replicas().iter().map(|r| r.server_id()).collect())
}

async fn where_ran(c: &mut mysql_async::Conn) -> String {
    c.query_first::<String, _>("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap()
}

async fn sid(c: &mut mysql_async::Conn, sql: &str) -> u32 {
    c.query_first::<u32, _>(sql).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_over_replicas_by_weight() {
    // eventual: a causal session changes replica only once a bound of what
    // it read is known (monotonic reads), which back-to-back reads rarely
    // leave time for; the per-statement split itself is tested here
    let proxy = support::start_proxy_with(|t| {
        t.replacen("weight = 1", "weight = 3", 1)
            + "[routing]\nread_balance = \"statement\"\nconsistency = \"eventual\"\n"
    })
    .await;
    let (primary, replicas) = server_ids().await;
    let mut c = proxy.conn().await;
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for _ in 0..10_000 {
        *counts
            .entry(sid(&mut c, "SELECT @@server_id").await)
            .or_default() += 1;
    }
    assert_eq!(counts.get(&primary), None, "no plain read on the primary");
    let r1 = *counts.get(&replicas[0]).unwrap_or(&0) as f64;
    let r2 = *counts.get(&replicas[1]).unwrap_or(&0) as f64;
    assert!((r1 / 10_000.0 - 0.75).abs() <= 0.05, "r1 share {r1}");
    assert!((r2 / 10_000.0 - 0.25).abs() <= 0.05, "r2 share {r2}");
}

/// The default `read_balance = "session"`: consecutive sessions are spread
/// exactly by weight and each keeps its replica for all its reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_one_replica_and_spread_by_weight() {
    let proxy = support::start_proxy_with(|t| t.replacen("weight = 1", "weight = 3", 1)).await;
    let (primary, replicas) = server_ids().await;
    let mut sessions_on: HashMap<u32, u32> = HashMap::new();
    for _ in 0..8 {
        let mut c = proxy.conn().await;
        let first = sid(&mut c, "SELECT @@server_id").await;
        for _ in 0..20 {
            assert_eq!(sid(&mut c, "SELECT @@server_id").await, first);
        }
        assert_eq!(where_ran(&mut c).await.split(':').next(), Some("replica"));
        *sessions_on.entry(first).or_default() += 1;
        c.disconnect().await.unwrap();
    }
    assert_eq!(sessions_on.get(&primary), None);
    assert_eq!(sessions_on.get(&replicas[0]), Some(&6), "{sessions_on:?}");
    assert_eq!(sessions_on.get(&replicas[1]), Some(&2), "{sessions_on:?}");
}

/// Backend thread id serving `c` now (`+ 0`: causeway answers only the
/// bare `CONNECTION_ID()` itself).
async fn backend_id(c: &mut mysql_async::Conn) -> u64 {
    c.query_first("SELECT CONNECTION_ID() + 0")
        .await
        .unwrap()
        .unwrap()
}

/// Eight clients writing on the primary until `stop`: any primary
/// connection given back is taken by one of them at once.
fn churn_on_primary(
    proxy: &support::TestProxy,
    db: &str,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    (0..8)
        .map(|_| {
            let (opts, db, stop) = (proxy.opts("app", "apppw"), db.to_string(), stop.clone());
            tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(opts).await.unwrap();
                while !stop.load(Ordering::Relaxed) {
                    c.query_drop(format!("INSERT INTO {db}.churn VALUES ()"))
                        .await
                        .unwrap();
                }
                c.disconnect().await.unwrap();
            })
        })
        .collect()
}

/// Writes, locking reads and transactions run on the primary; a
/// transaction, explicit or opened by autocommit = 0, keeps one backend
/// connection from its first statement to its end while eight other
/// clients churn on a pool of two primary connections (transaction pool
/// mode, the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_locking_reads_and_transactions_use_the_primary() {
    let db = support::unique_db("rw");
    let proxy = support::start_proxy_with(|t| {
        t.replace(
            "connect_timeout_ms = 5000",
            "connect_timeout_ms = 30000\npool_max_per_backend = 2",
        )
    })
    .await;
    // the reads below expect replicas the monitor has measured
    support::delay::wait_eligible(&proxy.proxy).await;
    let (primary, replicas) = server_ids().await;
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    assert_eq!(where_ran(&mut c).await, "primary");
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, sid INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1, @@server_id)")
        .await
        .unwrap();
    assert_eq!(where_ran(&mut c).await, "primary");
    let s: u32 = c
        .query_first("SELECT sid FROM t WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s, primary, "the write ran on the primary");
    assert!(
        where_ran(&mut c).await.starts_with("replica:"),
        "plain read on a replica (causal wait)"
    );
    assert_eq!(
        sid(&mut c, "SELECT @@server_id FROM t WHERE id = 1 FOR UPDATE").await,
        primary
    );
    assert_eq!(
        sid(&mut c, "SELECT @@server_id FROM t LOCK IN SHARE MODE").await,
        primary
    );
    c.query_drop("CREATE TABLE churn (id INT PRIMARY KEY AUTO_INCREMENT)")
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let others = churn_on_primary(&proxy, &db, &stop);
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(20));
    c.query_drop("BEGIN").await.unwrap();
    let id = backend_id(&mut c).await;
    assert_eq!(
        sid(&mut c, "SELECT @@server_id").await,
        primary,
        "reads in a transaction"
    );
    c.query_drop("UPDATE t SET sid = 0").await.unwrap();
    pause().await;
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, primary);
    assert_eq!(backend_id(&mut c).await, id, "BEGIN: one connection");
    c.query_drop("COMMIT").await.unwrap();
    assert!(
        replicas.contains(&sid(&mut c, "SELECT @@server_id").await),
        "after COMMIT reads go back to replicas"
    );
    c.query_drop("SET autocommit = 0").await.unwrap();
    pause().await;
    // a table-less read opens no InnoDB transaction: MySQL leaves IN_TRANS
    // clear, the connection is held all the same
    assert_eq!(
        sid(&mut c, "SELECT @@server_id").await,
        primary,
        "autocommit=0"
    );
    let id = backend_id(&mut c).await;
    for _ in 0..5 {
        pause().await;
        assert_eq!(backend_id(&mut c).await, id, "autocommit=0: one connection");
    }
    c.query_drop("ROLLBACK").await.unwrap();
    c.query_drop("SET autocommit = 1").await.unwrap();
    assert!(replicas.contains(&sid(&mut c, "SELECT @@server_id").await));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in others {
        t.await.unwrap();
    }
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_variables_and_temporary_tables_pin_the_session() {
    let proxy = support::start_proxy().await;
    let (primary, replicas) = server_ids().await;
    let mut c = proxy.conn().await;
    assert!(replicas.contains(&sid(&mut c, "SELECT @@server_id").await));
    c.query_drop("SET @x = 41").await.unwrap();
    let x: i64 = c.query_first("SELECT @x + 1").await.unwrap().unwrap();
    assert_eq!(x, 42, "the variable is visible: same connection");
    assert_eq!(
        sid(&mut c, "SELECT @@server_id").await,
        primary,
        "pinned after SET @x"
    );

    let mut c = proxy.conn().await;
    let db = support::unique_db("tmp");
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TEMPORARY TABLE tt (a INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO tt VALUES (7)").await.unwrap();
    let a: i32 = c.query_first("SELECT a FROM tt").await.unwrap().unwrap();
    assert_eq!(a, 7, "temporary table readable: pinned to the primary");
    assert_eq!(sid(&mut c, "SELECT @@server_id").await, primary);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transaction_runs_on_one_replica() {
    let proxy = support::start_proxy().await;
    let (_, replicas) = server_ids().await;
    for _ in 0..4 {
        let mut c = proxy.conn().await;
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let first = sid(&mut c, "SELECT @@server_id").await;
        assert!(replicas.contains(&first));
        for _ in 0..5 {
            assert_eq!(
                sid(&mut c, "SELECT @@server_id").await,
                first,
                "whole transaction on one replica"
            );
        }
        let in_trx: i64 = c
            .query_first("SELECT COUNT(*) FROM performance_schema.events_transactions_current WHERE STATE = 'ACTIVE' AND THREAD_ID = PS_CURRENT_THREAD_ID()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(in_trx, 1, "a real transaction is open there");
        c.query_drop("COMMIT").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_names_and_use_reach_the_replica_that_serves_the_next_read() {
    let db = support::unique_db("state");
    let proxy = support::start_proxy().await;
    let (_, replicas) = server_ids().await;
    let mut direct = support::direct_conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    support::sync_replicas().await;
    let mut c = proxy.conn().await;
    c.query_drop("SET NAMES latin1").await.unwrap();
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    for _ in 0..4 {
        let (cs, mode, dbname, s): (String, String, String, u32) = c
            .query_first("SELECT @@character_set_client, @@sql_mode, DATABASE(), @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert!(replicas.contains(&s));
        assert_eq!(
            (cs.as_str(), mode.as_str(), dbname.as_str()),
            ("latin1", "ANSI_QUOTES", db.as_str())
        );
    }
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_select_runs_on_a_replica_and_prepared_write_on_the_primary() {
    let db = support::unique_db("ps");
    let proxy = support::start_proxy().await;
    let (primary, replicas) = server_ids().await;
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, sid INT)")
        .await
        .unwrap();
    let read = c.prep("SELECT @@server_id + ?").await.unwrap();
    for _ in 0..4 {
        let s: u32 = c.exec_first(&read, (0,)).await.unwrap().unwrap();
        assert!(replicas.contains(&s), "prepared SELECT on a replica");
    }
    c.exec_drop("INSERT INTO t (sid) VALUES (@@server_id)", ())
        .await
        .unwrap();
    let w: u32 = c.query_first("SELECT sid FROM t").await.unwrap().unwrap();
    assert_eq!(w, primary, "prepared INSERT on the primary");
    c.query_drop("BEGIN").await.unwrap();
    let s: u32 = c.exec_first(&read, (0,)).await.unwrap().unwrap();
    assert_eq!(
        s, primary,
        "the same prepared SELECT inside a transaction: re-prepared on the primary"
    );
    c.query_drop("COMMIT").await.unwrap();
    let s: u32 = c.exec_first(&read, (0,)).await.unwrap().unwrap();
    assert!(replicas.contains(&s));
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_causeway_backends_for_admins_only() {
    let proxy = support::start_proxy().await;
    let mut admin = mysql_async::Conn::new(proxy.opts("admin", "adminpw"))
        .await
        .unwrap();
    let rows: Vec<mysql_async::Row> = admin.query("SHOW CAUSEWAY BACKENDS").await.unwrap();
    assert_eq!(rows.len(), 3, "primary and two replicas");
    let cols: Vec<String> = rows[0]
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    assert_eq!(
        cols,
        [
            "name",
            "role",
            "address",
            "state",
            "weight",
            "lag_ms",
            "gtid_executed",
            "connections",
            "queries",
            "read_only",
            "source_mismatch",
            "writer",
            "zone",
            "sessions"
        ]
    );
    let first: (String, String, String) = (
        rows[0].get(0).unwrap(),
        rows[0].get(1).unwrap(),
        rows[0].get(2).unwrap(),
    );
    assert_eq!(
        first,
        (
            "primary".into(),
            "primary".into(),
            support::topology().primary().addr()
        )
    );
    let roles: Vec<String> = rows
        .iter()
        .map(|r| r.get::<String, _>(1).unwrap())
        .collect();
    assert_eq!(roles, ["primary", "replica", "replica"]);
    let mut app = proxy.conn().await;
    let e = app.query_drop("SHOW CAUSEWAY BACKENDS").await.unwrap_err();
    let mysql_async::Error::Server(e) = e else {
        panic!("server error expected")
    };
    assert_eq!((e.code, e.state.as_str()), (1227, "42000"));
}
