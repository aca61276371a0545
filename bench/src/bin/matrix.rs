//! `matrix`: runs the sysbench matrix (workload × ps-mode × threads × target)
//! against a running topology, causeway and MySQL Router, and writes
//! `<out>/<stamp>-sysbench.{json,md}`.
//!
//! Read-only workloads (oltp_point_select, oltp_read_only --skip_trx=on) run
//! against one replica directly, both replicas spread by sysbench, causeway,
//! and Router's round-robin `ro` port; oltp_read_write runs against the
//! primary directly, causeway, and Router's `rw` port. Every run must finish
//! with exit status 0, no FATAL line and a non-zero query count, or the
//! matrix aborts. Proxy CPU per query is read from `/proc/<pid>/stat`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use causeway_bench::{proc_cpu_us, timestamp};
use clap::Parser;
use mysql_async::prelude::*;
use serde::Serialize;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    primary: u16,
    /// Replica ports, comma separated.
    #[arg(long, value_delimiter = ',')]
    replicas: Vec<u16>,
    #[arg(long)]
    causeway: u16,
    #[arg(long)]
    causeway_pid: u32,
    #[arg(long)]
    router_ro: u16,
    #[arg(long)]
    router_rw: u16,
    #[arg(long)]
    router_pid: u32,
    /// Seconds per sysbench run.
    #[arg(long, default_value_t = 10)]
    time: u32,
    /// The 2-minute subset.
    #[arg(long)]
    quick: bool,
    /// Output directory.
    #[arg(long, default_value = "bench/results")]
    out: String,
    /// Free text recorded with the results (machine, load, ...).
    #[arg(long, default_value = "")]
    note: String,
    #[arg(long, default_value_t = 4)]
    tables: u32,
    #[arg(long, default_value_t = 10000)]
    table_size: u32,
}

#[derive(Serialize, Debug, Clone)]
struct Run {
    workload: String,
    ps_mode: String,
    threads: u32,
    target: String,
    seconds: f64,
    queries: u64,
    transactions: u64,
    qps: f64,
    tps: f64,
    ignored_errors: u64,
    reconnects: u64,
    /// Per sysbench event (one transaction / one point select), milliseconds.
    lat_avg_ms: f64,
    lat_p50_ms: f64,
    lat_p95_ms: f64,
    lat_p99_ms: f64,
    /// Proxy CPU (user+sys) per query, µs; None for direct targets.
    proxy_cpu_us_per_query: Option<f64>,
    /// Proxy CPU as a share of one core over the run.
    proxy_cpu_cores: Option<f64>,
}

struct Target {
    name: &'static str,
    hosts: String,
    ports: String,
    pid: Option<u32>,
}

fn base_args(a: &Args, hosts: &str, ports: &str) -> Vec<String> {
    vec![
        format!("--mysql-host={hosts}"),
        format!("--mysql-port={ports}"),
        "--mysql-user=app".into(),
        "--mysql-password=apppw".into(),
        "--mysql-db=sbtest".into(),
        "--mysql-ssl=off".into(),
        format!("--tables={}", a.tables),
        format!("--table-size={}", a.table_size),
    ]
}

fn sysbench(args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("sysbench")
        .args(args)
        .output()
        .context("running sysbench (apt-get install sysbench)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() || stdout.contains("FATAL") || stderr.contains("FATAL") {
        bail!(
            "sysbench {} failed ({}):\n{stdout}\n{stderr}",
            args.join(" "),
            out.status
        );
    }
    Ok(stdout)
}

/// `label: N (X per sec.)` -> N
fn count_after(text: &str, label: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix(label)?.trim();
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

fn float_after(text: &str, label: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix(label)?.trim();
            rest.trim_end_matches('s').parse().ok()
        })
        .unwrap_or(f64::NAN)
}

