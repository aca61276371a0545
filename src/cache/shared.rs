//! The shared second level of the cache: a Redis (or Valkey) server that
//! every causeway instance consults after a local miss (`[cache]
//! redis_url`).
//!
//! Owns the connection (a `redis` crate `ConnectionManager`, opened lazily
//! from the first session that needs it, reconnecting by itself), the
//! bounded wait of a lookup (`redis_timeout_ms`), the circuit breaker, the
//! spawned and bounded writes, and the level's counters. It never decides
//! freshness: [`crate::cache::Cache`] checks every value it returns against
//! this instance's own binlog reader. A slow or dead Redis costs hits,
//! never answers or errors: every failure here is a miss.
//!
//! The breaker opens after [`TRIP_AFTER`] failures in a row (an error or a
//! timeout) and stays open for [`COOLDOWN`]; then one lookup probes it
//! (half open): a success closes it, a failure opens it again. While it is
//! open no lookup or write is sent.

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failures in a row that open the breaker.
pub const TRIP_AFTER: u32 = 3;
/// How long an open breaker stays open before one probe.
pub const COOLDOWN: Duration = Duration::from_secs(1);
/// Writes in flight at most; more are dropped (counted).
pub const MAX_INFLIGHT_WRITES: usize = 64;
/// Shortest wait of a write (writes are off the client's path).
const MIN_WRITE_TIMEOUT: Duration = Duration::from_millis(250);
/// Wait of a connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Counter: shared-level operations by `op` (get, set) and `result`.
pub const SHARED_REQUESTS: &str = crate::metrics::CACHE_SHARED_REQUESTS;

/// Errors of the shared level.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The URL was refused by the client library.
    #[error("redis_url: {0}")]
    Url(#[from] redis::RedisError),
}

/// Counters of the shared level (SHOW CAUSEWAY CACHE).
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Lookups sent.
    pub gets: AtomicU64,
    /// Lookups that found a value.
    pub found: AtomicU64,
    /// Lookups that found nothing.
    pub absent: AtomicU64,
    /// Values found but not served: not provably fresh here, expired,
    /// another key, damaged, too large.
    pub refused: AtomicU64,
    /// Values served (shared hits).
    pub served: AtomicU64,
    /// Lookups that timed out.
    pub timeouts: AtomicU64,
    /// Lookups that failed.
    pub errors: AtomicU64,
    /// Lookups not sent (breaker open, not connected).
    pub skipped: AtomicU64,
    /// Writes stored.
    pub sets: AtomicU64,
    /// Writes that failed or timed out.
    pub set_errors: AtomicU64,
    /// Writes not sent (too many in flight, breaker open, not connected).
    pub set_dropped: AtomicU64,
}

fn bump(n: &AtomicU64, op: &'static str, result: &'static str) {
    n.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(SHARED_REQUESTS, "op" => op, "result" => result).increment(1);
}

/// The circuit breaker (lock free).
#[derive(Debug)]
pub struct Breaker {
    base: Instant,
    failures: AtomicU32,
    /// Milliseconds since `base` until which it is open; 0: closed.
    open_until_ms: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    fn new() -> Breaker {
        Breaker {
            base: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether it is closed.
    pub fn closed(&self) -> bool {
        self.open_until_ms.load(Ordering::Relaxed) == 0
    }

    /// Whether a lookup may be sent now (closed, or the one probe of a
    /// half-open breaker).
    fn allow(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if self.now_ms() < until {
            return false;
        }
        !self.probing.swap(true, Ordering::AcqRel)
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until_ms.store(0, Ordering::Relaxed);
        self.probing.store(false, Ordering::Release);
    }

    fn failure(&self) {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let probe = self.probing.load(Ordering::Acquire);
        if n >= TRIP_AFTER || probe {
            let cool = u64::try_from(COOLDOWN.as_millis()).unwrap_or(1000);
            let until = self.now_ms().saturating_add(cool).max(1);
            self.open_until_ms.store(until, Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
        }
    }

    /// `closed`, `open` or `half-open`.
    pub fn state(&self) -> &'static str {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            "closed"
        } else if self.now_ms() < until {
            "open"
        } else {
            "half-open"
        }
    }
}

/// The shared level of one instance.
pub struct SharedStore {
    shown: String,
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    connecting: AtomicBool,
    timeout: Duration,
    /// The circuit breaker.
    pub breaker: Breaker,
    inflight: Arc<AtomicUsize>,
    /// Counters.
    pub stats: SharedStats,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("url", &self.shown)
            .field("breaker", &self.breaker.state())
            .finish()
    }
}

