//! The running proxy and its lifecycle: the session worker threads, the
//! monitor, hot reload, the MySQL listener and its accept loop, the admin
//! endpoint's start and graceful shutdown (stop, then drain).
//!
//! [`Proxy`] owns all of these; what sessions, the admin endpoint and the
//! binlog reader need is the [`Shared`] context, handed to them as
//! an `Arc<Shared>` (as pingora hands `ServerApp::process_new` a stream and
//! a `ShutdownWatch`). No module below this one imports it. There are no
//! process globals (except the metrics recorder, see `crate::admin`), so
//! tests run several proxies side by side in one process.
//!
//! A reload is driven from here: [`Proxy::reload_from`] reads the file,
//! serializes reloads, builds and publishes the new snapshot
//! (`crate::reload` builds it and says what changed) and re-syncs the
//! monitor.

use causeway_config::Config;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::AdminError;
use crate::frontend::session::Session;
use crate::reload::{ReloadError, ReloadSummary};
use crate::shared::{ClientGuard, Shared};
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

/// One running proxy: the owner of its lifecycle. Reading a field of the
/// [`Shared`] context through it (`proxy.topology`, `proxy.clients`) works
/// by `Deref`, for the commands and tests that run a proxy.
#[derive(Debug)]
pub struct Proxy {
    /// What sessions, admin and the binlog reader see.
    shared: Arc<Shared>,
    /// Raises the shutdown signal `shared` watches.
    shutdown: watch::Sender<bool>,
    monitor: crate::monitor::Monitor,
    /// Serializes reloads.
    reloading: Mutex<()>,
    /// Threads that run the sessions.
    workers: Workers,
}

impl Deref for Proxy {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // its workers stop with it; nothing watching `shared` waits longer
        self.shutdown();
    }
}

impl Proxy {
    /// A proxy for `config`.
    pub fn new(config: Config) -> Result<Arc<Proxy>, ProxyError> {
        let workers = Workers::start(Workers::resolve(config.server.worker_threads))?;
        let topo = Topology::build(Arc::new(config), None)?;
        let monitor = crate::monitor::Monitor::start(&topo)?;
        let (shutdown, watch) = watch::channel(false);
        let shared = Arc::new(Shared::new(topo, watch));
        let cache = shared
            .cache
            .as_ref()
            .filter(|c| c.config().invalidation == causeway_config::Invalidation::Binlog)
            .map(Arc::clone);
        crate::binlog::reader::spawn(&shared, Arc::clone(&shared.binlog), cache);
        let proxy = Arc::new(Proxy {
            shared,
            shutdown,
            monitor,
            reloading: Mutex::new(()),
            workers,
        });
        let weak = Arc::downgrade(&proxy);
        crate::failover::spawn(
            Arc::clone(&proxy.shared),
            Box::new(move |writer: &str| match weak.upgrade() {
                Some(p) => p.follow(writer).map_err(|e| e.to_string()),
                None => Err("the proxy is gone".to_string()),
            }),
        );
        Ok(proxy)
    }

    /// Publishes a snapshot of the running configuration whose primary is
    /// `writer` (`[failover] mode = "follow"`), serialised with reloads,
    /// and re-syncs the monitor; the old writer's pool is closed.
    fn follow(&self, writer: &str) -> Result<(), ReloadError> {
        let _serial = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        let old = self.topology.load_full();
        if old.primary.name() == writer {
            return Ok(());
        }
        let config = Arc::clone(&old.config);
        let new = Arc::new(Topology::build_with(config, Some(&old), Some(writer))?);
        self.topology.store(Arc::clone(&new));
        self.monitor.sync(&new);
        crate::reload::release_left_pools(&old, &new);
        Ok(())
    }

    /// The context sessions and admin get.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks the listener, the admin endpoint and all sessions to stop.
    /// Sessions finish the command they are running and close at their
    /// next read from the client; see [`Shared::drain`].
    pub fn shutdown(&self) {
        self.monitor.stop();
        // send_replace: the value changes even with no receiver yet
        self.shutdown.send_replace(true);
    }

    /// Counters of the monitor's tasks (one per backend of the current
    /// topology).
    pub fn monitor_stats(&self) -> Vec<crate::monitor::BackendStats> {
        self.monitor.stats()
    }

    /// Re-reads the configuration file at `path` and publishes the new
    /// topology in one store; on error the running one stays, and either
    /// way the outcome is logged and counted (see `crate::reload`).
    pub fn reload_from(&self, path: &Path) -> Result<ReloadSummary, ReloadError> {
        let result = Config::from_file(path)
            .map_err(ReloadError::from)
            .and_then(|cfg| self.apply(cfg));
        crate::reload::record(path, &result);
        result
    }