/// Latency percentiles from sysbench's `--histogram=on` output.
fn histogram_percentiles(text: &str) -> (f64, f64, f64) {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for l in text.lines() {
        let Some((v, rest)) = l.split_once('|') else {
            continue;
        };
        let Ok(v) = v.trim().parse::<f64>() else {
            continue;
        };
        let Some(c) = rest
            .trim_start_matches(['*', ' '])
            .split_whitespace()
            .last()
            .and_then(|c| c.parse::<u64>().ok())
        else {
            continue;
        };
        buckets.push((v, c));
    }
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    let pct = |p: f64| {
        let want = (p / 100.0 * total as f64).ceil() as u64;
        let mut acc = 0;
        for (v, c) in &buckets {
            acc += c;
            if acc >= want.max(1) {
                return *v;
            }
        }
        f64::NAN
    };
    (pct(50.0), pct(95.0), pct(99.0))
}

fn run_one(a: &Args, workload: &str, ps: &str, threads: u32, t: &Target) -> anyhow::Result<Run> {
    let mut args = vec![workload.to_string()];
    args.extend(base_args(a, &t.hosts, &t.ports));
    args.extend([
        format!("--threads={threads}"),
        format!("--time={}", a.time),
        format!("--db-ps-mode={ps}"),
        "--histogram=on".into(),
        "--percentile=99".into(),
        "--report-interval=0".into(),
        "--rand-type=uniform".into(),
    ]);
    if workload == "oltp_read_only" {
        args.push("--skip_trx=on".into());
    }
    args.push("run".into());
    let cpu0 = t.pid.and_then(proc_cpu_us);
    let out = sysbench(&args)?;
    let cpu1 = t.pid.and_then(proc_cpu_us);
    let queries = count_after(&out, "queries:");
    let transactions = count_after(&out, "transactions:");
    if queries == 0 || transactions == 0 {
        bail!("sysbench {} ran no queries:\n{out}", args.join(" "));
    }
    let seconds = float_after(&out, "total time:");
    let (p50, p95, p99) = histogram_percentiles(&out);
    let cpu = match (cpu0, cpu1) {
        (Some(x), Some(y)) => Some((y - x) as f64),
        _ => None,
    };
    Ok(Run {
        workload: workload.into(),
        ps_mode: ps.into(),
        threads,
        target: t.name.into(),
        seconds,
        queries,
        transactions,
        qps: queries as f64 / seconds,
        tps: transactions as f64 / seconds,
        ignored_errors: count_after(&out, "ignored errors:"),
        reconnects: count_after(&out, "reconnects:"),
        lat_avg_ms: float_after(&out, "avg:"),
        lat_p50_ms: p50,
        lat_p95_ms: p95,
        lat_p99_ms: p99,
        proxy_cpu_us_per_query: cpu.map(|c| c / queries as f64),
        proxy_cpu_cores: cpu.map(|c| c / 1e6 / seconds),
    })
}

