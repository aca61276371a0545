//! The running proxy: shared context, the MySQL listener and its accept
//! loop, and graceful shutdown.
//!
//! `Proxy` is the one value passed (as an `Arc`) to every session: the
//! current topology snapshot, the connection-id counter, client counts and
//! the shutdown signal. There are no process globals, so tests run several
//! proxies side by side in one process.

use arc_swap::ArcSwap;
use causeway_config::Config;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::frontend::session::Session;
use crate::topology::{Topology, TopologyError};

/// Errors starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The topology is invalid.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The monitor could not start.
    #[error(transparent)]
    Monitor(#[from] crate::monitor::MonitorError),
}

/// Shared state of one proxy instance.
#[derive(Debug)]
pub struct Proxy {
    /// The current topology snapshot.
    pub topology: ArcSwap<Topology>,
    next_connection_id: AtomicU32,
    /// Connected clients.
    pub clients: AtomicUsize,
    /// Version string announced to clients.
    pub server_version: ArcSwap<String>,
    shutdown: watch::Sender<bool>,
    monitor: crate::monitor::Monitor,
}

impl Proxy {
    /// A proxy for `config`.
    pub fn new(config: Config) -> Result<Arc<Proxy>, ProxyError> {
        let topo = Topology::build(Arc::new(config), None)?;
        let monitor = crate::monitor::Monitor::start(&topo)?;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Proxy {
            topology: ArcSwap::from_pointee(topo),
            next_connection_id: AtomicU32::new(1),
            clients: AtomicUsize::new(0),
            server_version: ArcSwap::from_pointee("8.4.0-causeway".to_string()),
            shutdown,
            monitor,
        }))
    }

    /// A fresh client connection id.
    pub fn next_connection_id(&self) -> u32 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Subscribes to the shutdown signal.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Asks the listener and all sessions to stop.
    pub fn shutdown(&self) {
        self.monitor.stop();
        let _ = self.shutdown.send(true);
    }

    /// Remembers the primary's version for the greeting, as
    /// `<version>-causeway`.
    pub fn learn_server_version(&self, version: &str) {
        if !version.ends_with("-causeway") {
            self.server_version
                .store(Arc::new(format!("{version}-causeway")));
        }
    }

    /// Binds the MySQL listener from the current config.
    pub async fn bind(&self) -> Result<TcpListener, ProxyError> {
        let addr = self.topology.load().config.server.listen.clone();
        TcpListener::bind(&addr)
            .await
            .map_err(|source| ProxyError::Bind { addr, source })
    }

    /// Reads the primary's greeting (no login) to announce its version to
    /// clients; keeps the placeholder if the primary does not answer.
    pub async fn probe_version(&self) {
        let addr = self.topology.load().primary.config.address.clone();
        let probe = async {
            let stream = tokio::net::TcpStream::connect(&addr).await.ok()?;
            let mut io = crate::protocol::PacketConn::new(stream);
            let p = io.read_packet().await.ok()?;
            crate::protocol::handshake::parse_server_hello(&p.payload).ok()
        };
        match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
            Ok(Some(hello)) => self.learn_server_version(&hello.version),
            _ => {
                tracing::warn!(%addr, "could not read the primary's version; announcing a placeholder")
            }
        }
    }

    /// Accepts clients until shutdown; each gets its own session task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        self.probe_version().await;
        let mut stop = self.shutdown_signal();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.spawn_session(stream, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                _ = stop.changed() => break,
            }
        }
        tracing::info!("listener closed");
    }

    fn spawn_session(self: &Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let proxy = Arc::clone(self);
        tokio::spawn(async move {
            proxy.clients.fetch_add(1, Ordering::Relaxed);
            Session::run(Arc::clone(&proxy), stream, peer).await;
            proxy.clients.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
