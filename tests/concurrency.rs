//! Many clients at once through one causeway against real MySQL: 200
//! concurrent sessions (each its own connection, not a pool) run mixed text
//! and prepared statements on their own rows with every result checked;
//! half pin their sessions, half give their connections back after every
//! statement outside a transaction (transaction pool mode, the default) and
//! run an autocommit-off transaction with a savepoint; the backend
//! connections stay bounded, go back to the pool reset, and a later client
//! never sees an earlier client's session state.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use mysql_async::{Conn, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

const CLIENTS: usize = 200;

/// Connections of `user` on the primary, counted from a root connection.
async fn primary_connections(user: &str) -> i64 {
    let mut root = support::topology().primary().conn().await.expect("root");
    let n: Option<i64> = root
        .exec_first(
            "SELECT COUNT(*) FROM performance_schema.processlist WHERE user = ?",
            (user,),
        )
        .await
        .expect("processlist");
    root.disconnect().await.unwrap();
    n.unwrap_or(0)
}

/// Whether client `id` pins its session (a user variable and a temporary
/// table, state causeway cannot replay). The others never pin: in
/// transaction pool mode their connections go back to the pool after every
/// statement outside a transaction, and they also run an autocommit-off
/// transaction with a savepoint.
fn pins(id: usize) -> bool {
    id % 2 == 0
}

/// One client's work: 20+ statements on rows keyed by `id`, each checked.
/// A pinning client leaves a user variable and a temporary table behind in
/// its session; the others a replayed `SET time_zone`.
async fn client_work(mut c: Conn, id: usize, done: Arc<Barrier>) -> Result<Conn, String> {
    let e = |what: &str, err: mysql_async::Error| format!("client {id}: {what}: {err}");
    let id64 = id as i64;
    if pins(id) {
        c.query_drop(format!("SET @v = {id}"))
            .await
            .map_err(|x| e("SET", x))?;
        c.query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
            .await
            .map_err(|x| e("CREATE TEMPORARY", x))?;
    } else {
        c.query_drop(format!("SET time_zone = '+0{}:00'", id % 10))
            .await
            .map_err(|x| e("SET time_zone", x))?;
    }
    for k in 0..5i64 {
        c.query_drop(format!(
            "INSERT INTO t (client, k, v) VALUES ({id}, {k}, 'c{id}-k{k}')"
        ))
        .await
        .map_err(|x| e("INSERT", x))?;
        let got: Option<String> = c
            .query_first(format!("SELECT v FROM t WHERE client = {id} AND k = {k}"))
            .await
            .map_err(|x| e("SELECT", x))?;
        if got.as_deref() != Some(format!("c{id}-k{k}").as_str()) {
            return Err(format!("client {id}: row {k} reads back {got:?}"));
        }
    }
    let stmt = c
        .prep("INSERT INTO t (client, k, v) VALUES (?, ?, ?)")
        .await
        .map_err(|x| e("PREPARE", x))?;
    for k in 5..10i64 {
        c.exec_drop(&stmt, (id64, k, format!("p{id}-{k}")))
            .await
            .map_err(|x| e("EXECUTE", x))?;
    }
    let sel = c
        .prep("SELECT COUNT(*), SUM(k), MAX(v) FROM t WHERE client = ?")
        .await
        .map_err(|x| e("PREPARE select", x))?;
    let r: Option<(i64, i64, String)> = c
        .exec_first(&sel, (id64,))
        .await
        .map_err(|x| e("EXECUTE select", x))?;
    if r != Some((10, 45, format!("p{id}-9"))) {
        return Err(format!("client {id}: aggregate {r:?}"));
    }
    c.query_drop("START TRANSACTION")
        .await
        .map_err(|x| e("BEGIN", x))?;
    c.query_drop(format!(
        "UPDATE t SET v = 'rolled back' WHERE client = {id}"
    ))
    .await
    .map_err(|x| e("UPDATE", x))?;
    c.query_drop("ROLLBACK")
        .await
        .map_err(|x| e("ROLLBACK", x))?;
    let n: Option<i64> = c
        .query_first(format!(
            "SELECT COUNT(*) FROM t WHERE client = {id} AND v = 'rolled back'"
        ))
        .await
        .map_err(|x| e("SELECT after rollback", x))?;
    if n != Some(0) {
        return Err(format!("client {id}: rollback left {n:?} rows"));
    }
    if pins(id) {
        let (v, conn_user): (Option<i64>, String) = c
            .query_first("SELECT @v, CURRENT_USER()")
            .await
            .map_err(|x| e("SELECT @v", x))?
            .ok_or_else(|| format!("client {id}: no row"))?;
        if v != Some(id64) || conn_user != "app@%" {
            return Err(format!("client {id}: session state {v:?} {conn_user}"));
        }
        c.query_drop("INSERT INTO scratch VALUES (1)")
            .await
            .map_err(|x| e("INSERT scratch", x))?;
    } else {
        autocommit_off_transaction(&mut c, id).await?;
    }
    c.query_drop(format!("DELETE FROM t WHERE client = {id} AND k >= 5"))
        .await
        .map_err(|x| e("DELETE", x))?;
    if c.affected_rows() != 5 {
        return Err(format!("client {id}: deleted {}", c.affected_rows()));
    }
    done.wait().await;
    Ok(c)
}