async fn prepare(a: &Args) -> anyhow::Result<()> {
    let opts = causeway_bench::app_opts;
    // One full login per server also warms the caching_sha2_password cache,
    // so libmariadb (sysbench) takes the fast path afterwards.
    for &p in a.replicas.iter().chain([a.primary].iter()) {
        let mut c = mysql_async::Conn::new(opts(p)).await?;
        c.query_drop("SELECT 1").await?;
        c.disconnect().await?;
    }
    let mut c = mysql_async::Conn::new(opts(a.primary)).await?;
    c.query_drop("DROP DATABASE IF EXISTS sbtest").await?;
    c.query_drop("CREATE DATABASE sbtest").await?;
    let mut args = vec!["oltp_read_write".to_string()];
    args.extend(base_args(a, "127.0.0.1", &a.primary.to_string()));
    args.extend(["--threads=4".into(), "prepare".into()]);
    sysbench(&args)?;
    let gtids: String = c
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await?
        .unwrap_or_default();
    for &p in &a.replicas {
        let mut r = mysql_async::Conn::new(opts(p)).await?;
        let timed_out: Option<i64> = r
            .exec_first(
                "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 120)",
                (gtids.clone(),),
            )
            .await?;
        if timed_out != Some(0) {
            bail!("replica {p} did not catch up with the prepared tables");
        }
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn markdown(a: &Args, runs: &[Run], header: &str) -> String {
    let mut md = String::new();
    md.push_str(header);
    md.push_str(
        "\nLatency is per sysbench event (one point select; one 14-query read-only \
         transaction; one 18-query read/write transaction), from `--histogram=on`.\n\n",
    );
    md.push_str("| workload | ps | thr | target | QPS | ×direct | p50 ms | p95 ms | p99 ms | Δp50 µs vs direct | proxy CPU µs/query | proxy cores | errors |\n");
    md.push_str("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut direct: BTreeMap<(String, String, u32), Run> = BTreeMap::new();
    for r in runs {
        if r.target == "direct" {
            direct.insert(
                (r.workload.clone(), r.ps_mode.clone(), r.threads),
                r.clone(),
            );
        }
    }
    for r in runs {
        let d = direct.get(&(r.workload.clone(), r.ps_mode.clone(), r.threads));
        let ratio = d.map(|d| r.qps / d.qps);
        let dp50 = d.map(|d| (r.lat_p50_ms - d.lat_p50_ms) * 1000.0);
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} |\n",
            r.workload,
            r.ps_mode,
            r.threads,
            r.target,
            r.qps,
            fmt_opt(ratio, 2),
            r.lat_p50_ms,
            r.lat_p95_ms,
            r.lat_p99_ms,
            if r.target == "direct" {
                "-".into()
            } else {
                fmt_opt(dp50, 0)
            },
            fmt_opt(r.proxy_cpu_us_per_query, 1),
            fmt_opt(r.proxy_cpu_cores, 2),
            r.ignored_errors + r.reconnects,
        ));
    }
    // Targets.
    md.push_str("\n### Targets (point select)\n\n");
    let find = |ps: &str, thr: u32, target: &str| {
        runs.iter().find(|r| {
            r.workload == "oltp_point_select"
                && r.ps_mode == ps
                && r.threads == thr
                && r.target == target
        })
    };
    for ps in ["disable", "auto"] {
        if let (Some(d), Some(c)) = (find(ps, 4, "direct"), find(ps, 4, "causeway")) {
            let rd = c.qps / d.qps;
            md.push_str(&format!(
                "- ps={ps}, 4 threads: causeway {:.0} QPS = {:.2}× direct (target ≥ 0.85: {})",
                c.qps,
                rd,
                if rd >= 0.85 { "met" } else { "MISSED" }
            ));
            if let Some(rt) = find(ps, 4, "router") {
                let rr = c.qps / rt.qps;
                md.push_str(&format!(
                    "; {:.2}× MySQL Router ({:.0} QPS; target ≥ 1.5: {})",
                    rr,
                    rt.qps,
                    if rr >= 1.5 { "met" } else { "MISSED" }
                ));
            }
            md.push('\n');
        }
        if let (Some(d), Some(c)) = (find(ps, 1, "direct"), find(ps, 1, "causeway")) {
            let add = (c.lat_p50_ms - d.lat_p50_ms) * 1000.0;
            md.push_str(&format!(
                "- ps={ps}, 1 thread: p50 direct {:.0} µs, causeway {:.0} µs: +{:.0} µs (target ≤ 30: {}); \
                 average latency +{:.0} µs\n",
                d.lat_p50_ms * 1000.0,
                c.lat_p50_ms * 1000.0,
                add,
                if add <= 30.0 { "met" } else { "MISSED" },
                (c.lat_avg_ms - d.lat_avg_ms) * 1000.0,
            ));
        }
    }
    let _ = a;
    md
}

/// One target on localhost.
fn target(name: &'static str, hosts: &str, ports: String, pid: Option<u32>) -> Target {
    Target {
        name,
        hosts: hosts.into(),
        ports,
        pid,
    }
}

/// The read-only targets (direct replica, client-side spread, causeway,
/// Router's RO port) and the read-write targets (direct primary, causeway,
/// Router's RW port).
fn targets(a: &Args) -> (Vec<Target>, Vec<Target>) {
    let ro = vec![
        target("direct", "127.0.0.1", a.replicas[0].to_string(), None),
        target(
            "spread",
            "127.0.0.1,127.0.0.1",
            format!("{},{}", a.replicas[0], a.replicas[1]),
            None,
        ),
        target(
            "causeway",
            "127.0.0.1",
            a.causeway.to_string(),
            Some(a.causeway_pid),
        ),
        target(
            "router",
            "127.0.0.1",
            a.router_ro.to_string(),
            Some(a.router_pid),
        ),
    ];
    let rw = vec![
        target("direct", "127.0.0.1", a.primary.to_string(), None),
        target(
            "causeway",
            "127.0.0.1",
            a.causeway.to_string(),
            Some(a.causeway_pid),
        ),
        target(
            "router",
            "127.0.0.1",
            a.router_rw.to_string(),
            Some(a.router_pid),
        ),
    ];
    (ro, rw)
}

