//! Connection pools, one per backend server.
//!
//! Owns the limit of open connections per server (a semaphore whose permit
//! lives inside each connection), idle connections keyed by login and link
//! shape, the idle timeout, and the return path: a connection goes back to
//! its pool only if its state is known (no reply pending, nothing buffered,
//! never broken) and after `COM_RESET_CONNECTION` and the session setup ran
//! on it, in a background task, so no state leaks between clients and the
//! releasing session does not wait.
//!
//! Fairness: idle connections of every key are closed once older than the
//! idle timeout (by a reaper task that runs while any connection is idle,
//! and on every acquire), and an acquire that finds every slot taken
//! closes an idle connection of another key (or of its own key that it
//! cannot use) to free a slot before it waits or fails. Idle connections of
//! one user or collation therefore never lock out another.
//!
//! Sharing (`transaction` pool mode): a connection is also handed back as
//! is, with its session state recorded on it (schema, replayed `SET`s),
//! by [`Pool::release_kept`]; the next borrower prefers an idle connection
//! whose state already matches its own. Borrowers that find every slot
//! taken wait in a FIFO queue and are handed returning connections in
//! arrival order, up to the connect timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::conn::{BackendConn, BackendError, LinkKey, Login};

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections open to this server.
    pub max: usize,
    /// Connect + login timeout, also the wait for a free slot.
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
    /// TLS towards this server (`[backend_tls]`).
    pub tls: crate::tls::BackendTls,
}

/// Shortest and longest pause between two reaper sweeps.
const REAP_MIN: Duration = Duration::from_millis(50);
const REAP_MAX: Duration = Duration::from_secs(5);

/// The pool of one backend server.
#[derive(Debug)]
pub struct Pool {
    name: String,
    addr: String,
    cfg: PoolConfig,
    slots: Arc<Semaphore>,
    idle: Mutex<HashMap<LinkKey, Vec<BackendConn>>>,
    opened: AtomicU64,
    /// Idle connections closed to free a slot for another key.
    reclaimed: AtomicU64,
    /// Woken when a connection becomes idle (a waiter may use or reclaim it).
    idle_added: Notify,
    /// Whether a reaper task is running.
    reaper: AtomicBool,
    /// Borrowers waiting for a connection, oldest first.
    waiters: Mutex<VecDeque<Waiter>>,
    /// When idle connections were last swept for expiry on the acquire
    /// path (ms since `born`); the reaper sweeps in between.
    swept_ms: AtomicU64,
    born: Instant,
    /// `causeway_pool_wait_seconds{backend}`, made at the first acquire
    /// (after the metrics recorder is installed).
    wait_seconds: OnceLock<metrics::Histogram>,
    /// Pipelined connections (`[server] pipeline_depth`, `super::pipeline`).
    pub(crate) pipes: super::pipeline::Pipes,
}

