//! `tls`: the added cost of TLS on causeway's client side and backend side.
//!
//! Starts a sandbox primary (no replicas: every query goes to it), makes a
//! throwaway CA and server certificate, and runs four `causeway` processes
//! (the binary given with `--causeway`), one per combination of client TLS
//! (`[tls]` present, the client verifies the certificate) and backend TLS
//! (`[backend_tls] mode = "required"` vs `"disabled"`). One client
//! connection (mysql_async) per process runs `--queries` COM_QUERY
//! statements back to back, for two statements: `SELECT 1` and a 16 KiB
//! result. Rounds alternate the four processes so drift hits all alike.
//!
//! Reported per combination: mean / p50 / p99 latency in µs, and proxy CPU
//! µs per query (utime+stime from `/proc/<pid>/stat` before/after, divided
//! by the queries). Markdown on stdout and in
//! `bench/results/<stamp>-tls.md` (with `--out`).

use anyhow::Context;
use causeway_bench::{percentile, proc_cpu_us, timestamp};
use causeway_sandbox::{Options, Topology};
use clap::Parser;
use mysql_async::prelude::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The causeway binary (a release build).
    #[arg(long)]
    causeway: PathBuf,
    /// Queries per statement, process and round.
    #[arg(long, default_value_t = 5000)]
    queries: usize,
    /// Rounds over the four processes.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Write the markdown to bench/results/<stamp>-tls.md as well.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Free text stored with the results (e.g. the crypto provider).
    #[arg(long, default_value = "")]
    note: String,
}

struct Proxy {
    name: &'static str,
    client_tls: bool,
    port: u16,
    child: Child,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn config(
    port: u16,
    primary: &str,
    client: Option<&causeway_sandbox::CertFiles>,
    backend: &str,
) -> String {
    let mut s = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nenabled = false\n\
         [[users]]\nname = \"app\"\npassword = \"apppw\"\n\
         [primary]\nname = \"primary\"\naddress = \"{primary}\"\n\
         [monitor]\nuser = \"monitor\"\npassword = \"monitorpw\"\n\
         [backend_tls]\nmode = \"{backend}\"\n"
    );
    if let Some(c) = client {
        s.push_str(&format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            c.cert.display(),
            c.key.display()
        ));
    }
    s
}

fn opts(p: &Proxy, ca: &std::path::Path) -> mysql_async::Opts {
    let mut b = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(p.port)
        .user(Some("app"))
        .pass(Some("apppw"))
        .prefer_socket(false);
    if p.client_tls {
        b = b.ssl_opts(
            mysql_async::SslOpts::default()
                .with_disable_built_in_roots(true)
                .with_root_certs(vec![ca.to_path_buf().into()]),
        );
    }
    b.into()
}

#[derive(Default, Clone)]
struct Sample {
    lat_us: Vec<f64>,
    cpu_us: u64,
    queries: u64,
}

async fn measure(p: &Proxy, ca: &std::path::Path, sql: &str, n: usize) -> anyhow::Result<Sample> {
    let mut c = mysql_async::Conn::new(opts(p, ca)).await.context(p.name)?;
    for _ in 0..200 {
        c.query_drop(sql).await?; // warm-up
    }
    let pid = p.child.id();
    let cpu0 = proc_cpu_us(pid).context("proc stat")?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let _: Vec<mysql_async::Row> = c.query(sql).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let cpu1 = proc_cpu_us(pid).context("proc stat")?;
    c.disconnect().await?;
    Ok(Sample {
        lat_us: lat,
        cpu_us: cpu1.saturating_sub(cpu0),
        queries: n as u64,
    })
}

