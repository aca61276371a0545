//! Fresh reads bench: point selects on table `hot` mixed with 0%, 1% or
//! 10% single-row UPDATEs to the same table (`hot`) or to another one
//! (`cold`), in `eventual`, `causal` and `fresh` modes, through one running
//! causeway. Reports QPS, the share of reads served by a replica directly,
//! after a wait, or by the primary (sampled: `@@causeway.last_route` after
//! every 4th read), and causeway's CPU per statement (utime+stime of its
//! pid from /proc, 10 ms ticks, ÷ reads and writes). Writes go through
//! causeway on a second connection of each client, so the reading session
//! carries no token of its own: `causal` then never waits, and `fresh`
//! waits only for writes to the table it reads.

use anyhow::{Context, Result};
use clap::Parser;
use mysql_async::prelude::*;
use rand::Rng;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// causeway's port.
    #[arg(long)]
    proxy: u16,
    /// The primary's port (setup only).
    #[arg(long)]
    primary: u16,
    /// The replicas' ports (to wait for the setup).
    #[arg(long, num_args = 1..)]
    replicas: Vec<u16>,
    /// causeway's pid (CPU).
    #[arg(long)]
    pid: u32,
    /// A second causeway with `[routing] fresh_sync = true` (port, pid).
    #[arg(long, num_args = 2)]
    sync: Vec<u32>,
    /// Seconds per run.
    #[arg(long, default_value_t = 5)]
    time: u64,
    /// Client connections.
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

const ROWS: u32 = 1000;

fn opts(port: u16, user: &str, pw: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pw))
        .prefer_socket(false)
        .into()
}

fn ticks(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = s.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

async fn setup(a: &Args) -> Result<()> {
    let mut c = mysql_async::Conn::new(opts(a.primary, "root", "")).await?;
    c.query_drop("DROP DATABASE IF EXISTS fb").await?;
    c.query_drop("CREATE DATABASE fb").await?;
    for t in ["hot", "cold"] {
        c.query_drop(format!(
            "CREATE TABLE fb.{t} (id INT PRIMARY KEY, v BIGINT NOT NULL)"
        ))
        .await?;
        let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, 0)")).collect();
        c.query_drop(format!("INSERT INTO fb.{t} VALUES {}", rows.join(",")))
            .await?;
    }
    let g: String = c
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await?
        .context("gtid")?;
    for r in &a.replicas {
        let mut rc = mysql_async::Conn::new(opts(*r, "root", "")).await?;
        let ok: Option<i64> = rc
            .query_first(format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{g}', 60)"))
            .await?;
        anyhow::ensure!(ok == Some(0), "replica {r} did not catch up");
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    reads: u64,
    writes: u64,
    routes: BTreeMap<&'static str, u64>,
}

async fn client(port: u16, mode: &str, pct: u32, table: &str, until: Instant) -> Result<Tally> {
    let mut c = mysql_async::Conn::new(opts(port, "app", "apppw")).await?;
    c.query_drop(format!("SET @@causeway.consistency = '{mode}'"))
        .await?;
    // writes on their own connection, as a pool or another process would
    // (the reading session has no token of its own)
    let mut wc = mysql_async::Conn::new(opts(port, "app", "apppw")).await?;
    let mut t = Tally::default();
    let mut rng = rand::rng();
    while Instant::now() < until {
        let id = rng.random_range(1..=ROWS);
        if rng.random_range(0..100) < pct {
            wc.query_drop(format!("UPDATE fb.{table} SET v = v + 1 WHERE id = {id}"))
                .await?;
            t.writes += 1;
            continue;
        }
        let _: Option<i64> = c
            .query_first(format!("SELECT v FROM fb.hot WHERE id = {id}"))
            .await?;
        t.reads += 1;
        if t.reads % 4 == 0 {
            let r: String = c
                .query_first("SELECT @@causeway.last_route")
                .await?
                .unwrap_or_default();
            let k = if r.ends_with(":waited") {
                "waited"
            } else if r.starts_with("replica:") {
                "replica"
            } else if r == "primary:fallback" {
                "fallback"
            } else {
                "primary"
            };
            *t.routes.entry(k).or_default() += 1;
        }
    }
    Ok(t)
}

async fn run(a: &Args, sync: bool, mode: &str, pct: u32, table: &str) -> Result<String> {
    let (port, pid) = match (sync, a.sync.as_slice()) {
        (true, [port, pid]) => (u16::try_from(*port)?, *pid),
        _ => (a.proxy, a.pid),
    };
    let t0 = ticks(pid)?;
    let start = Instant::now();
    let until = start + Duration::from_secs(a.time);
    let tasks = (0..a.threads)
        .map(|_| Box::pin(client(port, mode, pct, table, until)))
        .collect();
    let results = futures_join_all(tasks)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let secs = start.elapsed().as_secs_f64();
    let t1 = ticks(pid)?;
    let mut all = Tally::default();
    for r in results {
        all.reads += r.reads;
        all.writes += r.writes;
        for (k, v) in r.routes {
            *all.routes.entry(k).or_default() += v;
        }
    }
    let sampled: u64 = all.routes.values().sum::<u64>().max(1);
    let share = |k: &str| 100.0 * *all.routes.get(k).unwrap_or(&0) as f64 / sampled as f64;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let stmts = (all.reads + all.writes).max(1) as f64;
    let cpu_us = (t1 - t0) as f64 / hz * 1e6 / stmts;
    let target = if pct == 0 { "-" } else { table };
    let label = if sync {
        format!("{mode} + fresh_sync")
    } else {
        mode.to_string()
    };
    Ok(format!(
        "| {label} | {pct}% | {target} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {cpu_us:.1} |",
        stmts / secs,
        share("replica"),
        share("waited"),
        share("fallback"),
        share("primary"),
    ))
}

async fn futures_join_all<F: std::future::Future + Unpin>(mut fs: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in fs.iter_mut().enumerate() {
            if out[i].is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = Args::parse();
    setup(&a).await?;
    println!(
        "| mode | writes | written table | statements/s | replica % | waited % | fallback % | primary % | causeway CPU µs/statement |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut modes = vec![(false, "eventual"), (false, "causal"), (false, "fresh")];
    if !a.sync.is_empty() {
        modes.push((true, "fresh"));
    }
    for (sync, mode) in modes {
        // warm
        run(&a, sync, mode, 0, "hot").await?;
        for (pct, table) in [
            (0, "hot"),
            (1, "hot"),
            (1, "cold"),
            (10, "hot"),
            (10, "cold"),
        ] {
            println!("{}", run(&a, sync, mode, pct, table).await?);
        }
    }
    Ok(())
}