/// `url` with any password hidden.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// Decrements the in-flight write count however the write ends.
struct Inflight(Arc<AtomicUsize>);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SharedStore {
    /// The level for `config` (not connected yet: the first lookup
    /// connects, in the background).
    pub fn new(config: &causeway_config::Cache) -> Result<SharedStore, SharedError> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        Ok(SharedStore {
            shown: redact(&config.redis_url),
            client,
            conn: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            timeout: Duration::from_millis(config.redis_timeout_ms.max(1)),
            breaker: Breaker::new(),
            inflight: Arc::new(AtomicUsize::new(0)),
            stats: SharedStats::default(),
            last_error: Mutex::new(None),
        })
    }

    /// The URL, password hidden.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The last error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note_error(&self, e: impl std::fmt::Display) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    }

    /// `connected`, `connecting` or `not connected`.
    pub fn link_state(&self) -> &'static str {
        if self.conn.load().is_some() {
            "connected"
        } else if self.connecting.load(Ordering::Relaxed) {
            "connecting"
        } else {
            "not connected"
        }
    }

    /// The connection, or None while there is none (then one is being
    /// opened in the background, at most one attempt per [`COOLDOWN`]).
    fn connection(self: &Arc<Self>) -> Option<ConnectionManager> {
        if let Some(c) = self.conn.load_full() {
            return Some((*c).clone());
        }
        if tokio::runtime::Handle::try_current().is_err()
            || self.connecting.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_number_of_retries(1)
                .set_max_delay(1000);
            let made = tokio::time::timeout(
                CONNECT_TIMEOUT * 3,
                ConnectionManager::new_with_config(me.client.clone(), cfg),
            )
            .await;
            match made {
                Ok(Ok(m)) => {
                    tracing::info!(redis = %me.shown, "cache shared level connected");
                    me.conn.store(Some(Arc::new(m)));
                    me.breaker.success();
                }
                Ok(Err(e)) => {
                    tracing::warn!(redis = %me.shown, error = %e, "cache shared level: cannot connect");
                    me.note_error(e);
                    tokio::time::sleep(COOLDOWN).await;
                }
                Err(_) => {
                    me.note_error("connect timed out");
                    tokio::time::sleep(COOLDOWN).await;
                }
            }
            me.connecting.store(false, Ordering::Release);
        });
        None
    }

    /// Starts connecting, when a tokio runtime runs this thread.
    pub fn warm(self: &Arc<Self>) {
        let _ = self.connection();
    }

    /// The value under `key`, waiting at most `redis_timeout_ms`. Any
    /// failure is None (and counts against the breaker).
    pub async fn get(self: &Arc<Self>, key: &str) -> Option<Vec<u8>> {
        let s = &self.stats;
        let Some(mut c) = self.connection() else {
            bump(&s.skipped, "get", "skipped");
            return None;
        };
        if !self.breaker.allow() {
            bump(&s.skipped, "get", "skipped");
            return None;
        }
        s.gets.fetch_add(1, Ordering::Relaxed);
        let cmd = redis::cmd("GET").arg(key).clone();
        let r = tokio::time::timeout(self.timeout, async move {
            cmd.query_async::<Option<Vec<u8>>>(&mut c).await
        })
        .await;
        match r {
            Ok(Ok(v)) => {
                self.breaker.success();
                match &v {
                    Some(_) => bump(&s.found, "get", "found"),
                    None => bump(&s.absent, "get", "absent"),
                }
                v
            }
            Ok(Err(e)) => {
                bump(&s.errors, "get", "error");
                self.note_error(&e);
                self.breaker.failure();
                None
            }
            Err(_) => {
                bump(&s.timeouts, "get", "timeout");
                self.note_error(format!("lookup timed out after {:?}", self.timeout));
                self.breaker.failure();
                None
            }
        }
    }

    /// Stores what `value` builds under `key` for `ttl`, in a spawned task
    /// (at most [`MAX_INFLIGHT_WRITES`] at once; `value` runs there too).
    pub fn put(
        self: &Arc<Self>,
        key: String,
        ttl: Duration,
        value: impl FnOnce() -> Option<Vec<u8>> + Send + 'static,
    ) {
        let s = &self.stats;
        if !self.breaker.closed() {
            bump(&s.set_dropped, "set", "dropped");
            return;
        }
        let Some(mut c) = self.connection() else {
            bump(&s.set_dropped, "set", "dropped");
            return;
        };
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= MAX_INFLIGHT_WRITES {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            bump(&s.set_dropped, "set", "dropped");
            return;
        }
        let guard = Inflight(Arc::clone(&self.inflight));
        let me = Arc::clone(self);
        let wait = self.timeout.max(MIN_WRITE_TIMEOUT);
        tokio::spawn(async move {
            let _guard = guard;
            let Some(v) = value() else {
                return;
            };
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let cmd = redis::cmd("SET").arg(&key).arg(v).arg("PX").arg(ms).clone();
            let r = tokio::time::timeout(wait, async move { cmd.query_async::<()>(&mut c).await })
                .await;
            match r {
                Ok(Ok(())) => bump(&me.stats.sets, "set", "ok"),
                Ok(Err(e)) => {
                    bump(&me.stats.set_errors, "set", "error");
                    me.note_error(&e);
                    me.breaker.failure();
                }
                Err(_) => {
                    bump(&me.stats.set_errors, "set", "timeout");
                    me.breaker.failure();
                }
            }
        });
    }

    /// Counts a value found but not served.
    pub fn refused(&self) {
        bump(&self.stats.refused, "get", "refused");
    }

    /// Counts a value served.
    pub fn served(&self) {
        self.stats.served.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_failures_and_probes_once() {
        let mut b = Breaker::new();
        // a breaker made 10 s ago: "open until 1 ms" has passed
        b.base = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
        assert!(b.allow());
        b.failure();
        b.failure();
        assert_eq!(b.state(), "closed");
        b.failure();
        assert_eq!(b.state(), "open");
        assert!(!b.allow());
        // the cooldown passed: one probe, not two
        b.open_until_ms.store(1, Ordering::Relaxed);
        assert_eq!(b.state(), "half-open");
        assert!(b.allow());
        assert!(!b.allow());
        // a failed probe opens it again at once
        b.failure();
        assert_eq!(b.state(), "open");
        b.open_until_ms.store(1, Ordering::Relaxed);
        assert!(b.allow());
        b.success();
        assert_eq!(b.state(), "closed");
        assert!(b.allow() && b.allow());
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("redis://u:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
