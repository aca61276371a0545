//! Connection pools, one per backend server.
//!
//! Owns the limit of open connections per server (a semaphore whose permit
//! lives inside each connection), idle connections keyed by login and link
//! shape, the idle timeout, and the return path: a connection goes back to
//! its pool only after `COM_RESET_CONNECTION` and the session setup ran on
//! it, in a background task, so no state leaks between clients and the
//! releasing session does not wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use super::conn::{BackendConn, BackendError, LinkKey, Login};

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections open to this server.
    pub max: usize,
    /// Connect + login timeout, also the wait for a free slot.
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed instead of reused.
    pub idle_timeout: Duration,
}

/// The pool of one backend server.
#[derive(Debug)]
pub struct Pool {
    name: String,
    addr: String,
    cfg: PoolConfig,
    slots: Arc<Semaphore>,
    idle: Mutex<HashMap<LinkKey, Vec<BackendConn>>>,
    opened: AtomicU64,
}

impl Pool {
    /// A new, empty pool.
    pub fn new(name: &str, addr: &str, cfg: PoolConfig) -> Arc<Pool> {
        Arc::new(Pool {
            name: name.to_string(),
            addr: addr.to_string(),
            slots: Arc::new(Semaphore::new(cfg.max)),
            cfg,
            idle: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
        })
    }

    /// Backend name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Backend address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Settings.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Connections currently open (idle or in use).
    pub fn open_connections(&self) -> usize {
        self.cfg.max - self.slots.available_permits()
    }

    /// Connections opened since the pool was created.
    pub fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Idle connections.
    pub fn idle_connections(&self) -> usize {
        self.idle
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// An idle connection for `key`, or a new one. When every slot is taken
    /// it waits up to the connect timeout for one, or with `wait == false`
    /// fails at once (a read that can go elsewhere).
    pub async fn acquire(
        &self,
        login: &Login,
        key: &LinkKey,
        db: Option<&str>,
        wait: bool,
    ) -> Result<BackendConn, BackendError> {
        if let Some(mut conn) = self.take_idle(key, db) {
            // on failure the connection is closed and a new one opened
            if conn.bring_home().is_ok() {
                return Ok(conn);
            }
        }
        let exhausted = || BackendError::PoolExhausted {
            server: self.name.clone(),
            max: self.cfg.max,
        };
        let permit = if wait {
            tokio::time::timeout(self.cfg.connect_timeout, self.slots.clone().acquire_owned())
                .await
                .map_err(|_| exhausted())?
                .map_err(|_| exhausted())?
        } else {
            self.slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| exhausted())?
        };
        let mut conn = BackendConn::connect(
            &self.name,
            &self.addr,
            login,
            key.clone(),
            db,
            self.cfg.connect_timeout,
        )
        .await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        conn.permit = Some(permit);
        Ok(conn)
    }

    /// An idle connection for `key`: preferably one already in schema `db`;
    /// for a session without a schema only one without a schema (MySQL
    /// cannot unselect a schema), otherwise any (the caller runs INIT_DB).
    fn take_idle(&self, key: &LinkKey, db: Option<&str>) -> Option<BackendConn> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        // too old: dropping closes the socket and frees the slot
        list.retain(|c| c.idle_since.elapsed() < self.cfg.idle_timeout);
        let pos = list
            .iter()
            .rposition(|c| c.db.as_deref() == db)
            .or_else(|| db.and_then(|_| list.len().checked_sub(1)))?;
        Some(list.swap_remove(pos))
    }

    /// Gives a connection back. Broken connections are closed; others are
    /// reset in the background and then become idle.
    pub fn release(self: &Arc<Self>, mut conn: BackendConn) {
        if conn.broken {
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let reset = tokio::time::timeout(pool.cfg.connect_timeout, conn.reset()).await;
            if matches!(reset, Ok(Ok(()))) {
                conn.idle_since = Instant::now();
                if let Ok(mut idle) = pool.idle.lock() {
                    idle.entry(conn.key.clone()).or_default().push(conn);
                }
            }
        });
    }

    /// Closes every idle connection (used when a backend leaves the
    /// topology or is found dead).
    pub fn clear_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
