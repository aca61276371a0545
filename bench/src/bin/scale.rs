//! `scale`: the scale workloads of issue 28 against one MySQL-protocol
//! endpoint (causeway or MySQL Router), measuring the proxy from /proc.
//!
//! - `--mode think`: `--clients` concurrent clients, each running point
//!   selects (`SELECT c FROM sbtest1 WHERE id = ?`) with `--think-ms`
//!   pause after each, for `--secs`: QPS, p50, p99 and the proxy's CPU per
//!   query (utime + stime of `--pid` from /proc, 10 ms ticks).
//! - `--mode idle`: `--active` clients with no think time for `--secs`
//!   (p50/p99 alone), then `--idle` more clients log in and sit, the
//!   proxy's VmRSS before and after gives the memory per idle client, and
//!   the active clients run again next to them.
//!
//! Prints one JSON object. Raises its own RLIMIT_NOFILE.

use clap::Parser;
use mysql_async::prelude::Queryable;
use rand::Rng;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    port: u16,
    /// The proxy's process id (for /proc).
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value = "think")]
    mode: String,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    think_ms: u64,
    #[arg(long, default_value_t = 20)]
    secs: u64,
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    #[arg(long, default_value_t = 100)]
    active: usize,
    #[arg(long, default_value_t = 10_000)]
    table_size: u64,
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain struct in/out.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name (which may hold spaces)
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime are fields 14 and 15 (1-based), 12 and 13 after ") "
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("apppw"))
        .db_name(Some("sbtest"))
        .prefer_socket(false)
        .into()
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `n` clients for `secs` with `think` between statements; returns
/// latencies (µs), sorted, and the errors seen.
async fn run_clients(a: &Args, n: usize, think: Duration, secs: u64) -> (Vec<u32>, u64) {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(mysql_async::Conn::new(opts(a.port)).await.expect("connect"));
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let size = a.table_size;
    let mut tasks = Vec::with_capacity(n);
    for mut c in conns {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            // spread the first statements over the think time
            if !think.is_zero() {
                let j = rand::rng().random_range(0..think.as_micros() as u64);
                tokio::time::sleep(Duration::from_micros(j)).await;
            }
            while Instant::now() < deadline {
                let id = rand::rng().random_range(1..=size);
                let t = Instant::now();
                let r: Result<Option<String>, _> = c
                    .query_first(format!("SELECT c FROM sbtest1 WHERE id={id}"))
                    .await;
                match r {
                    Ok(Some(_)) => lat.push(t.elapsed().as_micros() as u32),
                    _ => errors += 1,
                }
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
            }
            let _ = c.disconnect().await;
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("client");
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    (all, errors)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    raise_nofile();
    let a = Args::parse();
    let hz = 100.0;
    if a.mode == "think" {
        let t0 = ticks(a.pid);
        let started = Instant::now();
        let (lat, errors) =
            run_clients(&a, a.clients, Duration::from_millis(a.think_ms), a.secs).await;
        let wall = started.elapsed().as_secs_f64();
        let cpu = (ticks(a.pid) - t0) as f64 / hz;
        let q = lat.len() as f64;
        println!(
            "{}",
            serde_json::json!({
                "mode": "think", "clients": a.clients, "think_ms": a.think_ms,
                "qps": (q / a.secs as f64).round(), "p50_us": pct(&lat, 0.5), "p99_us": pct(&lat, 0.99),
                "cpu_us_per_query": (cpu * 1e6 / q.max(1.0) * 10.0).round() / 10.0,
                "errors": errors, "wall_s": wall,
            })
        );
        return;
    }
    let (base, e0) = run_clients(&a, a.active, Duration::ZERO, a.secs).await;
    let rss0 = rss_kib(a.pid);
    let started = Instant::now();
    let mut idle = Vec::with_capacity(a.idle);
    let mut logins = Vec::new();
    for chunk in 0..a.idle.div_ceil(200) {
        let n = (a.idle - chunk * 200).min(200);
        let port = a.port;
        logins.push(tokio::spawn(async move {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(
                    mysql_async::Conn::new(opts(port))
                        .await
                        .expect("idle login"),
                );
            }
            v
        }));
    }
    for l in logins {
        idle.extend(l.await.expect("logins"));
    }
    let login_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = rss_kib(a.pid);
    let (with, e1) = run_clients(&a, a.active, Duration::ZERO, a.secs).await;
    println!(
        "{}",
        serde_json::json!({
            "mode": "idle", "idle": a.idle, "active": a.active, "login_s": login_s,
            "rss_before_kib": rss0, "rss_idle_kib": rss1,
            "bytes_per_idle_client": ((rss1.saturating_sub(rss0)) * 1024) as f64 / a.idle as f64,
            "active_alone": {"qps": (base.len() as f64 / a.secs as f64).round(), "p50_us": pct(&base, 0.5), "p99_us": pct(&base, 0.99), "errors": e0},
            "active_with_idle": {"qps": (with.len() as f64 / a.secs as f64).round(), "p50_us": pct(&with, 0.5), "p99_us": pct(&with, 0.99), "errors": e1},
        })
    );
    drop(idle);
}
