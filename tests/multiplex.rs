//! `[server] pool_mode = "transaction"`: thousands of clients over a few
//! backend connections, on the real topology with
//! `pool_max_per_backend = 8`. Backend connections are counted on the
//! servers themselves (`information_schema.processlist`), sampled while the
//! clients run; each counting test has its own MySQL account (and causeway
//! user of the same name), so tests running at once do not count each
//! other's connections.

#[path = "multiplex/helpers.rs"]
mod helpers;
#[path = "support/mod.rs"]
mod support;

use helpers::{
    app_connections, connect, multiplexed, multiplexed_as, own_account, server_conns, stat,
    sysbench_ro, Sampler, POOL,
};
use mysql_async::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 400 clients write a row each and read it back (causal reads, the
/// default) and read other data, concurrently: every statement succeeds
/// and no server ever sees more than 8 connections of `app`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_clients_over_eight_connections() {
    let user = own_account("mux4").await;
    let proxy = support::start_proxy_with(multiplexed_as(&user)).await;
    let db = support::unique_db("mux400");
    let mut admin = connect(proxy.opts(&user, "apppw")).await;
    admin
        .query_drop(format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(32))"
        ))
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
    let sampler = Sampler::start(&user).await;
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let opts = proxy.opts(&user, "apppw");
        let db = db.clone();
        let ok = Arc::clone(&ok);
        tasks.push(tokio::spawn(async move {
            let mut c = connect(opts).await;
            for round in 0..3u32 {
                let id = i * 10 + round;
                c.exec_drop(
                    format!("INSERT INTO {db}.t VALUES (?, ?)"),
                    (id, format!("v{id}")),
                )
                .await
                .unwrap();
                // own write, read back through a replica (causal)
                let v: Option<String> = c
                    .query_first(format!("SELECT v FROM {db}.t WHERE id = {id}"))
                    .await
                    .unwrap();
                assert_eq!(v.as_deref(), Some(format!("v{id}").as_str()), "client {i}");
                let n: Option<u64> = c
                    .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
                    .await
                    .unwrap();
                assert!(n.unwrap_or(0) >= 1);
                ok.fetch_add(1, Ordering::Relaxed);
            }
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (max, samples) = sampler.finish().await;
    assert_eq!(ok.load(Ordering::Relaxed), 1200);
    assert!(samples >= 2, "the processlist was sampled ({samples})");
    assert!(
        max <= POOL,
        "{max} connections of app on one server (pool of {POOL})"
    );
    assert!(max >= 1, "the sampler saw the clients' connections");
    let mut c = connect(proxy.opts(&user, "apppw")).await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// 60 clients, each with its own `time_zone` and character set, always
/// read back their own values while they share 8 connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_variables_follow_the_client() {
    let user = own_account("muxv").await;
    let proxy = support::start_proxy_with(multiplexed_as(&user)).await;
    let sampler = Sampler::start(&user).await;
    let mut tasks = Vec::new();
    for i in 0..60u32 {
        let opts = proxy.opts(&user, "apppw");
        tasks.push(tokio::spawn(async move {
            let mut c = connect(opts).await;
            let tz = format!("+{:02}:{:02}", i % 14, (i / 14) * 15 % 60);
            let cs = ["latin1", "utf8mb4", "ascii"][i as usize % 3];
            c.query_drop(format!("SET time_zone = '{tz}'")).await.unwrap();
            c.query_drop(format!("SET NAMES {cs}")).await.unwrap();
            for _ in 0..20 {
                let row: Option<(String, String, String)> = c
                    .query_first(
                        "SELECT @@session.time_zone, @@character_set_client, @@character_set_results",
                    )
                    .await
                    .unwrap();
                let (t, client, results) = row.unwrap();
                assert_eq!((t.as_str(), client.as_str(), results.as_str()), (tz.as_str(), cs, cs), "client {i}");
                // a locking read, served by the primary, sees the same state
                let t2: Option<String> = c
                    .query_first("SELECT @@time_zone FOR UPDATE")
                    .await
                    .unwrap_or_else(|e| panic!("client {i}: locking read: {e}"));
                assert_eq!(t2.as_deref(), Some(tz.as_str()), "client {i}");
                let route: Option<String> =
                    c.query_first("SELECT @@causeway.last_route").await.unwrap();
                assert_eq!(route.as_deref(), Some("primary"), "client {i}");
            }
            c.disconnect().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (max, _) = sampler.finish().await;
    assert!(max <= POOL, "{max} connections of app on one server");
    // a new client gets none of that state
    let mut c = connect(proxy.opts(&user, "apppw")).await;
    let tz: Option<String> = c.query_first("SELECT @@session.time_zone").await.unwrap();
    assert_eq!(tz.as_deref(), Some("SYSTEM"));
}

// A transaction keeping its connection while others churn (BEGIN,
// autocommit = 0 with no BEGIN, SAVEPOINT first, a snapshot read, SET
// TRANSACTION): tests/transactions.rs.

/// `SELECT CONNECTION_ID()` answers causeway's id (the one in the
/// handshake), whatever backend connection serves the client, and KILL
/// with that id reaches the statement running for it now, without
/// touching another client's statement on the shared connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_id_and_kill_across_shared_connections() {
    let proxy = support::start_proxy_with(multiplexed).await;
    let mut a = proxy.conn().await;
    let id: Option<u64> = a.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(id, Some(u64::from(a.id())));
    let again: Option<u64> = a
        .query_first("select connection_id() as cid;")
        .await
        .unwrap();
    assert_eq!(again, id);
    // the same from a prepared statement is the backend's thread id: not
    // intercepted (documented)
    let mut others = Vec::new();
    for _ in 0..6 {
        let opts = proxy.opts("app", "apppw");
        others.push(tokio::spawn(async move {
            let mut c = connect(opts).await;
            let v: Option<u64> = c.query_first("SELECT SLEEP(2)").await.unwrap();
            assert_eq!(v, Some(0), "another client's statement was not interrupted");
        }));
    }
    let opts = proxy.opts("app", "apppw");
    let (id_tx, id_rx) = tokio::sync::oneshot::channel();
    let sleeper = tokio::spawn(async move {
        let mut a = connect(opts).await;
        let my_id = a.id();
        id_tx.send(my_id).unwrap();
        let started = Instant::now();
        let r: Result<Option<u64>, _> = a.query_first("SELECT SLEEP(30)").await;
        (my_id, started.elapsed(), r.map_err(|e| e.to_string()), a)
    });
    let sleeper_id = id_rx.await.unwrap();
    // wait until the sleep runs on a backend (it shows in a processlist)
    let mut servers = server_conns().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    'wait: loop {
        for s in servers.iter_mut() {
            let n: Option<u64> = s
                .query_first(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE info = 'SELECT SLEEP(30)'",
                )
                .await
                .unwrap();
            if n.unwrap_or(0) > 0 {
                break 'wait;
            }
        }
        assert!(Instant::now() < deadline, "the sleep never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut killer = proxy.conn().await;
    killer
        .query_drop(format!("KILL QUERY {sleeper_id}"))
        .await
        .unwrap();
    let (my_id, elapsed, r, mut a2) = sleeper.await.unwrap();
    assert_eq!(my_id, sleeper_id);
    assert!(
        elapsed < Duration::from_secs(20),
        "the sleep was killed ({elapsed:?})"
    );
    // MySQL answers 1 for an interrupted SLEEP (or 1317)
    match r {
        Ok(v) => assert_eq!(v, Some(1)),
        Err(e) => assert!(e.contains("1317"), "{e}"),
    }
    let v: Option<u64> = a2.query_first("SELECT 7").await.unwrap();
    assert_eq!(v, Some(7), "the killed client lives on");
    killer.query_drop(format!("KILL {my_id}")).await.unwrap();
    assert!(
        a2.query_drop("SELECT 1").await.is_err(),
        "KILL CONNECTION ended it"
    );
    for t in others {
        t.await.unwrap();
    }
}

/// sysbench `oltp_read_only`, 64 threads, server-side prepared statements
/// (`--db-ps-mode=auto`): no errors, no reconnects, and never more than 8
/// connections of `app` per server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_read_only_64_threads_over_eight_connections() {
    let user = own_account("muxs").await;
    let proxy = support::start_proxy_with(multiplexed_as(&user)).await;
    let db = support::unique_db("muxsb");
    let mut c = connect(proxy.opts(&user, "apppw")).await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    let (ok, log) = sysbench_ro(proxy.port(), &user, &db, "prepare", &[]).await;
    assert!(ok, "prepare:\n{log}");
    support::sync_replicas().await;
    let sampler = Sampler::start(&user).await;
    let (ok, log) = sysbench_ro(
        proxy.port(),
        &user,
        &db,
        "run",
        &["--time=8", "--threads=64", "--db-ps-mode=auto"],
    )
    .await;
    let (max, samples) = sampler.finish().await;
    assert!(ok, "run:\n{log}");
    let report = &log[log.find("SQL statistics:").expect("a report")..];
    println!("{report}");
    let tx = stat(report, "transactions:").expect("transactions");
    assert!(tx > 0, "{report}");
    assert_eq!(stat(report, "ignored errors:"), Some(0), "{report}");
    assert_eq!(stat(report, "reconnects:"), Some(0), "{report}");
    assert!(samples >= 2);
    assert!(max <= POOL, "{max} connections of app on one server");
    println!("transactions {tx}, most app connections on one server: {max}");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// 2,000 idle clients of the real binary cost at most 64 MiB of proxy
/// RSS and hold at most 8 backend connections per server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_clients_are_cheap() {
    let user = own_account("muxi").await;
    let proxy = support::external::ExternalProxy::start(multiplexed_as(&user)).await;
    let before = proxy.status_kib("VmRSS");
    let opts = proxy.opts(&user, "apppw");
    let mut clients = Vec::new();
    for _batch in 0..20 {
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let opts = opts.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = connect(opts).await;
                let v: Option<u64> = c.query_first("SELECT 1").await.unwrap();
                assert_eq!(v, Some(1));
                c
            }));
        }
        for t in tasks {
            clients.push(t.await.unwrap());
        }
    }
    assert_eq!(clients.len(), 2000);
    let mut servers = server_conns().await;
    let counts = app_connections(&mut servers, &user).await;
    let rss = proxy.status_kib("VmRSS");
    let hwm = proxy.vm_hwm_kib();
    println!("VmRSS before {before} KiB, with 2000 idle clients {rss} KiB (VmHWM {hwm} KiB); app connections per server {counts:?}");
    assert!(
        rss.saturating_sub(before) <= 64 * 1024,
        "2000 idle clients cost {} KiB",
        rss - before
    );
    assert!(counts.iter().all(|&n| n <= POOL), "{counts:?}");
    // they are all alive and served
    for c in clients.iter_mut().step_by(97) {
        let v: Option<u64> = c.query_first("SELECT 2").await.unwrap();
        assert_eq!(v, Some(2));
    }
    proxy.assert_no_panic();
}

/// State causeway cannot replay pins its client to one connection: the
/// client keeps its user variable and temporary table across statements
/// while others share the pool, nobody else ever sees them, and they are
/// gone for whoever gets that connection after the client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_state_stays_with_its_client_only() {
    let proxy = support::start_proxy_with(|t| {
        multiplexed(t).replace("pool_max_per_backend = 8", "pool_max_per_backend = 2")
    })
    .await;
    let db = support::unique_db("muxpin");
    let mut a = proxy.conn().await;
    a.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    a.query_drop("SET @secret = 42").await.unwrap();
    a.query_drop(format!("CREATE TEMPORARY TABLE {db}.tmp_mux (x INT)"))
        .await
        .unwrap();
    a.query_drop(format!("INSERT INTO {db}.tmp_mux VALUES (1)"))
        .await
        .unwrap();
    let mut others = Vec::new();
    for _ in 0..10 {
        let opts = proxy.opts("app", "apppw");
        let db = db.clone();
        others.push(tokio::spawn(async move {
            let mut c = connect(opts).await;
            for _ in 0..10 {
                let v: Option<Option<u64>> =
                    c.query_first("SELECT @secret FOR UPDATE").await.unwrap();
                assert_eq!(v, Some(None), "another client saw the variable");
                let e = c
                    .query_drop(format!("SELECT * FROM {db}.tmp_mux FOR UPDATE"))
                    .await
                    .unwrap_err();
                let mysql_async::Error::Server(e) = e else {
                    panic!("{e}")
                };
                assert_eq!(e.code, 1146, "another client saw the temporary table");
            }
        }));
    }
    for _ in 0..10 {
        let v: Option<u64> = a.query_first("SELECT @secret").await.unwrap();
        assert_eq!(v, Some(42));
        let n: Option<u64> = a
            .query_first(format!("SELECT COUNT(*) FROM {db}.tmp_mux"))
            .await
            .unwrap();
        assert_eq!(n, Some(1));
    }
    for t in others {
        t.await.unwrap();
    }
    a.disconnect().await.unwrap();
    // the pool has 2 primary connections; both are used again, reset
    let mut cs = Vec::new();
    for _ in 0..4 {
        let mut c = proxy.conn().await;
        let v: Option<Option<u64>> = c.query_first("SELECT @secret FOR UPDATE").await.unwrap();
        assert_eq!(v, Some(None));
        cs.push(c);
    }
    cs[0]
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

/// A change of session state causeway did not parse (a user variable set
/// inside a stored procedure) is reported by the session trackers and pins
/// the client: it keeps reading its variable while others share the pool,
/// and nobody else sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untracked_state_change_pins_the_client() {
    let proxy = support::start_proxy_with(|t| {
        multiplexed(t).replace("pool_max_per_backend = 8", "pool_max_per_backend = 2")
    })
    .await;
    let db = support::unique_db("muxcall");
    let mut a = proxy.conn().await;
    a.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    a.query_drop(format!(
        "CREATE PROCEDURE {db}.setv() BEGIN SET @pv = 7; END"
    ))
    .await
    .unwrap();
    a.query_drop(format!("CALL {db}.setv()")).await.unwrap();
    let mut others = Vec::new();
    for _ in 0..6 {
        let opts = proxy.opts("app", "apppw");
        others.push(tokio::spawn(async move {
            let mut c = connect(opts).await;
            for _ in 0..10 {
                let v: Option<Option<u64>> = c.query_first("SELECT @pv FOR UPDATE").await.unwrap();
                assert_eq!(v, Some(None), "another client saw the variable");
            }
        }));
    }
    for _ in 0..10 {
        let v: Option<u64> = a.query_first("SELECT @pv FOR UPDATE").await.unwrap();
        assert_eq!(v, Some(7), "the caller keeps its variable");
    }
    for t in others {
        t.await.unwrap();
    }
    a.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// `SHOW WARNINGS` after a statement that left warnings, or failed, reads
/// them on the connection that ran it, while others share a pool of 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_follow_the_statement() {
    let proxy = support::start_proxy_with(|t| {
        multiplexed(t).replace("pool_max_per_backend = 8", "pool_max_per_backend = 2")
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut others = Vec::new();
    for _ in 0..6 {
        let opts = proxy.opts("app", "apppw");
        let stop = Arc::clone(&stop);
        others.push(tokio::spawn(async move {
            let mut c = connect(opts).await;
            while !stop.load(Ordering::Relaxed) {
                c.query_drop("SELECT 1").await.unwrap();
                c.query_drop("DO 1").await.unwrap();
            }
        }));
    }
    let mut a = proxy.conn().await;
    for _ in 0..20 {
        a.query_drop("SELECT 1/0").await.unwrap();
        let w: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].1, 1365, "{w:?}");
        let e = a.query_drop("SELECT * FROM no_such_db_mux.t").await;
        assert!(e.is_err());
        let w: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").await.unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!((w[0].0.as_str(), w[0].1), ("Error", 1049), "{w:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in others {
        t.await.unwrap();
    }
}

/// The same prepared SQL text in two schemas (or under another `sql_mode`)
/// is two statements: clients sharing one connection per server each read
/// their own schema's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_keep_their_schema_on_shared_connections() {
    let proxy = support::start_proxy_with(|t| {
        multiplexed(t).replace("pool_max_per_backend = 8", "pool_max_per_backend = 1")
    })
    .await;
    let (d1, d2) = (support::unique_db("muxps"), support::unique_db("muxps"));
    let mut setup = proxy.conn().await;
    for (db, v) in [(&d1, "one"), (&d2, "two")] {
        setup
            .query_drop(format!(
                "CREATE DATABASE {db}; CREATE TABLE {db}.t (v VARCHAR(8)); INSERT INTO {db}.t VALUES ('{v}')"
            ))
            .await
            .unwrap();
    }
    setup.disconnect().await.unwrap();
    // the readers' tokens do not cover the setup client's writes
    support::sync_replicas().await;
    let mut tasks = Vec::new();
    for (db, want, ansi) in [
        (d1.clone(), "one", false),
        (d2.clone(), "two", false),
        (d1.clone(), "one", true),
    ] {
        let opts = support::opts(proxy.port(), "app", "apppw", Some(&db));
        tasks.push(tokio::spawn(async move {
            let mut c = connect(opts).await;
            if ansi {
                c.query_drop("SET sql_mode = 'ANSI_QUOTES'").await.unwrap();
            }
            for _ in 0..30 {
                let v: Option<String> = c.exec_first("SELECT v FROM t", ()).await.unwrap();
                assert_eq!(v.as_deref(), Some(want), "schema {db}");
                // "v" is a column under ANSI_QUOTES, a string otherwise
                let q: Option<String> = c
                    .exec_first("SELECT \"v\" FROM t FOR UPDATE", ())
                    .await
                    .unwrap();
                let expect = if ansi { want } else { "v" };
                assert_eq!(q.as_deref(), Some(expect), "ansi={ansi}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = proxy.conn().await;
    c.query_drop(format!("DROP DATABASE {d1}; DROP DATABASE {d2}"))
        .await
        .unwrap();
}