/// A borrower waiting for a returning connection.
#[derive(Debug)]
struct Waiter {
    key: LinkKey,
    /// Whether it will select a schema (it can then take any schema).
    has_db: bool,
    tx: oneshot::Sender<BackendConn>,
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
            reclaimed: AtomicU64::new(0),
            idle_added: Notify::new(),
            reaper: AtomicBool::new(false),
            waiters: Mutex::new(VecDeque::new()),
            wait_seconds: OnceLock::new(),
            swept_ms: AtomicU64::new(0),
            born: Instant::now(),
            pipes: super::pipeline::Pipes::default(),
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
        lock(&self.idle).values().map(Vec::len).sum()
    }

    /// Connections handed out to sessions now.
    pub fn in_use_connections(&self) -> usize {
        self.open_connections()
            .saturating_sub(self.idle_connections())
    }

    /// Idle connections closed so far to free a slot for another key.
    pub fn reclaimed_total(&self) -> u64 {
        self.reclaimed.load(Ordering::Relaxed)
    }

    /// An idle connection for `key`, or a new one. Among idle connections
    /// it takes the best match (see `best_idle`: schema `db` and replayed
    /// `SET`s `sets`, then one this thread drives). When every slot is
    /// taken it first closes the oldest idle connection it cannot use (of
    /// another key, or of its own key in another schema when `db` is None)
    /// to free one; failing that it waits, in a FIFO queue, until the
    /// connect timeout for a slot or a returning connection, or with `wait
    /// == false` fails at once (a read that can go elsewhere). An idle
    /// connection that cannot move to this thread is closed and the search
    /// repeated. The time spent, opening a new connection included, is
    /// recorded in `causeway_pool_wait_seconds`.
    pub async fn acquire(
        &self,
        login: &Login,
        key: &LinkKey,
        db: Option<&str>,
        sets: &[String],
        wait: bool,
    ) -> Result<BackendConn, BackendError> {
        let started = tokio::time::Instant::now();
        let r = self.acquire_inner(login, key, db, sets, wait).await;
        self.wait_seconds
            .get_or_init(|| {
                metrics::histogram!(crate::metrics::POOL_WAIT_SECONDS, "backend" => self.name.clone())
            })
            .record(started.elapsed().as_secs_f64());
        r
    }

    async fn acquire_inner(
        &self,
        login: &Login,
        key: &LinkKey,
        db: Option<&str>,
        sets: &[String],
        wait: bool,
    ) -> Result<BackendConn, BackendError> {
        let exhausted = || BackendError::PoolExhausted {
            server: self.name.clone(),
            max: self.cfg.max,
        };
        let deadline = tokio::time::Instant::now() + self.cfg.connect_timeout;
        // Each pass either returns, or consumed an idle connection, or
        // waited; the idle set is bounded by `max` and waiting by `deadline`.
        let permit = loop {
            let notified = self.idle_added.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(mut conn) = self.take_idle(key, db, sets) {
                // on failure the connection is closed and the pass repeated
                if conn.bring_home().is_ok() {
                    return Ok(conn);
                }
                continue;
            }
            if let Ok(p) = self.slots.clone().try_acquire_owned() {
                break p;
            }
            if self.reclaim_one(key, db) {
                continue;
            }
            if !wait {
                return Err(exhausted());
            }
            let (tx, rx) = oneshot::channel();
            lock(&self.waiters).push_back(Waiter {
                key: key.clone(),
                has_db: db.is_some(),
                tx,
            });
            tokio::select! {
                c = rx => match c {
                    Ok(mut conn) => {
                        if conn.bring_home().is_ok() {
                            return Ok(conn);
                        }
                        continue;
                    }
                    Err(_) => continue,
                },
                p = self.slots.clone().acquire_owned() => break p.map_err(|_| exhausted())?,
                _ = &mut notified => continue,
                _ = tokio::time::sleep_until(deadline) => return Err(exhausted()),
            }
        };
        self.open(login, key, db, permit).await
    }

    async fn open(
        &self,
        login: &Login,
        key: &LinkKey,
        db: Option<&str>,
        permit: OwnedSemaphorePermit,
    ) -> Result<BackendConn, BackendError> {
        let mut conn = BackendConn::connect_with(
            &self.name,
            &self.addr,
            login,
            (key.clone(), db),
            self.cfg.connect_timeout,
            &self.cfg.tls,
        )
        .await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        conn.permit = Some(permit);
        Ok(conn)
    }

    /// Whether idle connection `c` can serve `key` in schema `db`: the same
    /// key, and the same schema, or any schema when `db` is set (the caller
    /// runs INIT_DB; MySQL cannot unselect a schema).
    fn usable(c: &BackendConn, key: &LinkKey, db: Option<&str>) -> bool {
        &c.key == key && (db.is_some() || c.db.is_none())
    }

    /// An idle connection for `key`: preferably one already in schema `db`;
    /// for a session without a schema only one without a schema, otherwise
    /// any (see [`Self::usable`]). Expired connections of every key are
    /// closed on the way.
    fn take_idle(&self, key: &LinkKey, db: Option<&str>, sets: &[String]) -> Option<BackendConn> {
        let mut expired = Vec::new();
        let taken = {
            let mut idle = lock(&self.idle);
            // at most every REAP_MIN: a statement does not scan every idle
            // connection's clock
            let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
            let last = self.swept_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= REAP_MIN.as_millis() as u64 {
                self.swept_ms.store(now, Ordering::Relaxed);
                self.sweep(&mut idle, &mut expired);
            }
            let here = std::thread::current().id();
            idle.get_mut(key).and_then(|list| {
                let pos = best_idle(list, key, db, sets, here)?;
                Some(list.swap_remove(pos))
            })
        };
        // sockets close outside the lock
        drop(expired);
        taken
    }

    /// Moves idle connections older than the idle timeout (of every key)
    /// into `expired`, and drops empty lists.
    fn sweep(&self, idle: &mut HashMap<LinkKey, Vec<BackendConn>>, expired: &mut Vec<BackendConn>) {
        let timeout = self.cfg.idle_timeout;
        for list in idle.values_mut() {
            let mut i = 0;
            while i < list.len() {
                if list
                    .get(i)
                    .is_some_and(|c| c.idle_since.elapsed() >= timeout)
                {
                    expired.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// Closes the oldest idle connection that cannot serve `key`/`db`, to
    /// free its slot. Returns whether one was closed.
    fn reclaim_one(&self, key: &LinkKey, db: Option<&str>) -> bool {
        let victim = {
            let mut idle = lock(&self.idle);
            let oldest = idle
                .iter()
                .flat_map(|(k, list)| list.iter().enumerate().map(move |(i, c)| (k, i, c)))
                .filter(|(_, _, c)| !Self::usable(c, key, db))
                .min_by_key(|(_, _, c)| c.idle_since)
                .map(|(k, i, _)| (k.clone(), i));
            oldest.and_then(|(k, i)| {
                let list = idle.get_mut(&k)?;
                let c = (i < list.len()).then(|| list.swap_remove(i));
                if list.is_empty() {
                    idle.remove(&k);
                }
                c
            })
        };
        let Some(victim) = victim else {
            return false;
        };
        tracing::debug!(
            backend = %self.name,
            user = %victim.key.user,
            collation = victim.key.collation,
            "pool full: closing an idle connection of another key"
        );
        drop(victim);
        self.reclaimed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Gives a connection back as is, its session state (schema, `sets`)
    /// recorded on it, for the next borrower (`transaction` pool mode).
    /// A connection whose state is not known (broken, a reply pending,
    /// bytes buffered) is closed; a tainted one is reset first (see
    /// [`Self::release`]).
    pub fn release_kept(self: &Arc<Self>, conn: BackendConn) {
        if conn.tainted || !conn.reusable() {
            self.release(conn);
            return;
        }
        self.make_idle(conn);
    }

    /// Hands `conn` to the oldest waiter that can use it, else makes it
    /// idle and wakes waiters of other keys (they may reclaim it).
    fn make_idle(self: &Arc<Self>, mut conn: BackendConn) {
        conn.idle_since = Instant::now();
        {
            let mut waiters = lock(&self.waiters);
            let mut i = 0;
            while i < waiters.len() {
                let fits = waiters.get(i).map(|w| {
                    (
                        w.tx.is_closed(),
                        w.key == conn.key && (w.has_db || conn.db.is_none()),
                    )
                });
                match fits {
                    Some((true, _)) => {
                        waiters.remove(i);
                    }
                    Some((false, true)) => {
                        let Some(w) = waiters.remove(i) else { break };
                        match w.tx.send(conn) {
                            Ok(()) => return,
                            Err(back) => conn = back,
                        }
                    }
                    Some((false, false)) => i += 1,
                    None => break,
                }
            }
        }
        {
            let mut idle = lock(&self.idle);
            // the key is cloned only for the first idle connection of a key
            match idle.get_mut(&conn.key) {
                Some(list) => list.push(conn),
                None => {
                    idle.insert(conn.key.clone(), vec![conn]);
                }
            }
        }
        self.idle_added.notify_waiters();
        self.ensure_reaper();
    }

    /// Gives a connection back. A connection whose state is not known
    /// (broken, a reply pending, bytes buffered) is closed; others are reset
    /// in the background and then become idle.
    pub fn release(self: &Arc<Self>, mut conn: BackendConn) {
        if !conn.reusable() {
            tracing::debug!(
                backend = %self.name,
                thread_id = conn.thread_id,
                broken = conn.broken,
                "closing a backend connection in an unknown state"
            );
            return;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let reset = tokio::time::timeout(pool.cfg.connect_timeout, conn.reset()).await;
            if !matches!(reset, Ok(Ok(()))) || !conn.reusable() {
                tracing::debug!(backend = %pool.name, thread_id = conn.thread_id, "reset failed; connection closed");
                return;
            }
            pool.make_idle(conn);
        });
    }

    /// Starts the reaper task unless one runs. It closes expired idle
    /// connections of every key and ends when none is idle (the next
    /// release starts a new one) or the pool is gone.
    fn ensure_reaper(self: &Arc<Self>) {
        if self.reaper.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Pool> = Arc::downgrade(self);
        let period = (self.cfg.idle_timeout / 4).clamp(REAP_MIN, REAP_MAX);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = weak.upgrade() else { return };
                let mut expired = Vec::new();
                let done = {
                    let mut idle = lock(&pool.idle);
                    pool.sweep(&mut idle, &mut expired);
                    // cleared under the lock: a release that adds a
                    // connection after this sees `false` and restarts us
                    let empty = idle.is_empty();
                    if empty {
                        pool.reaper.store(false, Ordering::Release);
                    }
                    empty
                };
                drop(expired);
                if done {
                    return;
                }
            }
        });
    }

    /// Closes every idle connection (used when a backend leaves the
    /// topology or is found dead).
    pub fn clear_idle(&self) {
        lock(&self.idle).clear();
    }
}

