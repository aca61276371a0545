//! `topology`: starts a sandbox MySQL primary + 2 GTID replicas, prints one
//! JSON line with their ports (and a few free ports for the proxies), then
//! keeps them running until stdin closes or SIGTERM/SIGINT arrives; the
//! servers die with it.
//!
//! Output: `{"primary":P,"replicas":[R1,R2],"free_ports":[A,B,C,D],"chroot":"/..."}`.

use std::net::TcpListener;

use causeway_sandbox::{Options, Topology};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let replicas: usize = std::env::var("BENCH_REPLICAS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut opts = Options::with_replicas(replicas);
    opts.extra_mysqld_options
        .push("max-connections=1000".into());
    let topo = Topology::start(opts).await?;
    // Free ports for causeway / MySQL Router listeners (bound then released).
    let mut free = Vec::new();
    let mut keep = Vec::new();
    for _ in 0..4 {
        let l = TcpListener::bind("127.0.0.1:0")?;
        free.push(l.local_addr()?.port());
        keep.push(l);
    }
    drop(keep);
    let out = serde_json::json!({
        "primary": topo.primary().port(),
        "replicas": topo.replicas().iter().map(|r| r.port()).collect::<Vec<_>>(),
        "free_ports": free,
        "chroot": topo.dist().root().map(|p| p.display().to_string()),
        "version": topo.dist().version(),
        "dir": topo.dir().display().to_string(),
    });
    println!("{out}");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            n = stdin.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            },
        }
    }
    drop(topo);
    // The blocking stdin read would keep the runtime from shutting down.
    std::process::exit(0);
}
