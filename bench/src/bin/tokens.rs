//! `tokens`: what consistency tokens cost, and a stale-read checker.
//!
//! Against a running topology and causeway (ports on the command line):
//!
//! 1. **caught-up reads**: one session holding a token that every replica
//!    already contains; point reads in alternating blocks of `causal` and
//!    `eventual` mode. The difference is the cost of checking the token.
//! 2. **write → read**: sessions update their row through causeway and read
//!    it back at once, in causal and in eventual mode; read latency, where
//!    each read ran (`@@causeway.last_route`: replica directly, replica after
//!    waiting, primary fallback) and stale reads.
//! 3. **write path**: the same INSERT loop directly on the primary and
//!    through causeway (session tracking of GTIDs and token bookkeeping).
//! 4. **checker**: ≥ 10,000 write→read pairs over ≥ 8 sessions while a
//!    background task stops/delays/resumes the replicas' appliers; stale
//!    reads must be 0 in causal mode, causal reads must have waited or
//!    fallen back, and eventual mode must have read stale (else the run
//!    proved nothing and fails).
//!
//! Writes `<out>/<stamp>-tokens.{md,json}`; exits non-zero when a causal read
//! was stale, or when the checker could not have failed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use causeway_bench::{app_opts as opts, stats, timestamp, us, Stats};
use clap::Parser;
use mysql_async::prelude::*;
use mysql_async::Conn;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug, Clone)]
struct Args {
    #[arg(long)]
    primary: u16,
    #[arg(long, value_delimiter = ',')]
    replicas: Vec<u16>,
    #[arg(long)]
    causeway: u16,
    /// Sessions of the checker.
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// Write→read pairs per checker run (all sessions together).
    #[arg(long, default_value_t = 10_000)]
    pairs: usize,
    /// Reads per mode in the caught-up comparison; pairs per mode in write→read.
    #[arg(long, default_value_t = 4000)]
    iters: usize,
    /// `@@causeway.wait_timeout_ms` for checker sessions.
    #[arg(long, default_value_t = 250)]
    wait_timeout_ms: u64,
    #[arg(long, default_value = "bench/results")]
    out: String,
    #[arg(long, default_value = "")]
    note: String,
}

async fn connect(port: u16) -> anyhow::Result<Conn> {
    Conn::new(opts(port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))
}

/// Where reads ran, from `@@causeway.last_route`.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
struct Routes {
    replica: u64,
    replica_waited: u64,
    primary_fallback: u64,
    primary_other: u64,
}

impl Routes {
    fn add(&mut self, route: &str) {
        if route.starts_with("replica:") && route.ends_with(":waited") {
            self.replica_waited += 1;
        } else if route.starts_with("replica:") {
            self.replica += 1;
        } else if route == "primary:fallback" {
            self.primary_fallback += 1;
        } else {
            self.primary_other += 1;
        }
    }
    fn merge(&mut self, o: &Routes) {
        self.replica += o.replica;
        self.replica_waited += o.replica_waited;
        self.primary_fallback += o.primary_fallback;
        self.primary_other += o.primary_other;
    }
    fn shares(&self) -> String {
        let t = (self.replica + self.replica_waited + self.primary_fallback + self.primary_other)
            .max(1) as f64;
        format!(
            "replica directly {:.1}%, replica after waiting {:.1}%, primary fallback {:.1}%, primary other {:.1}%",
            100.0 * self.replica as f64 / t,
            100.0 * self.replica_waited as f64 / t,
            100.0 * self.primary_fallback as f64 / t,
            100.0 * self.primary_other as f64 / t
        )
    }
}

async fn last_route(c: &mut Conn) -> anyhow::Result<String> {
    Ok(c.query_first("SELECT @@causeway.last_route")
        .await?
        .unwrap_or_default())
}

async fn wait_replicated(a: &Args) -> anyhow::Result<()> {
    let mut p = connect(a.primary).await?;
    let g: String = p
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await?
        .unwrap_or_default();
    for &r in &a.replicas {
        let mut c = connect(r).await?;
        let t: Option<i64> = c
            .exec_first("SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 60)", (g.clone(),))
            .await?;
        if t != Some(0) {
            bail!("replica {r} did not catch up");
        }
    }
    Ok(())
}

