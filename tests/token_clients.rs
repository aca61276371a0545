//! The token contract with real client programs: PyMySQL and the `mysql`
//! command-line client, through causeway, against a real GTID topology.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_passes_tokens_between_connections() {
    let db = support::unique_db("pytok");
    let proxy = support::start_proxy().await;
    let mut d = support::direct_conn().await;
    d.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    support::sync_replicas().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/tokens.py");
    let out = tokio::process::Command::new("python3")
        .args([script, "127.0.0.1", &proxy.port().to_string(), &db])
        .output()
        .await
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'pymysql'"),
        "PyMySQL is missing: run integration/test.sh (pip install pymysql)"
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("all token checks passed"), "{stdout}");
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
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
    let db = support::unique_db("clitok");
    let proxy = support::start_proxy().await;
    let port = proxy.port();
    let (ok, out, err) = cli(
        port,
        &["-e", &format!("CREATE DATABASE {db}; CREATE TABLE {db}.t (v INT); INSERT INTO {db}.t VALUES (42); SELECT @@causeway.token")],
    );
    assert!(ok, "{err}");
    let token = out.trim().to_string();
    assert!(token.contains(':'), "token printed: {out}");
    let (ok, out, err) = cli(
        port,
        &[
            "-e",
            &format!(
                "SET @@causeway.token = '{token}'; SELECT v FROM {db}.t; SELECT @@causeway.token"
            ),
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["42", token.as_str()]);
    // the comment form needs --comments: the CLI strips comments otherwise
    let (ok, out, err) = cli(
        port,
        &[
            "--comments",
            "-e",
            &format!("/* causeway token={token} */ SELECT v FROM {db}.t"),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "42");
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
    let mut d = support::direct_conn().await;
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
