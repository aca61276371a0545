//! The proxy's live sessions, for `KILL [QUERY | CONNECTION] id`.
//!
//! Clients see causeway's connection ids, not the backends' thread ids, so
//! `KILL` is answered by the proxy: it finds the session, checks that the
//! killer is its owner (same user) or a causeway admin, and kills the
//! statement running for it on whichever backend runs it (a one-off
//! connection with the target session's backend login, as MySQL's own
//! `KILL QUERY` from another connection would). `KILL CONNECTION` also ends
//! the target session. The per-statement path only stores one atomic.
//!
//! A statement that waits on a backend outside the relay (the causal read's
//! pipelined `WAIT_FOR_EXECUTED_GTID_SET`) listens for [`KillSignal`]s
//! instead: every KILL aimed at the session is also published on a watch
//! channel, and the waiting session ends its own backend statement with
//! [`kill_on_backend`] (a fresh short-lived connection, same login).

use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

use crate::backend::{BackendConn, BackendError, LinkKey, Login};

/// Errors killing a statement on a backend.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The one-off connection failed or the KILL could not be sent.
    #[error("cannot kill thread {thread_id} on {addr}: {source}")]
    Backend {
        /// Backend address.
        addr: String,
        /// Backend thread id.
        thread_id: u32,
        /// Why.
        #[source]
        source: BackendError,
    },
    /// Connecting and killing took longer than the connect timeout.
    #[error("killing thread {thread_id} on {addr} timed out after {ms} ms")]
    Timeout {
        /// Backend address.
        addr: String,
        /// Backend thread id.
        thread_id: u32,
        /// The bound.
        ms: u128,
    },
}

/// Kills a backend thread's statement (`KILL QUERY n`) or the thread itself
/// (`KILL n`) over a fresh connection with `login`, bounded by `timeout`.
/// MySQL lets a user kill its own threads; an "unknown thread" answer
/// (1094: it ended meanwhile) counts as done.
pub async fn kill_on_backend(
    addr: &str,
    login: &Login,
    thread_id: u32,
    whole_connection: bool,
    timeout: Duration,
    tls: &crate::tls::BackendTls,
) -> Result<(), RegistryError> {
    let key = LinkKey {
        user: login.user.clone(),
        caps: 0,
        collation: 255,
    };
    let sql = if whole_connection {
        format!("KILL {thread_id}")
    } else {
        format!("KILL QUERY {thread_id}")
    };
    let work = async {
        let mut c =
            BackendConn::connect_with("kill", addr, login, (key, None), timeout, tls).await?;
        c.query_ok(&sql).await.map(|_| ())
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r.map_err(|source| RegistryError::Backend {
            addr: addr.to_string(),
            thread_id,
            source,
        }),
        Err(_) => Err(RegistryError::Timeout {
            addr: addr.to_string(),
            thread_id,
            ms: timeout.as_millis(),
        }),
    }
}

/// Every KILL aimed at a session so far, for statements that wait on a
/// backend outside the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KillSignal {
    /// KILL QUERY count.
    pub queries: u64,
    /// KILL CONNECTION happened.
    pub connection: bool,
}

/// What a KILL asked of a waiting statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Killed {
    /// KILL QUERY: end the statement, answer 1317.
    Query,
    /// KILL CONNECTION: end the statement and the session.
    Connection,
}

/// Resolves at the next KILL published after `rx` was subscribed (or last
/// seen); pending forever if the session entry is gone.
pub async fn next_kill(rx: &mut watch::Receiver<KillSignal>) -> Killed {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    if rx.borrow_and_update().connection {
        Killed::Connection
    } else {
        Killed::Query
    }
}