async fn setup(a: &Args) -> anyhow::Result<()> {
    let mut p = connect(a.primary).await?;
    p.query_drop("DROP DATABASE IF EXISTS cwtok").await?;
    p.query_drop("CREATE DATABASE cwtok").await?;
    p.query_drop("CREATE TABLE cwtok.t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .await?;
    p.query_drop("CREATE TABLE cwtok.ins (id BIGINT AUTO_INCREMENT PRIMARY KEY, s INT, v BIGINT)")
        .await?;
    let rows: Vec<String> = (0..1000).map(|i| format!("({i},0)")).collect();
    p.query_drop(format!("INSERT INTO cwtok.t VALUES {}", rows.join(",")))
        .await?;
    for &r in &a.replicas {
        let mut c = connect(r).await?;
        reset_replica(&mut c).await?;
    }
    wait_replicated(a).await
}

async fn reset_replica(c: &mut Conn) -> anyhow::Result<()> {
    c.query_drop("STOP REPLICA SQL_THREAD").await?;
    c.query_drop("CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 0")
        .await?;
    c.query_drop("START REPLICA SQL_THREAD").await?;
    Ok(())
}

async fn proxy_session(a: &Args, mode: &str) -> anyhow::Result<Conn> {
    let mut c = connect(a.causeway).await?;
    c.query_drop("USE cwtok").await?;
    c.query_drop(format!("SET @@causeway.consistency = '{mode}'"))
        .await?;
    Ok(c)
}

/// 1. Caught-up replicas: causal (token contained everywhere) vs eventual.
async fn caught_up(a: &Args) -> anyhow::Result<serde_json::Value> {
    let mut c = proxy_session(a, "causal").await?;
    c.query_drop("UPDATE t SET v = v + 1 WHERE id = 999")
        .await?;
    let token: String = c
        .query_first("SELECT @@causeway.token")
        .await?
        .unwrap_or_default();
    if token.is_empty() {
        bail!("no token after a write through causeway");
    }
    wait_replicated(a).await?;
    // Let the monitor (GTID poll every 50 ms) see the caught-up replicas.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blocks = 20;
    let per = (a.iters / blocks).max(1);
    let (mut causal, mut eventual) = (Vec::new(), Vec::new());
    let mut routes_causal = Routes::default();
    for b in 0..blocks * 2 {
        let mode = if b % 2 == 0 { "causal" } else { "eventual" };
        c.query_drop(format!("SET @@causeway.consistency = '{mode}'"))
            .await?;
        for i in 0..per {
            let id = (i * 7 + b) % 1000;
            let t0 = Instant::now();
            let _: Option<i64> = c
                .query_first(format!("SELECT v FROM t WHERE id = {id}"))
                .await?;
            let d = us(t0.elapsed());
            if mode == "causal" {
                causal.push(d);
            } else {
                eventual.push(d);
            }
        }
        if mode == "causal" {
            routes_causal.add(&last_route(&mut c).await?);
        }
    }
    let (sc, se) = (stats(causal), stats(eventual));
    Ok(serde_json::json!({
        "token": token,
        "causal": sc,
        "eventual": se,
        "p50_ratio": sc.p50_us / se.p50_us,
        "mean_ratio": sc.mean_us / se.mean_us,
        "causal_last_route_per_block": routes_causal,
    }))
}

#[derive(Serialize, Debug, Clone, Default)]
struct PairResult {
    mode: String,
    sessions: usize,
    pairs: u64,
    stale: u64,
    write: Stats,
    read: Stats,
    routes: Routes,
    seconds: f64,
}

/// Write→read pairs: each session updates its own row with an increasing
/// value and reads it back; a read returning less is stale.
async fn pairs(
    a: &Args,
    mode: &str,
    sessions: usize,
    total: usize,
    id_base: usize,
    wait_timeout_ms: Option<u64>,
) -> anyhow::Result<PairResult> {
    let per = total.div_ceil(sessions);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for s in 0..sessions {
        let a = a.clone();
        let mode = mode.to_string();
        set.spawn(async move {
            let mut c = proxy_session(&a, &mode).await?;
            if let Some(w) = wait_timeout_ms {
                c.query_drop(format!("SET @@causeway.wait_timeout_ms = {w}"))
                    .await?;
            }
            let id = id_base + s;
            let mut v: i64 = c
                .query_first(format!("SELECT v FROM t WHERE id = {id} FOR UPDATE"))
                .await?
                .unwrap_or(0);
            let (mut w, mut r) = (Vec::with_capacity(per), Vec::with_capacity(per));
            let mut routes = Routes::default();
            let mut stale = 0u64;
            for _ in 0..per {
                v += 1;
                let t = Instant::now();
                c.query_drop(format!("UPDATE t SET v = {v} WHERE id = {id}"))
                    .await?;
                w.push(us(t.elapsed()));
                let t = Instant::now();
                let got: Option<i64> = c
                    .query_first(format!("SELECT v FROM t WHERE id = {id}"))
                    .await?;
                r.push(us(t.elapsed()));
                routes.add(&last_route(&mut c).await?);
                if got.unwrap_or(-1) < v {
                    stale += 1;
                }
            }
            Ok::<_, anyhow::Error>((w, r, routes, stale))
        });
    }
    let mut res = PairResult {
        mode: mode.into(),
        sessions,
        ..Default::default()
    };
    let (mut w, mut r) = (Vec::new(), Vec::new());
    while let Some(j) = set.join_next().await {
        let (ws, rs, routes, stale) = j??;
        res.pairs += rs.len() as u64;
        w.extend(ws);
        r.extend(rs);
        res.routes.merge(&routes);
        res.stale += stale;
    }
    res.seconds = t0.elapsed().as_secs_f64();
    res.write = stats(w);
    res.read = stats(r);
    Ok(res)
}

/// 3. INSERT loop directly on the primary vs through causeway.
async fn write_path(a: &Args) -> anyhow::Result<serde_json::Value> {
    let mut d = connect(a.primary).await?;
    d.query_drop("USE cwtok").await?;
    // The same server-side work causeway asks for on every backend connection.
    let mut t = connect(a.primary).await?;
    t.query_drop("USE cwtok").await?;
    t.query_drop("SET SESSION session_track_gtids = 'ALL_GTIDS'")
        .await?;
    let mut c = proxy_session(a, "causal").await?;
    let (mut direct, mut tracked, mut proxied) = (Vec::new(), Vec::new(), Vec::new());
    let blocks = 20;
    let per = (a.iters / blocks).max(1);
    for b in 0..blocks * 3 {
        let (conn, out) = match b % 3 {
            0 => (&mut d, &mut direct),
            1 => (&mut t, &mut tracked),
            _ => (&mut c, &mut proxied),
        };
        for i in 0..per {
            let t = Instant::now();
            conn.query_drop(format!("INSERT INTO ins (s, v) VALUES ({b}, {i})"))
                .await?;
            out.push(us(t.elapsed()));
        }
    }
    let (sd, st, sc) = (stats(direct), stats(tracked), stats(proxied));
    Ok(serde_json::json!({
        "direct": sd,
        "direct_tracked": st,
        "causeway": sc,
        "added_p50_us": sc.p50_us - sd.p50_us,
        "added_mean_us": sc.mean_us - sd.mean_us,
    }))
}

/// Background chaos on the replicas' appliers until `stop`.
async fn disrupt(
    replicas: Vec<u16>,
    stop: Arc<AtomicBool>,
    actions: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut conns = Vec::new();
    for &r in &replicas {
        conns.push(connect(r).await?);
    }
    while !stop.load(Ordering::Relaxed) {
        let (idx, kind, pause, gap) = {
            let mut rng = rand::rng();
            (
                rng.random_range(0..conns.len()),
                rng.random_range(0..2),
                rng.random_range(200..900),
                rng.random_range(100..600),
            )
        };
        let c = &mut conns[idx];
        c.query_drop("STOP REPLICA SQL_THREAD").await?;
        if kind == 0 {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        } else {
            c.query_drop("CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 1")
                .await?;
            c.query_drop("START REPLICA SQL_THREAD").await?;
            tokio::time::sleep(Duration::from_millis(pause + 1000)).await;
            c.query_drop("STOP REPLICA SQL_THREAD").await?;
            c.query_drop("CHANGE REPLICATION SOURCE TO SOURCE_DELAY = 0")
                .await?;
        }
        c.query_drop("START REPLICA SQL_THREAD").await?;
        actions.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }
    for c in &mut conns {
        reset_replica(c).await?;
    }
    Ok(())
}

async fn checker(a: &Args, mode: &str, id_base: usize) -> anyhow::Result<(PairResult, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let actions = Arc::new(AtomicU64::new(0));
    let chaos = tokio::spawn(disrupt(
        a.replicas.clone(),
        Arc::clone(&stop),
        Arc::clone(&actions),
    ));
    let r = pairs(
        a,
        mode,
        a.sessions,
        a.pairs,
        id_base,
        Some(a.wait_timeout_ms),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    chaos.await??;
    wait_replicated(a).await?;
    Ok((r?, actions.load(Ordering::Relaxed)))
}

fn stats_row(name: &str, s: &Stats) -> String {
    format!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        s.n, s.mean_us, s.p50_us, s.p95_us, s.p99_us
    )
}

fn field(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// Caught-up replicas: causal vs eventual point reads.
fn md_caught_up(a: &Args, stamp: &str, cu: &serde_json::Value) -> String {
    let mut md = format!(
        "## Token workload {stamp}\n\n{}\n\n### Caught-up replicas: causal vs eventual point reads (1 session)\n\n\
         Token held: every replica contains it; alternating blocks of {} reads.\n\n\
         | mode | n | mean µs | p50 µs | p95 µs | p99 µs |\n|---|---:|---:|---:|---:|---:|\n",
        a.note,
        (a.iters / 20).max(1)
    );
    let cs: Stats = serde_json::from_value(cu["causal"].clone()).unwrap_or_default();
    let es: Stats = serde_json::from_value(cu["eventual"].clone()).unwrap_or_default();
    md.push_str(&stats_row("causal", &cs));
    md.push_str(&stats_row("eventual", &es));
    let ratio = field(cu, "p50_ratio");
    md.push_str(&format!(
        "\ncausal/eventual p50 = {ratio:.3}, mean = {:.3} (target ≤ 1.05: {}).\n",
        field(cu, "mean_ratio"),
        if ratio <= 1.05 { "met" } else { "MISSED" }
    ));
    let rc: Routes =
        serde_json::from_value(cu["causal_last_route_per_block"].clone()).unwrap_or_default();
    md.push_str(&format!(
        "Last causal read of each block ran on: {}.\n",
        rc.shares()
    ));
    md
}

/// Write → immediate read of the same row.
fn md_write_read(wr_c: &PairResult, wr_e: &PairResult) -> String {
    let mut md = String::from(
        "\n### Write → immediate read of the same row (4 sessions, healthy replication)\n\n\
         | mode | pairs | read mean µs | read p50 | read p95 | read p99 | write p50 µs | stale | routes |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in [wr_c, wr_e] {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |\n",
            r.mode,
            r.pairs,
            r.read.mean_us,
            r.read.p50_us,
            r.read.p95_us,
            r.read.p99_us,
            r.write.p50_us,
            r.stale,
            r.routes.shares()
        ));
    }
    md.push_str(&format!(
        "\nAdded read latency of causal over eventual right after a write: p50 +{:.0} µs, mean +{:.0} µs.\n",
        wr_c.read.p50_us - wr_e.read.p50_us,
        wr_c.read.mean_us - wr_e.read.mean_us
    ));
    md
}

