//! The running proxy: shared context, the MySQL listener and its accept
//! loop, the admin endpoint's start, hot reload's entry point and graceful
//! shutdown (stop, then drain).
//!
//! `Proxy` is the one value passed (as an `Arc`) to every session: the
//! current topology snapshot, the connection-id counter, client counts and
//! the shutdown signal. There are no process globals (except the metrics
//! recorder, see `crate::admin`), so tests run several proxies side by side
//! in one process.
//!
//! Per-connection bookkeeping is held by Drop guards ([`ClientGuard`],
//! [`PendingLogin`], [`LoginSlot`], [`Registered`]), so a session task that
//! ends in any way (returns, is cancelled, panics) releases what it counted.
//! Sockets still in the handshake have their own bound
//! (`[server] max_pending_logins`) and never take one of the
//! `max_connections` slots, which count logged-in clients only.

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
    /// Connected client sockets (handshaking or logged in).
    pub clients: AtomicUsize,
    /// Client sockets in the handshake.
    pending_logins: AtomicUsize,
    /// Logged-in clients (what `max_connections` bounds).
    logged_in: AtomicUsize,
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
    /// The cache tier, when `[cache] enabled` (a restart applies changes).
    pub cache: Option<Arc<crate::cache::Cache>>,
}

impl Proxy {
    /// A proxy for `config`.
    pub fn new(config: Config) -> Result<Arc<Proxy>, ProxyError> {
        let workers = Workers::start(Workers::resolve(config.server.worker_threads))?;
        let topo = Topology::build(Arc::new(config), None)?;
        let monitor = crate::monitor::Monitor::start(&topo)?;
        let (shutdown, _) = watch::channel(false);
        let cache = topo
            .config
            .cache
            .enabled
            .then(|| Arc::new(crate::cache::Cache::new(&topo.config.cache)));
        let proxy = Arc::new(Proxy {
            topology: ArcSwap::from_pointee(topo),
            next_connection_id: AtomicU32::new(1),
            clients: AtomicUsize::new(0),
            pending_logins: AtomicUsize::new(0),
            logged_in: AtomicUsize::new(0),
            server_version: ArcSwap::from_pointee("8.4.0-causeway".to_string()),
            sessions: Default::default(),
            shutdown,
            monitor,
            drained: Notify::new(),
            reloading: Mutex::new(()),
            workers,
            cache,
        });
        if let Some(c) = &proxy.cache {
            if c.config().invalidation == causeway_config::Invalidation::Binlog {
                crate::cache::binlog::spawn(&proxy, Arc::clone(c));
            }
        }
        Ok(proxy)
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
        let id = self.next_connection_id();
        let proxy = Arc::clone(self);
        self.spawn_client(id, self.client_guard(), async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => Session::run(proxy, id, stream, peer).await,
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

    /// Counts one more client socket until the guard drops.
    pub(crate) fn client_guard(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Ordering::AcqRel);
        ClientGuard {
            proxy: Arc::clone(self),
        }
    }

    /// Takes a handshake place, or `None` when `[server]
    /// max_pending_logins` sockets are already in the handshake.
    pub(crate) fn try_pending_login(self: &Arc<Self>) -> Option<PendingLogin> {
        let max = self.topology.load().config.server.max_pending_logins as usize;
        take(&self.pending_logins, max).then(|| PendingLogin {
            proxy: Arc::clone(self),
        })
    }

    /// Whether a client logging in now would find a free
    /// `max_connections` slot (checked before the greeting, as MySQL does;
    /// [`Self::try_login_slot`] takes it at the end of the handshake).
    pub(crate) fn has_login_room(&self) -> bool {
        let max = self.topology.load().config.server.max_connections as usize;
        self.logged_in.load(Ordering::Acquire) < max
    }

    /// Takes a logged-in client slot, or `None` when `max_connections`
    /// clients are logged in.
    pub(crate) fn try_login_slot(self: &Arc<Self>) -> Option<LoginSlot> {
        let max = self.topology.load().config.server.max_connections as usize;
        take(&self.logged_in, max).then(|| LoginSlot {
            proxy: Arc::clone(self),
        })
    }

    /// Logged-in clients.
    pub fn logged_in(&self) -> usize {
        self.logged_in.load(Ordering::Acquire)
    }

    /// Client sockets in the handshake.
    pub fn pending_logins(&self) -> usize {
        self.pending_logins.load(Ordering::Acquire)
    }

    /// Registers a live session for KILL until the guard drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: u32,
        shared: Arc<crate::frontend::registry::SessionShared>,
    ) -> Registered {
        self.sessions.insert(id, shared);
        Registered {
            proxy: Arc::clone(self),
            id,
        }
    }
}

