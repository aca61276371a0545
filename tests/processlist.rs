//! `SHOW [FULL] PROCESSLIST` and `SELECT ... FROM
//! information_schema.PROCESSLIST` answered from causeway's own sessions,
//! against real MySQL: column definitions equal the server's, each user
//! sees exactly their own sessions (an admin all), `Id` is what
//! `CONNECTION_ID()` returns through causeway and what `KILL` takes, `Info`
//! shows another session's running statement, and PyMySQL's
//! `test_issue_36` steps pass in both pool modes.

mod support;

use mysql_async::prelude::*;
use mysql_async::{Conn, Row};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::dump;

const DEADLINE: Duration = Duration::from_secs(20);

/// A proxy in `mode` ("transaction" or "session").
async fn proxy(mode: &str) -> support::TestProxy {
    support::start_proxy_with(|t| {
        t.replace("[server]\n", &format!("[server]\npool_mode = \"{mode}\"\n"))
    })
    .await
}

async fn login(p: &support::TestProxy, user: &str, pw: &str) -> Conn {
    Conn::new(p.opts(user, pw))
        .await
        .expect("login through causeway")
}

/// `SELECT CONNECTION_ID()` through causeway.
async fn conn_id(c: &mut Conn) -> u64 {
    c.query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .expect("an id")
}

/// One `SHOW FULL PROCESSLIST` row: (Id, User, Host, db, Command, Time,
/// State, Info).
type PlRow = (
    u64,
    String,
    String,
    Option<String>,
    String,
    u64,
    String,
    Option<String>,
);

async fn show_full(c: &mut Conn) -> Vec<PlRow> {
    c.query("SHOW FULL PROCESSLIST").await.unwrap()
}

