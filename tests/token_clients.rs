//! The token contract with real client programs: PyMySQL and the `mysql`
//! command-line client, through causeway, against a real GTID topology
//! whose replicas are held back for each run (`support::delay`): a read
//! with a passed token must fall back to the primary or wait on a replica
//! (`@@causeway.last_route` says which; both are required), and an
//! eventual read in the same run reads stale, so the checks can fail.
//! Tests here hold replication back, so they take turns.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::process::Command;
use std::time::Duration;
use support::delay;
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// A schema with an empty table `t` replicated everywhere, and a proxy
/// (large lag budget) whose replicas are then held back.
async fn held(prefix: &str) -> (String, support::TestProxy) {
    // a failed run may have left the replicas delayed
    delay::delay_replicas(0).await;
    let db = support::unique_db(prefix);
    let mut d = support::direct_conn().await;
    d.query_drop(format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await
    .unwrap();
    support::sync_replicas().await;
    let proxy = support::start_proxy_with(delay::lag_budget).await;
    delay::hold_replicas(&proxy.proxy).await;
    (db, proxy)
}

/// Lets the replicas catch up and drops the schema.
async fn release_and_drop(db: &str) {
    delay::release_replicas().await;
    let mut d = support::direct_conn().await;
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// The replicas the release task saw a long wait on, or why it did not
/// run to its end (the client finished first).
async fn released(task: tokio::task::JoinHandle<Vec<String>>) -> Result<Vec<String>, String> {
    if !task.is_finished() {
        task.abort();
    }
    task.await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_passes_tokens_between_connections() {
    let _g = SERIAL.lock().await;
    let (db, proxy) = held("pytok").await;
    let release = tokio::spawn(delay::release_when_waiting(Duration::from_secs(90)));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/tokens.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .args(["-u", script, "127.0.0.1", &proxy.port().to_string(), &db])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the PyMySQL script timed out")
    .expect("python3");
    let released = released(release).await;
    release_and_drop(&db).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        !stderr.contains("No module named 'pymysql'"),
        "PyMySQL is missing: run integration/test.sh (pip install pymysql)"
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all token checks passed"), "{stdout}");
    let on = released.expect("the harness saw the long read wait on a replica");
    println!("released the replicas while a read waited on {on:?}");
}

fn cli(port: u16, args: &[&str]) -> (bool, String, String) {
    let mut cmd: Command = support::topology().dist().mysql_client_command();
    cmd.args([
        "--protocol=TCP",
        "-h127.0.0.1",
        &format!("-P{port}"),
        "-uapp",
        "-papppw",
        "--batch",
        "--skip-column-names",
    ]);
    cmd.args(args);
    let out = cmd.output().expect("mysql CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cli_passes_tokens_between_invocations() {
    let _g = SERIAL.lock().await;
    let (db, proxy) = held("clitok").await;
    let port = proxy.port();
    let (ok, out, err) = cli(
        port,
        &[
            "-e",
            &format!("INSERT INTO {db}.t VALUES (1, 'w42'); SELECT @@causeway.token"),
        ],
    );
    assert!(ok, "{err}");
    let token = out.trim().to_string();
    assert!(token.contains(':'), "token printed: {out}");
    // replicas held: the read with the token falls back to the primary
    let (ok, out, err) = cli(
        port,
        &[
            "-e",
            &format!(
                "SET @@causeway.token = '{token}'; SET @@causeway.wait_timeout_ms = 300; \
                 SELECT v FROM {db}.t WHERE id = 1; SELECT @@causeway.last_route; \
                 SELECT @@causeway.token"
            ),
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["w42", "primary:fallback", token.as_str()]);
    // the control: an eventual read in the same run reads stale
    let (ok, out, err) = cli(
        port,
        &[
            "-e",
            &format!(
                "SET @@causeway.consistency = 'eventual'; SELECT COUNT(*) FROM {db}.t; \
                 SELECT @@causeway.last_route"
            ),
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"0"),
        "eventual read on a held replica: {out}"
    );
    assert!(
        lines.get(1).is_some_and(|r| r.starts_with("replica:")),
        "{out}"
    );
    // the comment form needs --comments: the CLI strips comments otherwise
    let (ok, out, err) = cli(
        port,
        &[
            "--comments",
            "-e",
            &format!(
                "SET @@causeway.wait_timeout_ms = 300; \
                 /* causeway token={token} */ SELECT v FROM {db}.t WHERE id = 1; \
                 SELECT @@causeway.last_route"
            ),
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["w42", "primary:fallback"]);
    let (ok, _out, err) = cli(port, &["-e", "SET @@causeway.token = 'garbage:1'"]);
    assert!(!ok);
    assert!(
        err.contains("ERROR 1231 (42000)") && err.contains("garbage"),
        "{err}"
    );
    let (ok, out, _) = cli(
        port,
        &[
            "-e",
            "SET @@causeway.consistency = 'eventual'; SELECT @@causeway.consistency",
        ],
    );
    assert!(ok);
    assert_eq!(out.trim(), "eventual");
    // a long wait: the replicas are released while it runs on one of them
    let release = tokio::spawn(delay::release_when_waiting(Duration::from_secs(60)));
    let sql = format!(
        "SET @@causeway.token = '{token}'; SET @@causeway.wait_timeout_ms = 20000; \
         SELECT v FROM {db}.t WHERE id = 1; SELECT @@causeway.last_route"
    );
    let (ok, out, err) = tokio::task::spawn_blocking(move || cli(port, &["-e", &sql]))
        .await
        .unwrap();
    let released = released(release).await;
    release_and_drop(&db).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"w42"), "{out}");
    assert!(
        lines
            .get(1)
            .is_some_and(|r| r.starts_with("replica:") && r.ends_with(":waited")),
        "{out}"
    );
    released.expect("the harness saw the read wait on a replica");
}