/// Increments `counter` unless it already is at `max`.
fn take(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// One connected client socket (see [`Proxy::client_guard`]); dropping it
/// wakes [`Proxy::drain`] when it was the last.
#[derive(Debug)]
pub struct ClientGuard {
    proxy: Arc<Proxy>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if self.proxy.clients.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.proxy.drained.notify_waiters();
        }
    }
}

/// One socket in the handshake (see [`Proxy::try_pending_login`]).
#[derive(Debug)]
pub struct PendingLogin {
    proxy: Arc<Proxy>,
}

impl Drop for PendingLogin {
    fn drop(&mut self) {
        self.proxy.pending_logins.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One logged-in client's `max_connections` slot (see
/// [`Proxy::try_login_slot`]).
#[derive(Debug)]
pub struct LoginSlot {
    proxy: Arc<Proxy>,
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        self.proxy.logged_in.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session's entry in the KILL registry (see [`Proxy::register`]).
#[derive(Debug)]
pub struct Registered {
    proxy: Arc<Proxy>,
    id: u32,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.proxy.sessions.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Login;
    use crate::frontend::registry::SessionShared;

    fn proxy(max_connections: u32, max_pending: u32) -> Arc<Proxy> {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworker_threads = 1\n\
             max_connections = {max_connections}\nmax_pending_logins = {max_pending}\n\
             [admin]\nenabled = false\n[[users]]\nname = \"app\"\n\
             [primary]\nname = \"p\"\naddress = \"127.0.0.1:1\"\n\
             [monitor]\nuser = \"m\"\ninterval_ms = 3600000\n"
        );
        Proxy::new(Config::from_str_named(&text, "t.toml").unwrap()).unwrap()
    }

    fn shared() -> Arc<SessionShared> {
        SessionShared::new(
            "app",
            Login {
                user: "app".into(),
                password: String::new(),
            },
        )
    }

    #[tokio::test]
    async fn a_panicking_session_releases_everything_and_the_worker_lives() {
        let p = proxy(5, 5);
        let pending = p.try_pending_login().unwrap();
        let slot = p.try_login_slot().unwrap();
        let registered = p.register(7, shared());
        assert_eq!(
            (p.pending_logins(), p.logged_in(), p.sessions.len()),
            (1, 1, 1)
        );
        p.spawn_client(7, p.client_guard(), async move {
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
        p.spawn_client(8, p.client_guard(), async move {
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
    async fn a_cancelled_session_releases_everything() {
        let p = proxy(5, 5);
        let held = (
            p.try_pending_login(),
            p.try_login_slot(),
            p.register(9, shared()),
        );
        let never = async move {
            let _held = held;
            std::future::pending::<()>().await;
        };
        let r = tokio::time::timeout(Duration::from_millis(10), never).await;
        assert!(r.is_err());
        assert_eq!(
            (p.pending_logins(), p.logged_in(), p.sessions.len()),
            (0, 0, 0)
        );
        p.shutdown();
    }

    #[tokio::test]
    async fn handshakes_and_logins_have_separate_bounds() {
        let p = proxy(2, 3);
        let pending: Vec<_> = (0..3).map(|_| p.try_pending_login().unwrap()).collect();
        assert!(p.try_pending_login().is_none());
        // handshaking sockets take no max_connections slot
        assert!(p.has_login_room());
        let a = p.try_login_slot().unwrap();
        let _b = p.try_login_slot().unwrap();
        assert!(!p.has_login_room());
        assert!(p.try_login_slot().is_none());
        drop(a);
        assert!(p.try_login_slot().is_some());
        drop(pending);
        assert_eq!(p.pending_logins(), 0);
        p.shutdown();
    }
}