/// Write path: direct vs through causeway.
fn md_write_path(wp: &serde_json::Value) -> String {
    let mut md = String::from(
        "\n### Write path: INSERT directly on the primary vs through causeway (1 session)\n\n\
         | path | n | mean µs | p50 µs | p95 µs | p99 µs |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let wd: Stats = serde_json::from_value(wp["direct"].clone()).unwrap_or_default();
    let wc: Stats = serde_json::from_value(wp["causeway"].clone()).unwrap_or_default();
    let wt: Stats = serde_json::from_value(wp["direct_tracked"].clone()).unwrap_or_default();
    md.push_str(&stats_row("direct", &wd));
    md.push_str(&stats_row("direct + session_track_gtids=ALL_GTIDS", &wt));
    md.push_str(&stats_row("causeway", &wc));
    md.push_str(&format!(
        "\nAdded by causeway on the write path: p50 +{:.0} µs, mean +{:.0} µs.\n",
        field(wp, "added_p50_us"),
        field(wp, "added_mean_us")
    ));
    md
}

/// Consistency checker under disrupted replicas, with the verdict.
fn md_checker(a: &Args, checks: [(&PairResult, u64); 2]) -> String {
    let mut md = format!(
        "\n### Consistency checker: replicas' appliers stopped / delayed (SOURCE_DELAY=1) / resumed at random\n\n\
         {} sessions, `@@causeway.wait_timeout_ms = {}`.\n\n\
         | mode | pairs | stale reads | disruptions | seconds | read p50 µs | read p99 µs | routes |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
        a.sessions, a.wait_timeout_ms
    );
    for (r, act) in checks {
        md.push_str(&format!(
            "| {} | {} | **{}** | {} | {:.1} | {:.0} | {:.0} | {} |\n",
            r.mode,
            r.pairs,
            r.stale,
            act,
            r.seconds,
            r.read.p50_us,
            r.read.p99_us,
            r.routes.shares()
        ));
    }
    let [(ck_c, _), (ck_e, _)] = checks;
    md.push_str(&format!(
        "\nCausal stale reads: {} (must be 0: {}). Eventual stale reads: {} (expected > 0: {}).\n",
        ck_c.stale,
        if ck_c.stale == 0 { "ok" } else { "FAILED" },
        ck_e.stale,
        if ck_e.stale > 0 {
            "ok"
        } else {
            "FAILED: not shown"
        }
    ));
    md
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.sessions < 1 || a.replicas.is_empty() {
        bail!("need sessions and replicas");
    }
    let stamp = timestamp();
    setup(&a).await?;
    eprintln!("tokens: caught-up causal vs eventual ...");
    let cu = caught_up(&a).await?;
    eprintln!("{cu}");
    eprintln!("tokens: write→read, 4 sessions ...");
    let wr_c = pairs(&a, "causal", 4, a.iters, 100, None).await?;
    let wr_e = pairs(&a, "eventual", 4, a.iters, 200, None).await?;
    eprintln!("causal: {wr_c:?}\neventual: {wr_e:?}");
    eprintln!("tokens: write path ...");
    let wp = write_path(&a).await?;
    eprintln!("{wp}");
    eprintln!("tokens: checker (causal, replicas disrupted) ...");
    let (ck_c, act_c) = checker(&a, "causal", 300).await?;
    eprintln!("{ck_c:?} actions={act_c}");
    eprintln!("tokens: checker (eventual, replicas disrupted) ...");
    let (ck_e, act_e) = checker(&a, "eventual", 400).await?;
    eprintln!("{ck_e:?} actions={act_e}");

    let mut md = md_caught_up(&a, &stamp, &cu);
    md.push_str(&md_write_read(&wr_c, &wr_e));
    md.push_str(&md_write_path(&wp));
    md.push_str(&md_checker(&a, [(&ck_c, act_c), (&ck_e, act_e)]));
    std::fs::create_dir_all(&a.out)?;
    let base = format!("{}/{stamp}-tokens", a.out);
    std::fs::write(format!("{base}.md"), &md)?;
    let json = serde_json::json!({
        "stamp": stamp,
        "note": a.note,
        "caught_up": cu,
        "write_read": [wr_c, wr_e],
        "write_path": wp,
        "checker": [
            {"result": ck_c, "disruptions": act_c},
            {"result": ck_e, "disruptions": act_e},
        ],
        "wait_timeout_ms": a.wait_timeout_ms,
    });
    std::fs::write(format!("{base}.json"), serde_json::to_string_pretty(&json)?)?;
    println!("{md}");
    eprintln!("wrote {base}.md and {base}.json");
    verdict(&ck_c, &wr_c, &ck_e)
}

/// Fails on a stale causal read, and when the run proved nothing: the
/// disruptions must have made causal reads wait or fall back, and the same
/// reads in eventual mode stale.
fn verdict(ck_c: &PairResult, wr_c: &PairResult, ck_e: &PairResult) -> anyhow::Result<()> {
    if ck_c.stale > 0 || wr_c.stale > 0 {
        bail!("causal mode returned stale reads");
    }
    if ck_c.routes.replica_waited + ck_c.routes.primary_fallback == 0 {
        bail!("the causal checker never waited or fell back: the replicas were never behind");
    }
    if ck_e.stale == 0 {
        bail!("the eventual checker read nothing stale: the causal check could not have failed");
    }
    Ok(())
}