/// An unpinned client's autocommit-off transaction: a savepoint first (the
/// server does not flag the transaction yet), a write, a rollback to the
/// savepoint, a second write committed; its replayed `time_zone` holds on
/// whichever connection serves it.
async fn autocommit_off_transaction(c: &mut Conn, id: usize) -> Result<(), String> {
    let e = |what: &str, err: mysql_async::Error| format!("client {id}: {what}: {err}");
    for sql in [
        "SET autocommit = 0".to_string(),
        "SAVEPOINT s".to_string(),
        format!("INSERT INTO t (client, k, v) VALUES ({id}, 100, 'undone')"),
        "ROLLBACK TO SAVEPOINT s".to_string(),
        format!("INSERT INTO t (client, k, v) VALUES ({id}, 101, 'kept')"),
        "COMMIT".to_string(),
        "SET autocommit = 1".to_string(),
    ] {
        c.query_drop(&sql).await.map_err(|x| e(&sql, x))?;
    }
    let (kept, tz): (i64, String) = c
        .query_first(format!(
            "SELECT COUNT(*), @@time_zone FROM t WHERE client = {id} AND k >= 100"
        ))
        .await
        .map_err(|x| e("SELECT after the transaction", x))?
        .ok_or_else(|| format!("client {id}: no row"))?;
    if kept != 1 || tz != format!("+0{}:00", id % 10) {
        return Err(format!(
            "client {id}: after the transaction {kept} rows, {tz}"
        ));
    }
    c.query_drop(format!("DELETE FROM t WHERE client = {id} AND k >= 100"))
        .await
        .map_err(|x| e("DELETE kept", x))
}