/// Start one `causeway` per (client TLS, backend TLS) combination and wait
/// until each one serves.
async fn start_proxies(
    args: &Args,
    topo: &Topology,
    certs: &causeway_sandbox::CertFiles,
) -> anyhow::Result<Vec<Proxy>> {
    let primary = topo.primary().addr();
    let dir = topo.dir().join("bench-cfg");
    std::fs::create_dir_all(&dir)?;
    let combos: [(&'static str, bool, &str); 4] = [
        ("plain / plain", false, "disabled"),
        ("TLS client / plain backend", true, "disabled"),
        ("plain client / TLS backend", false, "required"),
        ("TLS / TLS", true, "required"),
    ];
    let mut proxies = Vec::new();
    for (i, (name, client_tls, backend)) in combos.iter().enumerate() {
        let port = free_port()?;
        let path = dir.join(format!("c{i}.toml"));
        let client = client_tls.then_some(certs);
        std::fs::write(&path, config(port, &primary, client, backend))?;
        let child = Command::new(&args.causeway)
            .arg("--config")
            .arg(&path)
            .env("CAUSEWAY_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("starting causeway")?;
        proxies.push(Proxy {
            name,
            client_tls: *client_tls,
            port,
            child,
        });
    }
    // every proxy serves before measuring
    for p in &proxies {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = mysql_async::Conn::new(opts(p, &certs.ca)).await {
                if c.query_drop("SELECT 1").await.is_ok() {
                    break;
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "{} never served", p.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(proxies)
}

/// The markdown tables: per statement, one row per proxy.
async fn measure_all(
    args: &Args,
    proxies: &[Proxy],
    ca: &std::path::Path,
) -> anyhow::Result<String> {
    let stmts = [
        ("SELECT 1", "SELECT 1"),
        ("16 KiB row", "SELECT REPEAT('x', 16384)"),
    ];
    let mut table = String::new();
    for (label, sql) in stmts {
        let mut acc = vec![Sample::default(); proxies.len()];
        for _ in 0..args.rounds {
            for (i, p) in proxies.iter().enumerate() {
                let s = measure(p, ca, sql, args.queries).await?;
                acc[i].lat_us.extend(s.lat_us);
                acc[i].cpu_us += s.cpu_us;
                acc[i].queries += s.queries;
            }
        }
        table.push_str(&format!(
            "\n### {label}\n\n| client / backend | mean µs | p50 µs | p99 µs | proxy CPU µs/query |\n|---|---|---|---|---|\n"
        ));
        for (p, s) in proxies.iter().zip(acc.iter_mut()) {
            s.lat_us.sort_by(|a, b| a.total_cmp(b));
            let mean = s.lat_us.iter().sum::<f64>() / s.lat_us.len().max(1) as f64;
            table.push_str(&format!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                p.name,
                mean,
                percentile(&s.lat_us, 50.0),
                percentile(&s.lat_us, 99.0),
                s.cpu_us as f64 / s.queries.max(1) as f64
            ));
        }
    }
    Ok(table)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topo = Topology::start(Options::with_replicas(0)).await?;
    let certs = causeway_sandbox::certs::generate(&topo.dir().join("bench-tls"))?;
    let proxies = start_proxies(&args, &topo, &certs).await?;
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let table = measure_all(&args, &proxies, &certs.ca).await?;
    let load1 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let md = format!(
        "# TLS cost: 1 thread through causeway, client side and backend side\n\n\
         `causeway-bench tls --causeway {} --queries {} --rounds {}` {}\n\
         MySQL {} primary only; one mysql_async connection per proxy (TLS clients verify the\n\
         certificate); {} queries per statement per proxy in {} alternating rounds.\n\
         Backend TLS = `mode = \"required\"`; proxy CPU = utime+stime of the causeway process.\n\
         Load average before: {}, after: {}.\n{table}",
        args.causeway.display(),
        args.queries,
        args.rounds,
        args.note,
        topo.dist().version(),
        args.queries * args.rounds,
        args.rounds,
        load0.trim(),
        load1.trim(),
    );
    println!("{md}");
    if let Some(dir) = args.out {
        let path = dir.join(format!("{}-tls.md", timestamp()));
        std::fs::write(&path, &md)?;
        eprintln!("wrote {}", path.display());
    }
    drop(proxies);
    Ok(())
}