    /// Publishes a topology built from `config` (already validated) and
    /// re-syncs the monitor; reloads never interleave. Does not count
    /// metrics; [`Proxy::reload_from`] does.
    pub fn apply(&self, config: Config) -> Result<ReloadSummary, ReloadError> {
        let _serial = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        let old = self.topology.load_full();
        // following the writer: a reload keeps the writer found, not
        // `[primary]` (static mode: `[primary]` is the writer)
        let writer = (config.failover.mode == causeway_config::FailoverMode::Follow)
            .then(|| old.primary.name().to_string());
        let new = Topology::build_with(Arc::new(config), Some(&old), writer.as_deref())?;
        let new = Arc::new(new);
        self.topology.store(Arc::clone(&new));
        self.monitor.sync(&new);
        crate::reload::release_left_pools(&old, &new);
        Ok(crate::reload::diff(&old, &new))
    }

    /// Binds `[admin] listen` and serves `/metrics`, `/healthz` and
    /// `/readyz` until shutdown (see `crate::admin`). Returns the bound
    /// address, or `None` when `[admin] enabled = false` (then only the
    /// metrics exporter's upkeep runs, see [`crate::admin::upkeep`]).
    pub async fn serve_admin(&self) -> Result<Option<SocketAddr>, ProxyError> {
        let admin = self.topology.load().config.admin.clone();
        if !admin.enabled {
            tokio::spawn(crate::admin::upkeep(Arc::clone(&self.shared)));
            return Ok(None);
        }
        crate::admin::install_recorder();
        let listener = crate::admin::bind(&admin.listen).await?;
        let addr = listener.local_addr().map_err(AdminError::Io)?;
        tokio::spawn(crate::admin::serve(Arc::clone(&self.shared), listener));
        Ok(Some(addr))
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
    fn spawn_session(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        // the socket moves to the worker's event loop
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "cannot hand the client to a worker");
                return;
            }
        };
        let id = self.next_connection_id();
        let shared = Arc::clone(&self.shared);
        self.spawn_client(id, self.shared.client_guard(), async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => Session::run(shared, id, stream, peer).await,
                Err(e) => tracing::warn!(error = %e, %peer, "cannot register the client socket"),
            }
        });
    }

    /// Runs one client's task on the next worker. `guard` counts it until
    /// the task ends, however it ends; a panic inside `fut` is caught at
    /// this boundary, logged with `id`, and ends only this client.
    pub(crate) fn spawn_client<F>(&self, id: u32, guard: ClientGuard, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.workers
            .spawn(crate::workers::catch_panic(id, async move {
                let _guard = guard;
                fut.await;
            }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::tests::{config, session};
    use std::time::Duration;

    #[tokio::test]
    async fn a_panicking_session_releases_everything_and_the_worker_lives() {
        let p = Proxy::new(config(5, 5)).unwrap();
        let s = Arc::clone(p.shared());
        let pending = s.try_pending_login().unwrap();
        let slot = s.try_login_slot().unwrap();
        let registered = s.register(7, session());
        assert_eq!(
            (p.pending_logins(), p.logged_in(), p.sessions.len()),
            (1, 1, 1)
        );
        p.spawn_client(7, s.client_guard(), async move {
            let _held = (pending, slot, registered);
            tokio::task::yield_now().await;
            panic!("a bug in a session");
        });
        assert_eq!(p.drain(Duration::from_secs(5)).await, 0);
        assert_eq!(
            (p.pending_logins(), p.logged_in(), p.sessions.len()),
            (0, 0, 0)
        );
        // the same worker runs the next client
        let (tx, rx) = tokio::sync::oneshot::channel();
        p.spawn_client(8, s.client_guard(), async move {
            let _ = tx.send(std::thread::current().name().map(String::from));
        });
        let name = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap();
        assert_eq!(name.unwrap().as_deref(), Some("causeway-worker-0"));
        assert_eq!(p.drain(Duration::from_secs(5)).await, 0);
        p.shutdown();
    }

    #[tokio::test]
    async fn shutdown_reaches_the_shared_context_and_stops_reloads() {
        let p = Proxy::new(config(5, 5)).unwrap();
        let s = Arc::clone(p.shared());
        let mut stop = s.shutdown_signal();
        assert!(!s.is_shutting_down());
        let summary = p.apply(config(6, 5)).unwrap();
        assert_eq!(summary.generation, 2);
        assert_eq!(s.topology.load().config.server.max_connections, 6);
        p.shutdown();
        let told = tokio::time::timeout(Duration::from_secs(5), stop.changed()).await;
        assert!(matches!(told, Ok(Ok(()))), "{told:?}");
        assert!(s.is_shutting_down());
        assert!(matches!(
            p.apply(config(7, 5)),
            Err(ReloadError::ShuttingDown)
        ));
        assert_eq!(s.topology.load().generation, 2);
        // a dropped proxy counts as stopped for whoever still holds `s`
        let q = Proxy::new(config(5, 5)).unwrap();
        let t = Arc::clone(q.shared());
        drop(q);
        assert!(t.is_shutting_down());
    }
}
