//! The `causeway` command: run the proxy, or validate a config file.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAUSEWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
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
        None => run(cli.config),
    }
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = causeway_config::Config::from_file(&path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let proxy = Proxy::new(config)?;
        let listener = proxy.bind().await?;
        tracing::info!(addr = %listener.local_addr()?, "causeway listening");
        let serve = tokio::spawn(std::sync::Arc::clone(&proxy).serve(listener));
        wait_for_stop().await;
        tracing::info!("shutting down");
        proxy.shutdown();
        let _ = serve.await;
        Ok(())
    })
}

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