/// (workload, ps modes, thread counts)
type Plan = Vec<(&'static str, Vec<&'static str>, Vec<u32>)>;

fn plan(quick: bool) -> Plan {
    if quick {
        vec![
            ("oltp_point_select", vec!["disable", "auto"], vec![1, 4]),
            ("oltp_read_only", vec!["disable"], vec![4]),
            ("oltp_read_write", vec!["disable"], vec![4]),
        ]
    } else {
        let all = vec![1, 4, 16, 64];
        vec![
            ("oltp_point_select", vec!["disable", "auto"], all.clone()),
            ("oltp_read_only", vec!["disable", "auto"], all.clone()),
            ("oltp_read_write", vec!["disable", "auto"], all),
        ]
    }
}

/// Every (workload, ps, threads, target) run of the plan, in order.
async fn run_plan(a: &Args, ro: &[Target], rw: &[Target]) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (w, pss, threads) in &plan(a.quick) {
        let targets = if *w == "oltp_read_write" { rw } else { ro };
        for ps in pss {
            for &thr in threads {
                for t in targets {
                    let r = run_one(a, w, ps, thr, t)?;
                    eprintln!(
                        "{w:<18} ps={ps:<7} thr={thr:<2} {:<8} qps={:>8.0} p50={:.3}ms p99={:.3}ms cpu/q={}µs",
                        t.name,
                        r.qps,
                        r.lat_p50_ms,
                        r.lat_p99_ms,
                        fmt_opt(r.proxy_cpu_us_per_query, 1)
                    );
                    runs.push(r);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
    Ok(runs)
}

/// Write `<out>/<stamp>-sysbench[-quick].{md,json}` and print the markdown.
fn write_report(
    a: &Args,
    runs: Vec<Run>,
    stamp: &str,
    load0: &str,
    load1: &str,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let header = format!(
        "## sysbench matrix {stamp}{}\n\n{} s per run, {} tables × {} rows, {} cores shared by \
         sysbench, 3 mysqld, causeway and Router (and other builds on the host: expect noise). \
         loadavg before: {}; after: {}. {}\n",
        if a.quick { " (quick)" } else { "" },
        a.time,
        a.tables,
        a.table_size,
        cores,
        load0,
        load1,
        a.note
    );
    let md = markdown(a, &runs, &header);
    std::fs::create_dir_all(&a.out)?;
    let suffix = if a.quick {
        "sysbench-quick"
    } else {
        "sysbench"
    };
    let base = format!("{}/{stamp}-{suffix}", a.out);
    std::fs::write(format!("{base}.md"), &md)?;
    let json = serde_json::json!({
        "stamp": stamp,
        "quick": a.quick,
        "seconds_per_run": a.time,
        "tables": a.tables,
        "table_size": a.table_size,
        "cores": cores,
        "loadavg_before": load0,
        "loadavg_after": load1,
        "note": a.note,
        "runs": runs,
    });
    std::fs::write(format!("{base}.json"), serde_json::to_string_pretty(&json)?)?;
    println!("{md}");
    eprintln!("wrote {base}.md and {base}.json");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.replicas.len() < 2 {
        bail!("need two replicas");
    }
    prepare(&a).await?;
    let (ro_targets, rw_targets) = targets(&a);
    // Warm every target's connection path once (pools, caches).
    for t in ro_targets.iter().chain(rw_targets.iter()) {
        let mut args = vec!["oltp_point_select".to_string()];
        args.extend(base_args(&a, &t.hosts, &t.ports));
        args.extend(["--threads=4".into(), "--time=1".into(), "run".into()]);
        sysbench(&args).with_context(|| format!("warm-up of {}", t.name))?;
    }
    let stamp = timestamp();
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let runs = run_plan(&a, &ro_targets, &rw_targets).await?;
    let load1 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    write_report(&a, runs, &stamp, load0.trim(), load1.trim())
}
