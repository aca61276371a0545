//! Node.js `mysql2` through causeway against the real topology
//! (tests/node/mysql2_roundtrip.js): query(), execute() prepared statements
//! (the same statement twice, NULL parameters), and a consistency token read
//! on one connection and set on another, after which a read sees the write.
//! The replicas are held back during the run (`support::delay`): the token
//! read must fall back, an eventual read must read stale (the control), and
//! a long read must wait on a replica until the harness releases them.
//!
//! Needs `node` and `npm`: the test FAILS (does not skip) when node is
//! missing. mysql2 is installed into tests/node/node_modules with `npm ci`
//! (package-lock.json) when that directory is missing.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::delay;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Fails with a clear message when node is missing; installs mysql2 if needed.
fn ensure_node_and_mysql2() {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`node --version` failed ({}): install Node.js (apt-get install -y nodejs npm) \
             to run the mysql2 client test",
            out.status
        ),
        Err(e) => panic!(
            "Node.js is required for this test but `node` cannot be run ({e}): \
             install it (apt-get install -y nodejs npm; integration/test.sh does this)"
        ),
    }
    let dir = node_dir();
    if dir.join("node_modules/mysql2/package.json").is_file() {
        return;
    }
    // npm ci installs exactly package-lock.json; fall back to npm install.
    let lock = dir.join("package-lock.json").is_file();
    let status = Command::new("npm")
        .arg(if lock { "ci" } else { "install" })
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .unwrap_or_else(|e| {
            panic!("`npm` cannot be run ({e}): install npm (apt-get install -y npm)")
        });
    assert!(
        status.success(),
        "`npm {}` in {} failed ({status}): mysql2 could not be installed",
        if lock { "ci" } else { "install" },
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_mysql2_query_execute_and_token_handoff() {
    tokio::task::spawn_blocking(ensure_node_and_mysql2)
        .await
        .unwrap();
    delay::delay_replicas(0).await;
    let db = support::unique_db("node");
    let mut c = support::direct_conn().await;
    c.query_drop(format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.seen (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await
    .unwrap();
    support::sync_replicas().await;
    let proxy = support::start_proxy_with(delay::lag_budget).await;
    delay::hold_replicas(&proxy.proxy).await;
    let release = tokio::spawn(delay::release_when_waiting(Duration::from_secs(90)));

    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg(node_dir().join("mysql2_roundtrip.js"))
            .args(["127.0.0.1", &proxy.port().to_string(), "app", "apppw", &db])
            .current_dir(node_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the mysql2 script timed out")
    .expect("running node");
    if !release.is_finished() {
        release.abort();
    }
    let released = release.await;
    delay::release_replicas().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("mysql2: all checks passed"),
        "mysql2 script failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let on = released.expect("the harness saw the long read wait on a replica");
    println!("released the replicas while a read waited on {on:?}");

    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
    c.disconnect().await.unwrap();
}
