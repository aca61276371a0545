//! Helpers of tests/multiplex.rs: the multiplexed config, per-test MySQL
//! accounts, counting a user's connections on the servers themselves
//! (once, or sampled while clients run), bounded connects and sysbench
//! `oltp_read_only` runs.
#![allow(dead_code)]

use mysql_async::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::support;

/// `pool_max_per_backend` of the multiplexed config.
pub const POOL: usize = 8;

/// The test config with `pool_mode = "transaction"` over [`POOL`]
/// connections per backend.
pub fn multiplexed(t: String) -> String {
    t.replace(
        "connect_timeout_ms = 5000",
        "connect_timeout_ms = 30000\npool_max_per_backend = 8\npool_mode = \"transaction\"\nmax_connections = 5000",
    )
}

/// A MySQL account of its own (password `apppw`, all privileges), created
/// on the primary and replicated.
pub async fn own_account(prefix: &str) -> String {
    let user = support::unique_db(prefix);
    let mut root = support::root_conn().await;
    root.query_drop(format!(
        "CREATE USER '{user}'@'%' IDENTIFIED WITH caching_sha2_password BY 'apppw'; \
         GRANT ALL ON *.* TO '{user}'@'%'"
    ))
    .await
    .unwrap();
    root.disconnect().await.unwrap();
    support::sync_replicas().await;
    user
}

/// [`multiplexed`], plus a causeway user `user` logging in to the backends
/// as itself.
pub fn multiplexed_as(user: &str) -> impl FnOnce(String) -> String + '_ {
    move |t| {
        format!(
            "{}\n[[users]]\nname = \"{user}\"\npassword = \"apppw\"\n",
            multiplexed(t)
        )
    }
}

/// Root connections to every server of the topology (primary first).
pub async fn server_conns() -> Vec<mysql_async::Conn> {
    let topo = support::topology();
    let mut ports = vec![topo.primary().port()];
    ports.extend(topo.replicas().iter().map(|r| r.port()));
    let mut out = Vec::new();
    for p in ports {
        out.push(
            mysql_async::Conn::new(support::opts(p, "root", "", None))
                .await
                .expect("root connection"),
        );
    }
    out
}

/// Connections of `user` on each server, now.
pub async fn app_connections(servers: &mut [mysql_async::Conn], user: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for c in servers.iter_mut() {
        let n: Option<u64> = c
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE user = '{user}'"
            ))
            .await
            .expect("processlist");
        out.push(n.unwrap_or(0) as usize);
    }
    out
}

/// Samples the `app` connections of every server until stopped; returns
/// the largest count seen on any server and the number of samples.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, usize)>,
}

impl Sampler {
    pub async fn start(user: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let mut servers = server_conns().await;
        let s = Arc::clone(&stop);
        let user = user.to_string();
        let task = tokio::spawn(async move {
            let (mut max, mut samples) = (0, 0);
            while !s.load(Ordering::Relaxed) {
                let counts = app_connections(&mut servers, &user).await;
                max = max.max(counts.into_iter().max().unwrap_or(0));
                samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (max, samples)
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Connects, retrying (bounded, 60 s). Each attempt is bounded too: on a
/// loaded machine a burst of connects can overflow the listen backlog, and
/// a MySQL client whose handshake ACK was dropped waits for a greeting
/// that never comes.
pub async fn connect(opts: mysql_async::Opts) -> mysql_async::Conn {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(10),
            mysql_async::Conn::new(opts.clone()),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => return c,
            Ok(Err(e)) => {
                assert!(Instant::now() < deadline, "cannot connect: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => assert!(Instant::now() < deadline, "connect attempts time out"),
        }
    }
}

/// Runs sysbench `oltp_read_only` `phase` as `user` through `port`
/// (bounded, 180 s): (success, stdout + stderr).
pub async fn sysbench_ro(
    port: u16,
    user: &str,
    db: &str,
    phase: &str,
    extra: &[&str],
) -> (bool, String) {
    let out = tokio::process::Command::new("sysbench")
        .arg("oltp_read_only")
        .arg("--db-driver=mysql")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--mysql-user={user}"))
        .arg("--mysql-password=apppw")
        .arg(format!("--mysql-db={db}"))
        .arg("--tables=2")
        .arg("--table-size=1000")
        .args(extra)
        .arg(phase)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .unwrap_or_else(|_| panic!("sysbench {phase} timed out"))
        .expect("sysbench is required (apt-get install -y sysbench)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The number after `label` in a sysbench report.
pub fn stat(report: &str, label: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}
