//! The proxy's live sessions, for `KILL [QUERY | CONNECTION] id`.
//!
//! Clients see causeway's connection ids, not the backends' thread ids, so
//! `KILL` is answered by the proxy: it finds the session, checks that the
//! killer is its owner (same user) or a causeway admin, and kills the
//! statement running for it on whichever backend runs it (a one-off
//! connection with the target session's backend login, as MySQL's own
//! `KILL QUERY` from another connection would). `KILL CONNECTION` also ends
//! the target session. The per-statement path only stores one atomic.

use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use crate::backend::Login;

/// What other sessions may know about one session.
#[derive(Debug)]
pub struct SessionShared {
    /// Client user name.
    pub user: Mutex<String>,
    /// Backend login of the session.
    pub login: Mutex<Login>,
    /// Backend address and thread id of the statement running now,
    /// encoded as `slot << 32 | thread_id`, slot + 1 into `addrs`; 0 = idle.
    running: AtomicU64,
    /// Addresses of held backend connections, by slot.
    addrs: Mutex<Vec<String>>,
    /// Set by KILL CONNECTION.
    pub killed: AtomicBool,
    /// Woken by KILL CONNECTION.
    pub kill: Notify,
}

impl SessionShared {
    /// A new entry.
    pub fn new(user: &str, login: Login) -> Arc<SessionShared> {
        Arc::new(SessionShared {
            user: Mutex::new(user.to_string()),
            login: Mutex::new(login),
            running: AtomicU64::new(0),
            addrs: Mutex::new(Vec::new()),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
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

    /// Marks the session idle.
    pub fn idle(&self) {
        self.running.store(0, Ordering::Release);
    }

    /// The backend address and thread id running now.
    pub fn running(&self) -> Option<(String, u32)> {
        let v = self.running.load(Ordering::Acquire);
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
}
