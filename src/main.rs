//! The `causeway` command: run the proxy (SIGHUP reloads the config file,
//! SIGTERM / Ctrl-C stop accepting and drain sessions), or validate a
//! config file.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;

use causeway::proxy::Proxy;

#[derive(Parser, Debug)]
#[command(
    name = "causeway",
    version,
    about = "MySQL proxy: read/write split with GTID consistency tokens"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(short, long, default_value = "conf/causeway.toml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and exit (status 0 when valid).
    CheckConfig {
        /// File to check.
        file: PathBuf,
    },
    /// Start a throwaway MySQL primary + GTID replicas with causeway in
    /// front; Ctrl-C stops and removes everything.
    Sandbox {
        /// Address the proxy listens on.
        #[arg(long, default_value = causeway::sandbox_cmd::DEFAULT_LISTEN)]
        listen: String,
        /// Number of GTID replicas.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Do not offer TLS (by default a throwaway certificate is made).
        #[arg(long)]
        no_tls: bool,
        /// Address of the HTTP admin endpoint (`/metrics`), or `off`.
        #[arg(long, default_value = causeway::sandbox_cmd::DEFAULT_ADMIN_LISTEN)]
        admin_listen: String,
        /// Server flavour: `mysql` or `mariadb` (MariaDB 10.11 GTID replicas).
        #[arg(long, default_value = "mysql")]
        flavor: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Installs the log subscriber on stderr. Text logs carry ANSI colour only
/// when stderr is a terminal (not under systemd, docker or `2> file`);
/// JSON logs never do.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAUSEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            let cfg = causeway_config::Config::from_file(&file)?;
            println!(
                "{}: ok (primary {}, {} replica(s), {} user(s))",
                file.display(),
                cfg.primary.address,
                cfg.replicas.len(),
                cfg.users.len()
            );
            Ok(())
        }
        Some(Command::Sandbox {
            listen,
            replicas,
            no_tls,
            admin_listen,
            flavor,
        }) => {
            let flavor: causeway_sandbox::Flavor = flavor.parse()?;
            causeway::admin::install_recorder();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(causeway::sandbox_cmd::run(
                causeway::sandbox_cmd::SandboxOpts {
                    listen,
                    replicas,
                    tls: !no_tls,
                    admin_listen: (admin_listen != "off").then_some(admin_listen),
                    flavor,
                    ..Default::default()
                },
            ))?;
            Ok(())
        }
        None => run(cli.config),
    }
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = causeway_config::Config::from_file(&path)?;
    causeway::admin::install_recorder();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = rt.block_on(serve(path, config));
    // sessions still running after the drain are dropped with the runtime
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Runs the proxy until SIGTERM / Ctrl-C, reloading on SIGHUP, then stops
/// accepting and drains sessions for up to `[server] shutdown_drain_ms`.
async fn serve(path: PathBuf, config: causeway_config::Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let proxy = Proxy::new(config)?;
    let listener = proxy.bind().await?;
    tracing::info!(addr = %listener.local_addr()?, "causeway listening");
    if let Some(addr) = proxy.serve_admin().await? {
        tracing::info!(%addr, "admin endpoint listening (/metrics, /healthz, /readyz)");
    }
    let accept = tokio::spawn(Arc::clone(&proxy).serve(listener));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!(file = %path.display(), "SIGHUP: reloading the configuration");
                // logrotate: the decision log reopens its file
                if let Some(log) = &proxy.shared().decisions {
                    log.reopen();
                }
                let (p, file) = (Arc::clone(&proxy), path.clone());
                // outcome is logged and counted by reload_from itself
                let _ = tokio::task::spawn_blocking(move || p.reload_from(&file)).await;
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let drain = proxy.topology.load().config.server.shutdown_drain();
    tracing::info!(
        clients = proxy.clients.load(std::sync::atomic::Ordering::Relaxed),
        ?drain,
        "shutting down: no new clients; sessions close after their current command"
    );
    proxy.shutdown();
    let _ = accept.await;
    match proxy.drain(drain).await {
        0 => tracing::info!("all sessions closed"),
        left => tracing::warn!(
            left,
            "sessions still open after the drain period; closing them"
        ),
    }
    Ok(())
}
