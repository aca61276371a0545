//! The context every session, the admin endpoint and the binlog reader
//! share: the current topology snapshot, the session registry (for
//! KILL), client and login counters, the version announced to clients, the
//! cache tier and the shutdown watch.
//!
//! [`Shared`] is handed out as an `Arc<Shared>`; it never reaches the
//! lifecycle (worker threads, monitor, reloads, accept loop), which
//! `proxy.rs` owns, as mini-redis hands its `Handler` the database and
//! a shutdown handle but never the `Listener`. Sessions can watch the
//! shutdown signal but not raise it.
//!
//! Per-connection bookkeeping is held by Drop guards ([`ClientGuard`],
//! [`PendingLogin`], [`LoginSlot`], [`Registered`]), so a session task that
//! ends in any way (returns, is cancelled, panics) releases what it counted.
//! Sockets still in the handshake have their own bound
//! (`[server] max_pending_logins`) and never take one of the
//! `max_connections` slots, which count logged-in clients only.

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

use crate::frontend::registry::{Registry, SessionShared};
use crate::topology::Topology;

/// What sessions, the admin endpoint and the binlog reader share.
#[derive(Debug)]
pub struct Shared {
    /// The current topology snapshot (a reload stores a new one).
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
    pub sessions: Registry,
    /// True once the proxy stops (its sender is the proxy's).
    shutdown: watch::Receiver<bool>,
    /// Notified whenever `clients` drops to 0.
    drained: Notify,
    /// The cache tier, when `[cache] enabled` (a restart applies changes).
    pub cache: Option<Arc<crate::cache::Cache>>,
    /// Who the writer is (`crate::failover`), read per write.
    pub failover: crate::failover::Failover,
    /// The binlog reader's per-table last writes (`crate::binlog`): the
    /// cache's invalidation and fresh reads.
    pub binlog: Arc<crate::binlog::Binlog>,
    /// Per-digest statistics, when `[digests] enabled` (a restart applies
    /// changes).
    pub digests: Option<Arc<crate::digest::Digests>>,
    /// The routing decision log, when `[decision_log] path` is set.
    pub decisions: Option<crate::digest::log::DecisionLog>,
}

impl Shared {
    /// The context for a first snapshot `topo`; `shutdown` turns true (or
    /// its sender drops) when the proxy stops.
    pub fn new(topo: Topology, shutdown: watch::Receiver<bool>) -> Shared {
        let cache = topo
            .config
            .cache
            .enabled
            .then(|| Arc::new(crate::cache::Cache::new(&topo.config.cache)));
        let failover = crate::failover::Failover::new(topo.config.failover.mode);
        let cfg = &topo.config;
        let fresh = causeway_config::Consistency::Fresh;
        let wanted = cache
            .as_ref()
            .is_some_and(|c| c.config().invalidation == causeway_config::Invalidation::Binlog)
            || cfg.routing.consistency == fresh
            || cfg.rules.iter().any(|r| r.consistency == Some(fresh));
        let binlog = Arc::new(crate::binlog::Binlog::new(cfg.binlog.max_tables, wanted));
        let digests = topo
            .config
            .digests
            .enabled
            .then(|| Arc::new(crate::digest::Digests::new(topo.config.digests.max_digests)));
        let decisions = crate::digest::log::DecisionLog::start(&topo.config.decision_log);
        Shared {
            binlog,
            digests,
            decisions,
            failover,
            topology: ArcSwap::from_pointee(topo),
            next_connection_id: AtomicU32::new(1),
            clients: AtomicUsize::new(0),
            pending_logins: AtomicUsize::new(0),
            logged_in: AtomicUsize::new(0),
            server_version: ArcSwap::from_pointee("8.4.0-causeway".to_string()),
            sessions: Registry::default(),
            shutdown,
            drained: Notify::new(),
            cache,
        }
    }

    /// A fresh client connection id.
    pub fn next_connection_id(&self) -> u32 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The shutdown watch: `changed()` resolves once the proxy stops (at
    /// once when it already has).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// True once the proxy was asked to stop.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
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

    /// Remembers the primary's version for the greeting, as
    /// `<version>-causeway`.
    pub fn learn_server_version(&self, version: &str) {
        if !version.ends_with("-causeway") {
            self.server_version
                .store(Arc::new(format!("{version}-causeway")));
        }
    }

    /// Counts one more client socket until the guard drops.
    pub(crate) fn client_guard(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Ordering::AcqRel);
        ClientGuard {
            shared: Arc::clone(self),
        }
    }