async fn ids(c: &mut Conn, sql: &str) -> BTreeSet<u64> {
    let rows: Vec<Row> = c.query(sql).await.unwrap();
    rows.into_iter()
        .map(|r| r.get::<u64, _>(0).expect("an Id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_match_the_servers() {
    let p = proxy("transaction").await;
    let mut direct = support::direct_conn().await;
    let mut proxied = p.conn().await;
    for sql in [
        "SHOW PROCESSLIST",
        "SHOW FULL PROCESSLIST",
        "SELECT * FROM information_schema.PROCESSLIST",
        "SELECT id, Info AS i FROM information_schema.processlist WHERE ID = CONNECTION_ID()",
        "SELECT * FROM performance_schema.processlist WHERE ID = CONNECTION_ID()",
    ] {
        let d = dump::text(&mut direct, sql).await.unwrap();
        let c = dump::text(&mut proxied, sql).await.unwrap();
        assert_eq!(c[0].columns, d[0].columns, "column definitions of {sql}");
        assert!(!c[0].rows.is_empty(), "causeway answered {sql} with rows");
    }
    // the rows are causeway's: the own row carries causeway's id
    let me = conn_id(&mut proxied).await;
    let backend: u64 = proxied
        .query_first("SELECT CONNECTION_ID() + 0")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        me, backend,
        "causeway's id differs from the backend thread's"
    );
    let own = ids(
        &mut proxied,
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
    )
    .await;
    assert_eq!(own, BTreeSet::from([me]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_exactly_their_own_sessions() {
    let p = proxy("transaction").await;
    let mut a1 = login(&p, "app", "apppw").await;
    let mut a2 = Conn::new(support::opts(p.port(), "app", "apppw", Some("mysql")))
        .await
        .unwrap();
    let mut n1 = login(&p, "nopw", "").await;
    let mut admin = login(&p, "admin", "adminpw").await;
    let (ia1, ia2, in1, iad) = (
        conn_id(&mut a1).await,
        conn_id(&mut a2).await,
        conn_id(&mut n1).await,
        conn_id(&mut admin).await,
    );
    // the handshake's id is the one CONNECTION_ID() returns
    assert_eq!(
        [ia1, ia2, in1, iad],
        [a1.id(), a2.id(), n1.id(), admin.id()].map(u64::from)
    );
    let app = BTreeSet::from([ia1, ia2]);
    for sql in [
        "SHOW PROCESSLIST",
        "SELECT * FROM information_schema.PROCESSLIST",
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app' ORDER BY ID DESC",
    ] {
        assert_eq!(ids(&mut a1, sql).await, app, "app's view, {sql}");
        assert_eq!(ids(&mut a2, sql).await, app, "app's other session, {sql}");
        let nopw = ids(&mut n1, sql).await;
        let expected = if sql.contains("'app'") {
            BTreeSet::new()
        } else {
            BTreeSet::from([in1])
        };
        assert_eq!(nopw, expected, "nopw's view, {sql}");
    }
    assert_eq!(
        ids(&mut admin, "SHOW PROCESSLIST").await,
        BTreeSet::from([ia1, ia2, in1, iad]),
        "the admin sees everyone"
    );
    // each row says who and where
    let rows = show_full(&mut admin).await;
    for (id, user, host, db, command, _time, _state, info) in &rows {
        let expected_user = match *id {
            i if i == ia1 || i == ia2 => "app",
            i if i == in1 => "nopw",
            _ => "admin",
        };
        assert_eq!(user, expected_user, "User of {id}");
        let port = host
            .strip_prefix("127.0.0.1:")
            .and_then(|p| p.parse::<u16>().ok());
        assert!(
            port.is_some_and(|p| p != 0),
            "Host of {id} is addr:port: {host}"
        );
        let expected_db = (*id == ia2).then(|| "mysql".to_string());
        assert_eq!(db, &expected_db, "db of {id}");
        if *id == iad {
            assert_eq!(
                (command.as_str(), info.as_deref()),
                ("Query", Some("SHOW FULL PROCESSLIST"))
            );
        } else {
            assert_eq!(
                (command.as_str(), info.as_deref()),
                ("Sleep", None),
                "row {id}"
            );
        }
    }
    // a USE shows in the next listing
    a1.query_drop("USE information_schema").await.unwrap();
    let db: Option<Option<String>> = a2
        .query_first(format!(
            "SELECT DB FROM information_schema.PROCESSLIST WHERE ID = {ia1}"
        ))
        .await
        .unwrap();
    assert_eq!(db, Some(Some("information_schema".to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_shows_another_sessions_running_statement() {
    let p = proxy("transaction").await;
    let mut watcher = p.conn().await;
    let mut sleeper = p.conn().await;
    let sid = conn_id(&mut sleeper).await;
    let run = tokio::spawn(async move {
        let r: Option<u64> = sleeper.query_first("SELECT SLEEP(2)").await.unwrap();
        (r, sleeper)
    });
    let row_of = |rows: Vec<PlRow>| {
        rows.into_iter()
            .find(|r| r.0 == sid)
            .expect("the sleeper's row")
    };
    let started = Instant::now();
    // running: Command Query, Info the statement, Time counting
    let mut seen_time = 0;
    loop {
        let r = row_of(show_full(&mut watcher).await);
        if r.7.as_deref() == Some("SELECT SLEEP(2)") {
            assert_eq!((r.4.as_str(), r.6.as_str()), ("Query", "executing"));
            seen_time = seen_time.max(r.5);
            if seen_time >= 1 {
                break;
            }
        }
        assert!(
            !run.is_finished(),
            "the sleep ended before it was seen running for 1 s"
        );
        assert!(started.elapsed() < DEADLINE, "never saw the running SLEEP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the same through information_schema, with a WHERE
    let info: Option<Option<String>> = watcher
        .query_first(format!(
            "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = {sid} AND INFO LIKE '%sleep(%'"
        ))
        .await
        .unwrap();
    assert_eq!(info, Some(Some("SELECT SLEEP(2)".to_string())));
    let (r, _sleeper) = run.await.unwrap();
    assert_eq!(r, Some(0));
    // idle again: Sleep, Info NULL
    let r = row_of(show_full(&mut watcher).await);
    assert_eq!((r.4.as_str(), r.6.as_str(), r.7), ("Sleep", "", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_processlist_cuts_info_to_100_characters() {
    let p = proxy("transaction").await;
    let mut watcher = p.conn().await;
    let mut sleeper = p.conn().await;
    let sid = conn_id(&mut sleeper).await;
    let long = format!("SELECT SLEEP(2), '{}'", "é".repeat(150));
    let sql = long.clone();
    let run = tokio::spawn(async move { sleeper.query_drop(sql).await.map(|_| sleeper) });
    let started = Instant::now();
    loop {
        let rows: Vec<(u64, Option<String>)> = watcher
            .query("SELECT ID, INFO FROM information_schema.PROCESSLIST")
            .await
            .unwrap();
        if rows
            .iter()
            .any(|r| r.0 == sid && r.1.as_deref() == Some(long.as_str()))
        {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "never saw the running statement"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let short: Vec<(u64, Option<String>)> = watcher
        .query("SHOW PROCESSLIST")
        .await
        .unwrap()
        .into_iter()
        .map(|r: Row| (r.get(0).unwrap(), r.get(7).unwrap()))
        .collect();
    let cut: String = long.chars().take(100).collect();
    assert!(
        short.contains(&(sid, Some(cut))),
        "SHOW PROCESSLIST cuts Info: {short:?}"
    );
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_takes_ids_from_the_list() {
    let p = proxy("transaction").await;
    let mut admin = login(&p, "admin", "adminpw").await;
    let mut victim = p.conn().await;
    let vid = conn_id(&mut victim).await;
    // KILL QUERY of a running statement found in the list
    let run = tokio::spawn(async move {
        let t = Instant::now();
        let r = victim.query_drop("SELECT SLEEP(30)").await;
        (r.map_err(|e| e.to_string()), t.elapsed(), victim)
    });
    let started = Instant::now();
    let id = loop {
        let rows = show_full(&mut admin).await;
        if let Some(r) = rows
            .iter()
            .find(|r| r.7.as_deref() == Some("SELECT SLEEP(30)"))
        {
            break r.0;
        }
        assert!(started.elapsed() < DEADLINE, "never saw the running SLEEP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(id, vid);
    admin.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (r, took, mut victim) = run.await.unwrap();
    assert!(
        took < Duration::from_secs(20),
        "the statement was killed ({took:?}, {r:?})"
    );
    // the session lives on; KILL CONNECTION of its listed id ends it
    assert_eq!(conn_id(&mut victim).await, vid);
    admin.query_drop(format!("KILL {id}")).await.unwrap();
    assert!(
        victim.query_drop("DO 1").await.is_err(),
        "the killed session is gone"
    );
    let started = Instant::now();
    while ids(&mut admin, "SHOW PROCESSLIST").await.contains(&vid) {
        assert!(
            started.elapsed() < DEADLINE,
            "the killed session stays listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PyMySQL's `test_issue_36` (pymysql/tests/test_issues.py), step by step.
async fn issue_36(mode: &str) {
    let p = proxy(mode).await;
    let mut conn0 = p.conn().await;
    let mut conn1 = p.conn().await;
    let rows: Vec<Row> = conn1.query("show processlist").await.unwrap();
    let kill_id = rows.iter().find_map(|r| {
        let info: Option<String> = r.get(7).unwrap();
        (info.as_deref() == Some("show processlist")).then(|| r.get::<u64, _>(0).unwrap())
    });
    assert_eq!(
        kill_id,
        Some(u64::from(conn1.id())),
        "{mode}: own row has the thread id"
    );
    let kill_id = kill_id.unwrap_or_default();
    conn0.query_drop(format!("KILL {kill_id}")).await.unwrap();
    assert!(
        conn1.query_drop("show tables").await.is_err(),
        "{mode}: the connection broke"
    );
    let started = Instant::now();
    while ids(&mut conn0, "show processlist").await.contains(&kill_id) {
        assert!(
            started.elapsed() < DEADLINE,
            "{mode}: the killed id stays listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_issue_36_in_transaction_mode() {
    issue_36("transaction").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_issue_36_in_session_mode() {
    issue_36("session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_processlist_reads_run_on_the_primary() {
    let p = proxy("transaction").await;
    let mut direct = support::direct_conn().await;
    let primary: String = direct
        .query_first("SELECT @@server_uuid")
        .await
        .unwrap()
        .unwrap();
    let mut c = p.conn().await;
    for _ in 0..6 {
        // not in the answered subset (a system variable, COUNT(*)): a backend's
        let (uuid, n): (String, u64) = c
            .query_first("SELECT @@server_uuid, COUNT(*) FROM information_schema.PROCESSLIST")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(uuid, primary, "text form ran on the primary");
        assert!(n >= 1);
        let uuid: Option<String> = c
            .exec_first(
                "SELECT @@server_uuid FROM information_schema.PROCESSLIST LIMIT ?",
                (1,),
            )
            .await
            .unwrap();
        assert_eq!(
            uuid.as_deref(),
            Some(primary.as_str()),
            "prepared form ran on the primary"
        );
    }
}

/// (Command, Info) of `sleeper` while it executes a prepared `SELECT
/// SLEEP(?)`, as `watcher` lists it (bounded wait for `Execute`).
async fn executing(watcher: &mut Conn, mut sleeper: Conn) -> (String, Option<String>) {
    let id = sleeper.id();
    let run = tokio::spawn(async move { sleeper.exec_drop("SELECT SLEEP(?)", (2,)).await });
    let started = Instant::now();
    let seen = loop {
        let row: Option<(String, Option<String>)> = watcher
            .query_first(format!(
                "SELECT COMMAND, INFO FROM information_schema.PROCESSLIST WHERE ID = {id}"
            ))
            .await
            .unwrap();
        if let Some(r) = row.filter(|r| r.0 == "Execute") {
            break r;
        }
        assert!(started.elapsed() < DEADLINE, "never saw the execution");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    run.await.unwrap().unwrap();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_shows_its_command_and_prepared_text() {
    let mut direct = support::direct_conn().await;
    let (command, info) = executing(&mut direct, support::direct_conn().await).await;
    // the server shows the parameters substituted; causeway shows the
    // prepared text (it does not decode the binary parameters)
    assert_eq!(
        info.as_deref(),
        Some("SELECT SLEEP(2)"),
        "the server's own view"
    );
    let p = proxy("transaction").await;
    let mut watcher = p.conn().await;
    let seen = executing(&mut watcher, p.conn().await).await;
    assert_eq!(seen, (command, Some("SELECT SLEEP(?)".to_string())));
}