/// What other sessions may know about one session.
#[derive(Debug)]
pub struct SessionShared {
    /// Client user name.
    user: Mutex<String>,
    /// Backend login of the session.
    login: Mutex<Login>,
    /// Backend address and thread id of the statement running now,
    /// encoded as `slot << 32 | thread_id`, slot + 1 into `addrs`; 0 = idle.
    running: AtomicU64,
    /// Addresses of held backend connections, by slot.
    addrs: Mutex<Vec<String>>,
    /// Bumped by every KILL before it looks for the running statement, so
    /// a session in `transaction` pool mode can tell that a KILL QUERY may
    /// still be on its way to a connection it is about to give back (it
    /// closes that connection instead: the KILL must never reach another
    /// client's statement).
    kill_epoch: AtomicU64,
    /// Set by KILL CONNECTION.
    pub killed: AtomicBool,
    /// Woken by KILL CONNECTION.
    pub kill: Notify,
    /// Every KILL aimed at the session (see [`KillSignal`]).
    signal: watch::Sender<KillSignal>,
    /// What the session is doing, for process lists.
    pub activity: super::processlist::Activity,
}

impl SessionShared {
    /// The client user name. A poisoned lock is recovered, as everywhere
    /// in causeway: the value is replaced whole, never half-written.
    pub fn user(&self) -> String {
        self.user.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The backend login of the session.
    pub fn login(&self) -> Login {
        self.login.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// After COM_CHANGE_USER: the new user and backend login.
    pub fn set_user(&self, user: &str, login: Login) {
        user.clone_into(&mut self.user.lock().unwrap_or_else(|e| e.into_inner()));
        *self.login.lock().unwrap_or_else(|e| e.into_inner()) = login;
    }

    /// A new entry.
    pub fn new(user: &str, login: Login) -> Arc<SessionShared> {
        Arc::new(SessionShared {
            user: Mutex::new(user.to_string()),
            login: Mutex::new(login),
            running: AtomicU64::new(0),
            kill_epoch: AtomicU64::new(0),
            addrs: Mutex::new(Vec::new()),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            signal: watch::Sender::new(KillSignal::default()),
            activity: super::processlist::Activity::default(),
        })
    }

    /// The slot of backend address `addr` (called when a connection is
    /// acquired, not per statement).
    pub fn slot(&self, addr: &str) -> u32 {
        let mut addrs = self.addrs.lock().unwrap_or_else(|e| e.into_inner());
        match addrs.iter().position(|a| a == addr) {
            Some(i) => i as u32,
            None => {
                addrs.push(addr.to_string());
                (addrs.len() - 1) as u32
            }
        }
    }

    /// Marks a statement as running in backend slot `slot`, thread
    /// `thread_id` (one atomic store).
    pub fn start(&self, slot: u32, thread_id: u32) {
        self.running.store(
            ((slot as u64 + 1) << 32) | thread_id as u64,
            Ordering::Release,
        );
    }

    /// Marks the session idle. Sequentially consistent with
    /// [`Self::begin_kill`] and [`Self::running`]: a KILL that saw the
    /// statement running has bumped the epoch before this store.
    pub fn idle(&self) {
        self.running.store(0, Ordering::SeqCst);
    }

    /// Called by a KILL before [`Self::running`].
    pub fn begin_kill(&self) {
        self.kill_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// How many KILLs have looked for this session's running statement.
    pub fn kill_epoch(&self) -> u64 {
        self.kill_epoch.load(Ordering::SeqCst)
    }

    /// A receiver of the KILLs published from now on; subscribe before
    /// sending the statement that should be killable.
    pub fn subscribe_kills(&self) -> watch::Receiver<KillSignal> {
        self.signal.subscribe()
    }

    /// Publishes a KILL aimed at this session: KILL QUERY wakes a waiting
    /// statement; KILL CONNECTION also marks the session killed and wakes
    /// its idle loop.
    pub fn signal_kill(&self, query_only: bool) {
        self.signal.send_modify(|k| {
            if query_only {
                k.queries = k.queries.wrapping_add(1);
            } else {
                k.connection = true;
            }
        });
        if !query_only {
            self.killed.store(true, Ordering::Relaxed);
            self.kill.notify_one();
        }
    }

    /// The backend address and thread id running now.
    pub fn running(&self) -> Option<(String, u32)> {
        let v = self.running.load(Ordering::SeqCst);
        if v == 0 {
            return None;
        }
        let slot = (v >> 32) as usize - 1;
        let addrs = self.addrs.lock().unwrap_or_else(|e| e.into_inner());
        addrs.get(slot).map(|a| (a.clone(), v as u32))
    }
}

/// Live sessions by connection id.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: DashMap<u32, Arc<SessionShared>>,
}

impl Registry {
    /// Registers a session.
    pub fn insert(&self, id: u32, s: Arc<SessionShared>) {
        self.sessions.insert(id, s);
    }

    /// Forgets a session.
    pub fn remove(&self, id: u32) {
        self.sessions.remove(&id);
    }

    /// A session.
    pub fn get(&self, id: u32) -> Option<Arc<SessionShared>> {
        self.sessions.get(&id).map(|s| Arc::clone(s.value()))
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Calls `f` on every session (the admin API's per-user counts).
    pub fn for_each(&self, mut f: impl FnMut(u32, &SessionShared)) {
        for e in self.sessions.iter() {
            f(*e.key(), e.value());
        }
    }
}

/// A parsed `KILL [CONNECTION | QUERY] id`.
#[derive(Debug, PartialEq, Eq)]
pub struct Kill {
    /// Only the running statement.
    pub query_only: bool,
    /// Target connection id.
    pub id: u32,
}

/// Parses a KILL statement (after comments); None when it is not one the
/// proxy understands.
pub fn parse_kill(sql: &str) -> Option<Kill> {
    let mut words = sql.trim().trim_end_matches(';').split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("kill") {
        return None;
    }
    let mut w = words.next()?;
    let mut query_only = false;
    if w.eq_ignore_ascii_case("query") {
        query_only = true;
        w = words.next()?;
    } else if w.eq_ignore_ascii_case("connection") {
        w = words.next()?;
    }
    if words.next().is_some() {
        return None;
    }
    Some(Kill {
        query_only,
        id: w.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_statements_parse() {
        assert_eq!(
            parse_kill("KILL 5"),
            Some(Kill {
                query_only: false,
                id: 5
            })
        );
        assert_eq!(
            parse_kill("kill query 7;"),
            Some(Kill {
                query_only: true,
                id: 7
            })
        );
        assert_eq!(
            parse_kill("KILL CONNECTION 9"),
            Some(Kill {
                query_only: false,
                id: 9
            })
        );
        assert_eq!(parse_kill("KILL QUERY x"), None);
        assert_eq!(parse_kill("KILL 1 2"), None);
        assert_eq!(parse_kill("SELECT 1"), None);
    }

    #[test]
    fn running_statement_round_trips() {
        let s = SessionShared::new(
            "app",
            Login {
                user: "app".into(),
                password: "x".into(),
            },
        );
        assert_eq!(s.running(), None);
        let a = s.slot("127.0.0.1:3307");
        let b = s.slot("127.0.0.1:3306");
        assert_eq!(s.slot("127.0.0.1:3307"), a);
        s.start(a, 42);
        assert_eq!(s.running(), Some(("127.0.0.1:3307".into(), 42)));
        s.start(b, 7);
        assert_eq!(s.running(), Some(("127.0.0.1:3306".into(), 7)));
        s.idle();
        assert_eq!(s.running(), None);
    }

    #[tokio::test]
    async fn kill_signals_reach_waiters_subscribed_before() {
        let s = SessionShared::new(
            "app",
            Login {
                user: "app".into(),
                password: "x".into(),
            },
        );
        // a KILL QUERY before the wait does not end a later wait
        s.signal_kill(true);
        let mut rx = s.subscribe_kills();
        let waiter = tokio::spawn(async move { next_kill(&mut rx).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.signal_kill(true);
        assert_eq!(waiter.await.unwrap(), Killed::Query);
        assert!(!s.killed.load(Ordering::Relaxed));
        let mut rx = s.subscribe_kills();
        s.signal_kill(false);
        assert_eq!(next_kill(&mut rx).await, Killed::Connection);
        assert!(s.killed.load(Ordering::Relaxed));
    }
}