    /// Takes a handshake place, or `None` when `[server]
    /// max_pending_logins` sockets are already in the handshake.
    pub(crate) fn try_pending_login(self: &Arc<Self>) -> Option<PendingLogin> {
        let max = self.topology.load().config.server.max_pending_logins as usize;
        take(&self.pending_logins, max).then(|| PendingLogin {
            shared: Arc::clone(self),
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
            shared: Arc::clone(self),
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
    pub(crate) fn register(self: &Arc<Self>, id: u32, session: Arc<SessionShared>) -> Registered {
        self.sessions.insert(id, session);
        Registered {
            shared: Arc::clone(self),
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

/// One connected client socket (see [`Shared::client_guard`]); dropping
/// it wakes [`Shared::drain`] when it was the last.
#[derive(Debug)]
pub struct ClientGuard {
    shared: Arc<Shared>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if self.shared.clients.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.drained.notify_waiters();
        }
    }
}

/// One socket in the handshake (see [`Shared::try_pending_login`]).
#[derive(Debug)]
pub struct PendingLogin {
    shared: Arc<Shared>,
}

impl Drop for PendingLogin {
    fn drop(&mut self) {
        self.shared.pending_logins.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One logged-in client's `max_connections` slot (see
/// [`Shared::try_login_slot`]).
#[derive(Debug)]
pub struct LoginSlot {
    shared: Arc<Shared>,
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        self.shared.logged_in.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session's entry in the KILL registry (see [`Shared::register`]).
#[derive(Debug)]
pub struct Registered {
    shared: Arc<Shared>,
    id: u32,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.sessions.remove(self.id);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::Login;
    use causeway_config::Config;

    /// A config with the given bounds and a primary nobody listens on.
    pub(crate) fn config(max_connections: u32, max_pending: u32) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworker_threads = 1\n\
             max_connections = {max_connections}\nmax_pending_logins = {max_pending}\n\
             [admin]\nenabled = false\n[[users]]\nname = \"app\"\n\
             [primary]\nname = \"p\"\naddress = \"127.0.0.1:1\"\n\
             [monitor]\nuser = \"m\"\ninterval_ms = 3600000\n"
        );
        Config::from_str_named(&text, "t.toml").unwrap()
    }

    /// A registry entry for user `app`.
    pub(crate) fn session() -> Arc<SessionShared> {
        SessionShared::new(
            "app",
            Login {
                user: "app".into(),
                password: String::new(),
            },
        )
    }

    fn shared(max_connections: u32, max_pending: u32) -> (Arc<Shared>, watch::Sender<bool>) {
        let topo = Topology::build(Arc::new(config(max_connections, max_pending)), None).unwrap();
        let (tx, rx) = watch::channel(false);
        (Arc::new(Shared::new(topo, rx)), tx)
    }

    #[tokio::test]
    async fn a_cancelled_session_releases_everything() {
        let (s, _stop) = shared(5, 5);
        let client = s.client_guard();
        let held = (
            s.try_pending_login(),
            s.try_login_slot(),
            s.register(9, session()),
        );
        let never = async move {
            let _held = (client, held);
            std::future::pending::<()>().await;
        };
        let r = tokio::time::timeout(Duration::from_millis(10), never).await;
        assert!(r.is_err());
        assert_eq!(
            (s.pending_logins(), s.logged_in(), s.sessions.len()),
            (0, 0, 0)
        );
        assert_eq!(s.drain(Duration::from_secs(5)).await, 0);
    }

    #[test]
    fn handshakes_and_logins_have_separate_bounds() {
        let (s, _stop) = shared(2, 3);
        let pending: Vec<_> = (0..3).map(|_| s.try_pending_login().unwrap()).collect();
        assert!(s.try_pending_login().is_none());
        // handshaking sockets take no max_connections slot
        assert!(s.has_login_room());
        let a = s.try_login_slot().unwrap();
        let _b = s.try_login_slot().unwrap();
        assert!(!s.has_login_room());
        assert!(s.try_login_slot().is_none());
        drop(a);
        assert!(s.try_login_slot().is_some());
        drop(pending);
        assert_eq!(s.pending_logins(), 0);
    }

    #[tokio::test]
    async fn the_signal_fires_for_late_watchers_and_when_the_sender_drops() {
        let (s, stop) = shared(1, 1);
        assert!(!s.is_shutting_down());
        stop.send_replace(true);
        assert!(s.is_shutting_down());
        // subscribed after the stop: still told
        let mut late = s.shutdown_signal();
        let told = tokio::time::timeout(Duration::from_secs(5), late.changed()).await;
        assert!(matches!(told, Ok(Ok(()))), "{told:?}");

        let (s, stop) = shared(1, 1);
        drop(stop);
        assert!(s.is_shutting_down());
    }

    #[test]
    fn the_version_is_announced_once_suffixed() {
        let (s, _stop) = shared(1, 1);
        assert_eq!(**s.server_version.load(), "8.4.0-causeway");
        s.learn_server_version("9.7.0");
        assert_eq!(**s.server_version.load(), "9.7.0-causeway");
        s.learn_server_version("9.7.0-causeway");
        assert_eq!(**s.server_version.load(), "9.7.0-causeway");
        assert_eq!((s.next_connection_id(), s.next_connection_id()), (1, 2));
    }
}