/// Locks one of the pool's mutexes. A mutex poisoned by a panic elsewhere
/// is recovered, logged once and cleared, never a reason to stop pooling:
/// what it guards (idle lists, the waiter queue) is valid between any two
/// statements that change it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| {
        tracing::warn!("backend pool: a lock was poisoned by a panic; recovered");
        m.clear_poison();
        poisoned.into_inner()
    })
}

/// The position in `list` of the idle connection to hand out: usable for
/// `key`/`db`, the best state match (see [`state_score`]), then one driven
/// by thread `here` (no socket move), then the most recently returned. The
/// scan, newest first, stops at a perfect match.
fn best_idle(
    list: &[BackendConn],
    key: &LinkKey,
    db: Option<&str>,
    sets: &[String],
    here: std::thread::ThreadId,
) -> Option<usize> {
    const PERFECT: (u8, bool) = (5, true);
    let mut best: Option<((u8, bool), usize)> = None;
    for (i, c) in list.iter().enumerate().rev() {
        if !Pool::usable(c, key, db) {
            continue;
        }
        let rank = (state_score(c, db, sets), c.home() == here);
        if best.map_or(true, |(r, _)| rank > r) {
            best = Some((rank, i));
            if rank == PERFECT {
                break;
            }
        }
    }
    best.map(|(_, i)| i)
}

/// How well idle connection `c` matches a borrower in schema `db` whose
/// replayed `SET`s are `sets`: 4 for the same `SET`s, 2 when its `SET`s
/// are a prefix of them (the rest is applied), 0 otherwise (reset first);
/// plus 1 for the same schema.
pub fn state_score(c: &BackendConn, db: Option<&str>, sets: &[String]) -> u8 {
    let s = if c.sets.as_slice() == sets {
        4
    } else if sets.starts_with(&c.sets) {
        2
    } else {
        0
    };
    s + u8::from(c.db.as_deref() == db)
}
