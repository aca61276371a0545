//! The running proxy: shared context, the MySQL listener and its accept
//! loop, the admin endpoint's start, hot reload's entry point and graceful
//! shutdown (stop, then drain).
//!
//! `Proxy` is the one value passed (as an `Arc`) to every session: the
//! current topology snapshot, the connection-id counter, client counts and
//! the shutdown signal. There are no process globals (except the metrics
//! recorder, see `crate::admin`), so tests run several proxies side by side
//! in one process.

use arc_swap::ArcSwap;
use causeway_config::Config;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::admin::AdminError;
use crate::frontend::session::Session;
use crate::reload::{ReloadError, ReloadSummary};
use crate::topology::{Topology, TopologyError};
use crate::workers::{Workers, WorkersError};

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
    /// The admin endpoint could not start.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The session worker threads could not start.
    #[error(transparent)]
    Workers(#[from] WorkersError),
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
    /// Live sessions, for KILL.
    pub sessions: crate::frontend::registry::Registry,
    shutdown: watch::Sender<bool>,
    monitor: crate::monitor::Monitor,
    /// Notified whenever `clients` drops to 0.
    drained: Notify,
    /// Serializes reloads.
    reloading: Mutex<()>,
    /// Threads that run the sessions.
    workers: Workers,
}

impl Proxy {
    /// A proxy for `config`.
    pub fn new(config: Config) -> Result<Arc<Proxy>, ProxyError> {
        let workers = Workers::start(Workers::resolve(config.server.worker_threads))?;
        let topo = Topology::build(Arc::new(config), None)?;
        let monitor = crate::monitor::Monitor::start(&topo)?;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Proxy {
            topology: ArcSwap::from_pointee(topo),
            next_connection_id: AtomicU32::new(1),
            clients: AtomicUsize::new(0),
            server_version: ArcSwap::from_pointee("8.4.0-causeway".to_string()),
            sessions: Default::default(),
            shutdown,
            monitor,
            drained: Notify::new(),
            reloading: Mutex::new(()),
            workers,
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

    /// Asks the listener, the admin endpoint and all sessions to stop.
    /// Sessions finish the command they are running and close at their
    /// next read from the client; see [`Proxy::drain`].
    pub fn shutdown(&self) {
        self.monitor.stop();
        // send_replace: the value changes even with no receiver yet
        self.shutdown.send_replace(true);
    }

    /// True once [`Proxy::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits until no client is connected, at most `timeout`. Returns the
    /// number of clients still connected (0 when drained).
    pub async fn drain(&self, timeout: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.drained.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.clients.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.clients.load(Ordering::Acquire)
    }

    /// Counters of the monitor's tasks (one per backend of the current
    /// topology).
    pub fn monitor_stats(&self) -> Vec<crate::monitor::BackendStats> {
        self.monitor.stats()
    }

    /// The monitor (reload re-syncs it).
    pub(crate) fn monitor(&self) -> &crate::monitor::Monitor {
        &self.monitor
    }

    /// Held while a reload runs, so reloads never interleave.
    pub(crate) fn reload_guard(&self) -> MutexGuard<'_, ()> {
        self.reloading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads the configuration file at `path` and publishes the new
    /// topology in one store; on error the running one stays. See
    /// `crate::reload`.
    pub fn reload_from(&self, path: &Path) -> Result<ReloadSummary, ReloadError> {
        crate::reload::reload_from(self, path)
    }

    /// Binds `[admin] listen` and serves `/metrics`, `/healthz` and
    /// `/readyz` until shutdown (see `crate::admin`). Returns the bound
    /// address, or `None` when `[admin] enabled = false`.
    pub async fn serve_admin(self: &Arc<Self>) -> Result<Option<SocketAddr>, ProxyError> {
        let admin = self.topology.load().config.admin.clone();
        if !admin.enabled {
            return Ok(None);
        }
        crate::admin::install_recorder();
        let listener = crate::admin::bind(&admin.listen).await?;
        let addr = listener.local_addr().map_err(AdminError::Io)?;
        tokio::spawn(crate::admin::serve(Arc::clone(self), listener));
        Ok(Some(addr))
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

    /// Accepts clients until shutdown; each becomes a session task on one of
    /// the session workers (`crate::workers`).
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

    /// Hands a new client to the next session worker.
    fn spawn_session(self: &Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr) {
        // the socket moves to the worker's event loop
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "cannot hand the client to a worker");
                return;
            }
        };
        let proxy = Arc::clone(self);
        proxy.clients.fetch_add(1, Ordering::AcqRel);
        self.workers.spawn(async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => Session::run(Arc::clone(&proxy), stream, peer).await,
                Err(e) => tracing::warn!(error = %e, %peer, "cannot register the client socket"),
            }
            if proxy.clients.fetch_sub(1, Ordering::AcqRel) == 1 {
                proxy.drained.notify_waiters();
            }
        });
    }
}