/// Waits (bounded, 60 s) until every session ended and every backend
/// connection was reset and is idle in the primary's pool.
async fn wait_sessions_ended(proxy: &support::TestProxy) {
    let pool = Arc::clone(&proxy.proxy.topology.load().primary.pool);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let clients = proxy
            .proxy
            .clients
            .load(std::sync::atomic::Ordering::Relaxed);
        if clients == 0 && pool.idle_connections() == pool.open_connections() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sessions {clients}, idle {} of {} backend connections after 60 s",
            pool.idle_connections(),
            pool.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 20 fresh clients in turn see no user variable, temporary table or open
/// transaction of an earlier session, and `db` as their schema.
async fn fresh_clients_see_no_leftovers(opts: &mysql_async::Opts, db: &str) {
    for round in 0..20 {
        let mut c = Conn::new(opts.clone()).await.expect("fresh client");
        let (v, db_now): (Value, Option<String>) = c
            .query_first("SELECT @v, DATABASE()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            v,
            Value::NULL,
            "round {round}: @v leaked from another client"
        );
        assert_eq!(db_now.as_deref(), Some(db));
        c.query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
            .await
            .unwrap_or_else(|e| panic!("round {round}: temporary table leaked: {e}"));
        let in_trans: Option<i64> = c
            .query_first("SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = CONNECTION_ID()")
            .await
            .unwrap();
        assert_eq!(in_trans, Some(0), "round {round}: open transaction leaked");
        c.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_then_clean_reused_sessions() {
    let db = support::unique_db("conc");
    let proxy = support::start_proxy().await;
    let mut direct = support::direct_conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    direct
        .query_drop(format!(
            "CREATE TABLE {db}.t (client INT, k INT, v VARCHAR(50), PRIMARY KEY (client, k))"
        ))
        .await
        .unwrap();
    let app_before = primary_connections("app").await;

    let opts = support::opts(proxy.port(), "app", "apppw", Some(&db));
    // all clients are done with their statements but still connected when
    // the barrier opens, so the test sees the peak
    let done = Arc::new(Barrier::new(CLIENTS + 1));
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let opts = opts.clone();
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let c = Conn::new(opts)
                .await
                .map_err(|x| format!("client {id}: connect: {x}"))?;
            client_work(c, id, done).await
        }));
    }
    // if a client fails before the barrier, the wait below would hang: wait
    // with a bound and report the failures instead
    let peak = tokio::time::timeout(Duration::from_secs(120), done.wait()).await;
    let mut errors = Vec::new();
    let mut conns = Vec::new();
    if peak.is_ok() {
        let pool = &proxy.proxy.topology.load().primary.pool;
        assert!(
            pool.open_connections() <= CLIENTS,
            "{} backend connections for {CLIENTS} clients",
            pool.open_connections()
        );
        // the pinning half holds one each; the others share what is free
        let on_primary = primary_connections("app").await - app_before;
        assert!(
            (CLIENTS as i64 / 2..=CLIENTS as i64 + 10).contains(&on_primary),
            "{on_primary} app connections on the primary for {CLIENTS} clients"
        );
        assert_eq!(
            proxy
                .proxy
                .clients
                .load(std::sync::atomic::Ordering::Relaxed),
            CLIENTS
        );
    }
    // one deadline for all: a client stuck at the barrier (because another
    // failed) must not cost a minute each
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for t in tasks {
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(Ok(c))) => conns.push(c),
            Ok(Ok(Err(msg))) => errors.push(msg),
            Ok(Err(join)) => errors.push(format!("task: {join}")),
            Err(_) => errors.push("client task timed out".into()),
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {CLIENTS} clients failed: {:#?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(peak.is_ok(), "clients did not all finish in time");
    let rows: Option<i64> = direct
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .unwrap();
    assert_eq!(rows, Some(5 * CLIENTS as i64));

    for c in conns {
        c.disconnect().await.unwrap();
    }
    // wait (bounded) until every session ended and every backend connection
    // was reset and is idle in the pool
    let pool = Arc::clone(&proxy.proxy.topology.load().primary.pool);
    wait_sessions_ended(&proxy).await;
    let open_after = pool.open_connections();
    assert!(
        open_after <= CLIENTS,
        "{open_after} open backend connections"
    );
    let on_primary = primary_connections("app").await - app_before;
    assert!(
        on_primary <= CLIENTS as i64 + 10,
        "{on_primary} app connections on the primary after the clients left"
    );

    // later clients reuse those backend connections and see none of the
    // earlier sessions' state
    let opened = pool.opened_total();
    fresh_clients_see_no_leftovers(&opts, &db).await;
    assert!(
        pool.opened_total() < opened + 20,
        "fresh clients should reuse pooled connections ({} opened for 20 clients)",
        pool.opened_total() - opened
    );
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}
