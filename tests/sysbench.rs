//! sysbench `oltp_read_write` (libmariadb client, prepared statements,
//! BEGIN/COMMIT transactions, 4 threads) through causeway against the real
//! topology: `prepare`, a 5-second `run` and `cleanup` all succeed, with
//! transactions done, no reconnects, and no errors other than the InnoDB
//! deadlocks sysbench retries (a handful at most).
//!
//! Needs `sysbench` on PATH (`apt-get install -y sysbench`): the test FAILS
//! (does not skip) when it is missing.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use std::time::Duration;
use support::delay;

/// The token test holds replication back: the tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails with a clear message when sysbench is missing.
fn ensure_sysbench() -> String {
    match std::process::Command::new("sysbench")
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!("`sysbench --version` failed ({})", out.status),
        Err(e) => panic!(
            "sysbench is required for this test but cannot be run ({e}): \
             install it with `apt-get install -y sysbench` (integration/test.sh does this)"
        ),
    }
}

/// Output of one sysbench phase.
struct Phase {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn sysbench(port: u16, db: &str, phase: &str, extra: &[&str]) -> Phase {
    let mut cmd = tokio::process::Command::new("sysbench");
    cmd.arg("oltp_read_write")
        .arg("--db-driver=mysql")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={port}"))
        .arg("--mysql-user=app")
        .arg("--mysql-password=apppw")
        .arg(format!("--mysql-db={db}"))
        .arg("--tables=2")
        .arg("--table-size=1000")
        .args(extra)
        .arg(phase)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("sysbench {phase} timed out"))
        .expect("running sysbench");
    Phase {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The first number after `label` on its line of sysbench's report, e.g.
/// `    transactions:   1234   (246.50 per sec.)` gives 1234.
fn stat(report: &str, label: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Every log line of a phase that mentions an error (for failure messages).
fn error_lines(p: &Phase) -> String {
    format!("{}{}", p.stdout, p.stderr)
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `"<code> <message>"` of every error sysbench ignored (verbosity 5 logs
/// `Ignoring error 1213 Deadlock found ..., `).
fn ignored_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("Ignoring error ").map(|(_, e)| e))
        .map(|e| e.trim_end_matches([',', ' ']).to_string())
        .collect()
}

#[test]
fn parses_the_sysbench_report() {
    let report =
        "SQL statistics:\n    transactions:                        1234   (246.50 per sec.)\n    \
                  ignored errors:                      0      (0.00 per sec.)\n    \
                  reconnects:                          2      (0.00 per sec.)\n";
    assert_eq!(stat(report, "transactions:"), Some(1234));
    assert_eq!(stat(report, "ignored errors:"), Some(0));
    assert_eq!(stat(report, "reconnects:"), Some(2));
    assert_eq!(stat(report, "queries:"), None);
    let log = "FATAL: nope\nDEBUG: Ignoring error 1213 Deadlock found when trying to get lock, \n";
    assert_eq!(
        ignored_errors(log),
        vec!["1213 Deadlock found when trying to get lock".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_read_write_through_causeway() {
    let _g = SERIAL.lock().await;
    let version = tokio::task::spawn_blocking(ensure_sysbench).await.unwrap();
    let proxy = support::start_proxy().await;
    let db = support::unique_db("sbtest");
    let mut c = proxy.conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();

    let check = |name: &str, p: &Phase| {
        assert!(
            p.ok,
            "{version} {name} through causeway failed:\nstdout:\n{}\nstderr:\n{}",
            p.stdout, p.stderr
        );
    };
    let prepare = sysbench(proxy.port(), &db, "prepare", &[]).await;
    check("prepare", &prepare);

    let run = sysbench(
        proxy.port(),
        &db,
        "run",
        // verbosity 5 logs each ignored error ("Ignoring error 1213 ...")
        &["--time=5", "--threads=4", "--verbosity=5"],
    )
    .await;
    check("run", &run);
    let report = &run.stdout[run.stdout.find("SQL statistics:").expect("a report")..];
    println!("{report}");
    let tx = stat(&run.stdout, "transactions:").expect("a transactions: line");
    let errors = stat(&run.stdout, "ignored errors:").expect("an ignored errors: line");
    let reconnects = stat(&run.stdout, "reconnects:").expect("a reconnects: line");
    assert!(tx > 0, "no transactions:\n{report}");
    assert_eq!(reconnects, 0, "reconnects:\n{report}");
    // sysbench retries a transaction after the errors it ignores (by default
    // 1213 deadlock, 1205 lock wait timeout, 1020): InnoDB legitimately
    // produces deadlocks under 4 threads of oltp_read_write, directly too.
    // Anything else, or more than 2% of transactions, is a causeway problem.
    let ignored = ignored_errors(&format!("{}{}", run.stdout, run.stderr));
    assert!(
        errors == 0 || !ignored.is_empty(),
        "{errors} ignored errors but none logged:\n{}",
        error_lines(&run)
    );
    assert!(
        ignored
            .iter()
            .all(|e| e.starts_with("1213 ") || e.starts_with("1205 ")),
        "errors other than deadlocks/lock waits: {ignored:?}"
    );
    assert!(
        errors * 50 <= tx,
        "{errors} ignored errors in {tx} transactions: {ignored:?}"
    );
    if errors > 0 {
        println!("ignored (retried) errors: {ignored:?}");
    }

    let cleanup = sysbench(proxy.port(), &db, "cleanup", &[]).await;
    check("cleanup", &cleanup);
    // read the primary directly: this connection's token predates cleanup
    let mut direct = support::direct_conn().await;
    let left: Vec<String> = direct
        .query(format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}'"
        ))
        .await
        .unwrap();
    assert!(left.is_empty(), "cleanup left tables {left:?}");
    direct.disconnect().await.unwrap();

    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
    c.disconnect().await.unwrap();
}

/// sysbench with a Lua script (tests/sysbench/token.lua), 2 threads, with
/// the replicas held back (`support::delay`): each thread writes on one
/// connection, hands `@@causeway.token` to a second connection and reads
/// there; no read may miss its write. The reads must have fallen back to the
/// primary (while held) and waited on a replica (the harness releases the
/// replicas once a read has waited 2 s), and the eventual control reader
/// must have read stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_script_passes_tokens_between_connections() {
    let _g = SERIAL.lock().await;
    tokio::task::spawn_blocking(ensure_sysbench).await.unwrap();
    delay::delay_replicas(0).await;
    let db = support::unique_db("sbtok");
    let mut c = support::direct_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    for tid in 0..2 {
        c.query_drop(format!(
            "CREATE TABLE {db}.tok{tid} (id INT PRIMARY KEY, v INT); INSERT INTO {db}.tok{tid} VALUES (1, 0)"
        ))
        .await
        .unwrap();
    }
    support::sync_replicas().await;
    let proxy = support::start_proxy_with(delay::lag_budget).await;
    delay::hold_replicas(&proxy.proxy).await;
    let release = tokio::spawn(delay::release_when_waiting(Duration::from_secs(60)));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sysbench/token.lua");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("sysbench")
            .arg(script)
            .arg("--mysql-host=127.0.0.1")
            .arg(format!("--mysql-port={}", proxy.port()))
            .args([
                "--mysql-user=app",
                "--mysql-password=apppw",
                "--mysql-ssl=off",
            ])
            .arg(format!("--mysql-db={db}"))
            .args(["--threads=2", "--time=8", "run"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sysbench timed out")
    .expect("running sysbench");
    if !release.is_finished() {
        release.abort();
    }
    let released = release.await;
    delay::release_replicas().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    // each thread reports "token-reads N missed M fallback F waited W
    // eventual-stale S"; threads write concurrently, so find the reports
    // anywhere in the output
    let reports: Vec<Vec<&str>> = stdout
        .split("token-reads ")
        .skip(1)
        .map(|r| r.split_whitespace().take(9).collect())
        .collect();
    assert_eq!(reports.len(), 2, "{stdout}");
    for f in reports {
        let labels: Vec<&str> = f.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(
            labels,
            ["missed", "fallback", "waited", "eventual-stale"],
            "{stdout}"
        );
        let n: Vec<u64> = f.iter().step_by(2).map(|v| v.parse().unwrap()).collect();
        let (reads, missed, fallback, waited, stale) = (n[0], n[1], n[2], n[3], n[4]);
        assert!(reads > 5, "{stdout}");
        assert_eq!(missed, 0, "a read missed its write: {stdout}");
        assert!(
            fallback >= 5,
            "reads fell back while the replicas were held: {stdout}"
        );
        assert!(waited >= 1, "a read waited on a replica: {stdout}");
        assert!(stale >= 5, "the eventual control read stale: {stdout}");
    }
    released.expect("the harness saw a read wait on a replica");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
