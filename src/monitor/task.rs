//! One backend's monitor task: the polling loop, turning probe results into
//! a [`View`], and publishing it when it changed. Also the state shared by
//! all tasks of one monitor (the primary's GTID history, for replica lag).

use causeway_gtid::{Flavor, GtidSet};
use mysql_async::Conn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use super::eval::{self, decide, Inputs, LagHistory};
use super::probe::{self, ProbeError};
use super::settings::Settings;
use crate::topology::{BackendState, Role, View};

/// Resolves once the settings sender is gone (the task must stop).
async fn sender_dropped(rx: &mut watch::Receiver<Arc<Settings>>) {
    while rx.changed().await.is_ok() {}
}

/// Counters of one task (see [`super::BackendStats`]).
#[derive(Debug, Default)]
pub struct Counters {
    pub(super) checks: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) publishes: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// State shared by the tasks of one monitor: which task is the primary's
/// and the primary's GTID history.
#[derive(Debug, Default)]
pub struct Shared {
    primary: Mutex<(usize, LagHistory)>,
    /// The primary's `server_uuid`, as its task last read it.
    primary_uuid: Mutex<Option<String>>,
    /// The primary's flavour, as its task last detected it.
    pub(super) primary_flavor: Mutex<Option<Flavor>>,
    /// Every server's replication sources (follow mode).
    sources: super::sources::Sources,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, LagHistory)> {
        self.primary.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `key` the primary's task (whose server's UUID, when already
    /// read, is `uuid`); forgets the history if it changed.
    pub fn set_primary(&self, key: usize, uuid: Option<String>) {
        let mut g = self.lock();
        if g.0 != key {
            g.0 = key;
            g.1.clear();
            *self.uuid_lock() = uuid;
        }
    }

    fn uuid_lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.primary_uuid.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_primary_uuid(&self, key: usize, uuid: &str) {
        if self.lock().0 == key {
            let mut g = self.uuid_lock();
            if g.as_deref() != Some(uuid) {
                *g = Some(uuid.to_string());
            }
        }
    }

    fn primary_uuid(&self) -> Option<String> {
        self.uuid_lock().clone()
    }

    fn observe(&self, key: usize, set: &Arc<GtidSet>, at: Instant) {
        let mut g = self.lock();
        if g.0 == key {
            g.1.observe(Arc::clone(set), at);
        }
    }

    fn lag_at(&self, set: &GtidSet, at: Instant) -> Option<Duration> {
        self.lock().1.lag_at(set, at)
    }
}

/// One successful read of a backend.
pub(super) struct Reading {
    /// Whether this was a health check (read-only and replication read).
    pub(super) health: bool,
    pub(super) gtid: GtidSet,
    /// When the GTID query was sent.
    pub(super) sent: Instant,
    pub(super) at: Instant,
    pub(super) read_only: Option<bool>,
    /// `Some` on health checks.
    pub(super) server_uuid: Option<String>,
    /// `Some` on health checks of replicas whose source UUIDs were readable.
    pub(super) source_uuids: Option<Vec<String>>,
    /// `Some` on health checks of replicas; `Err` when refused.
    pub(super) replication: Option<Result<bool, ProbeError>>,
}

impl Reading {
    /// A GTID-only reading (no health facts) sent at `sent`, read now.
    pub(super) fn gtid_only(gtid: GtidSet, sent: Instant) -> Reading {
        Reading {
            health: false,
            gtid,
            sent,
            at: Instant::now(),
            read_only: None,
            server_uuid: None,
            source_uuids: None,
            replication: None,
        }
    }
}

async fn read(
    conn: &mut Conn,
    s: &Settings,
    health: bool,
    flavor: &mut Option<Flavor>,
) -> Result<Reading, ProbeError> {
    let t = s.connect_timeout;
    let sent = Instant::now();
    if let Some(q) = &s.watermark_query {
        // a read model fed by CDC: its watermark is its executed set
        let gtid = probe::watermark(conn, q, t).await?;
        return Ok(Reading {
            health,
            gtid,
            sent,
            at: Instant::now(),
            read_only: None,
            server_uuid: None,
            source_uuids: None,
            replication: health.then_some(Ok(true)),
        });
    }
    if flavor.is_none() {
        *flavor = Some(super::mariadb::flavor(conn, t).await?);
    }
    if *flavor == Some(Flavor::Mariadb) {
        return super::mariadb::read(conn, s, health).await;
    }
    let (gtid, read_only, server_uuid) = if health {
        let h = probe::gtid_and_read_only(conn, t).await?;
        (h.gtid, Some(h.read_only), Some(h.server_uuid))
    } else {
        (probe::gtid_executed(conn, t).await?, None, None)
    };
    let at = Instant::now();
    let replication = if health && s.role == Role::Replica {
        match probe::replication_states(conn, t).await {
            Ok(states) => Some(Ok(eval::replicating_from(&states))),
            Err(e) if e.server_answered() => Some(Err(e)),
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let source_uuids = if health && (s.role == Role::Replica || s.follow) {
        probe::source_uuids(conn, t).await?
    } else {
        None
    };
    Ok(Reading {
        health,
        gtid,
        sent,
        at,
        read_only,
        server_uuid,
        source_uuids,
        replication,
    })
}

/// A backend's monitor task.
pub struct Task {
    key: usize,
    state: Arc<BackendState>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    conn: Option<Conn>,
    reachable: bool,
    read_only: bool,
    replicating: Option<bool>,
    gtid: Arc<GtidSet>,
    lag_ms: Option<u64>,
    conn_error: Option<String>,
    health_error: Option<String>,
    lag_excluded: bool,
    last_health: Option<Instant>,
    last_publish: Option<Instant>,
    warned_fail_open: bool,
    server_uuid: Option<String>,
    source_uuids: Option<Vec<String>>,
    /// A writable replica was warned about (cleared when it is read-only again).
    warned_writable: bool,
    /// A replica with a foreign source was warned about (cleared when it
    /// replicates from the primary again).
    warned_mismatch: bool,
    /// After a refused login, no new attempt before this instant.
    refused_until: Option<Instant>,
    /// The flavour of the server behind `conn` (None: not connected yet).
    flavor: Option<Flavor>,
    /// The flavour this replica was refused for (logged once).
    flavor_refused: Option<Flavor>,
    /// The error code and health case of the last failed check, if the
    /// backend is failing now (for logging changes only).
    failure: Option<(Option<u16>, &'static str)>,
}

impl Task {
    /// A task for the backend whose state is `state` (`key` identifies it).
    pub fn new(
        key: usize,
        state: Arc<BackendState>,
        shared: Arc<Shared>,
        counters: Arc<Counters>,
    ) -> Task {
        let prev = state.view.load_full();
        Task {
            key,
            shared,
            counters,
            conn: None,
            reachable: prev.reachable,
            read_only: prev.read_only,
            replicating: None,
            gtid: Arc::clone(&prev.gtid_executed),
            lag_ms: prev.lag_ms,
            conn_error: None,
            health_error: None,
            lag_excluded: false,
            last_health: None,
            last_publish: None,
            warned_fail_open: false,
            server_uuid: prev.server_uuid.clone(),
            source_uuids: prev.source_uuids.clone(),
            warned_writable: false,
            warned_mismatch: false,
            refused_until: None,
            flavor: None,
            flavor_refused: None,
            failure: None,
            state,
        }
    }

    /// Polls until the settings sender is dropped, then closes the
    /// connection. New settings are picked up at the next tick; the
    /// connection is kept unless the endpoint or credentials changed.
    pub async fn run(mut self, mut rx: watch::Receiver<Arc<Settings>>) {
        let mut s = rx.borrow().clone();
        loop {
            let latest = rx.borrow().clone();
            if !Arc::ptr_eq(&latest, &s) {
                if !latest.same_endpoint(&s) {
                    self.close(&s).await;
                }
                s = latest;
            }
            let next = tokio::time::Instant::now() + s.gtid_interval;
            let tick = async {
                self.step(&s).await;
                tokio::time::sleep_until(next).await;
            };
            tokio::select! {
                biased;
                () = sender_dropped(&mut rx) => break,
                () = tick => {}
            }
        }
        self.close(&s).await;
        tracing::debug!(backend = %s.name, "monitor task stopped");
    }

    async fn close(&mut self, s: &Settings) {
        self.flavor = None;
        if let Some(conn) = self.conn.take() {
            probe::close(conn, s.connect_timeout).await;
        }
    }

    /// One GTID poll (plus the health check when due), then publish.
    async fn step(&mut self, s: &Settings) {
        if self.conn.is_none() && self.refused_until.is_some_and(|t| Instant::now() < t) {
            // The server refused our login: do not hammer it every GTID tick.
            return;
        }
        self.refused_until = None;
        bump(&self.counters.checks);
        let health_due =
            self.conn.is_none() || self.last_health.map_or(true, |t| t.elapsed() >= s.interval);
        let confirmed = match self.measure(s, health_due).await {
            Ok(r) => {
                let sent = r.sent;
                self.apply(s, r);
                Some(sent)
            }
            Err(e) => {
                bump(&self.counters.failures);
                self.failed(s, e);
                None
            }
        };
        self.evaluate(s);
        // the published set is now the one just read (monotonic reads rely
        // on when it was read, `crate::balance`)
        if let Some(sent) = confirmed {
            self.state.confirm(sent);
        }
    }

    /// Reads the backend, reconnecting (once) when the connection broke.
    async fn measure(&mut self, s: &Settings, health: bool) -> Result<Reading, ProbeError> {
        let mut retried = false;
        loop {
            let fresh = self.conn.is_none();
            if fresh {
                let conn = probe::connect(s).await?;
                bump(&self.counters.connects);
                self.conn = Some(conn);
            }
            let conn = self.conn.as_mut().expect("connected above");
            match read(conn, s, health || fresh, &mut self.flavor).await {
                Ok(r) => return Ok(r),
                Err(e) if e.server_answered() && !e.connection_ended_by_server() => return Err(e),
                Err(e) => {
                    self.close(s).await;
                    // A broken connection (e.g. closed while idle) gets one
                    // immediate reconnect; a timeout does not, so a hung
                    // server is declared unreachable after one bound.
                    if fresh || retried || !e.connection_broke() {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
    }

    fn apply(&mut self, s: &Settings, r: Reading) {
        if !self.reachable {
            tracing::info!(backend = %s.name, "monitor reached backend again");
        }
        self.reachable = true;
        self.conn_error = None;
        self.failure = None;
        if *self.gtid != r.gtid {
            self.gtid = Arc::new(r.gtid);
        }
        if let Some(ro) = r.read_only {
            self.read_only = ro;
        }
        if let Some(uuid) = r.server_uuid {
            if s.role == Role::Primary {
                self.shared.set_primary_uuid(self.key, &uuid);
            }
            self.server_uuid = Some(uuid);
        }
        if r.health && (s.role == Role::Replica || s.follow) {
            self.source_uuids = r.source_uuids;
            if let (Some(me), Some(src)) = (&self.server_uuid, &self.source_uuids) {
                self.shared.sources.record(me, src);
            }
        }
        if r.health {
            self.last_health = Some(r.at);
            match r.replication {
                Some(Err(e)) => match e.privilege_refusal() {
                    Some(code) => self.refused(s, e, code, true),
                    None => self.replication_unknown(s, e),
                },
                Some(Ok(running)) => {
                    self.replicating = Some(running);
                    self.health_error = None;
                    self.warned_fail_open = false;
                }
                None => {
                    self.health_error = None;
                    self.warned_fail_open = false;
                }
            }
        }
        self.lag_ms = match s.role {
            Role::Primary => {
                self.shared.observe(self.key, &self.gtid, r.at);
                Some(0)
            }
            Role::Replica => self
                .shared
                .lag_at(&self.gtid, r.at)
                .map(|d| d.as_millis() as u64),
        };
    }

    fn failed(&mut self, s: &Settings, e: ProbeError) {
        if e.server_answered() && self.conn.is_none() {
            // the server refused a login: do not hammer it every GTID tick
            self.refused_until = Some(Instant::now() + s.interval);
        }
        if let Some(code) = e.privilege_refusal() {
            // The server is up but refuses the monitor's account: fail open,
            // keep the GTIDs actually read, claim no lag knowledge.
            self.reachable = true;
            self.lag_ms = if s.role == Role::Primary {
                Some(0)
            } else {
                None
            };
            self.refused(s, e, code, false);
            return;
        }
        // Too many connections, out of resources, timed out, unusable
        // answers or no answer: the backend is not healthy. Logged when it
        // starts and whenever the case or error code changes.
        let case = (e.server_code(), e.health_case());
        if self.reachable || self.failure != Some(case) {
            tracing::warn!(backend = %s.name, code = ?e.server_code(), error = %e,
                case = e.health_case(), "monitor cannot measure backend; not healthy");
        }
        self.failure = Some(case);
        self.reachable = false;
        self.lag_ms = None;
        self.warned_fail_open = false;
        self.conn_error = Some(format!("{e} ({})", e.health_case()));
    }

    /// The server refused a monitor query for lack of privileges: health
    /// fails open, logged once with the case and code.
    fn refused(&mut self, s: &Settings, e: ProbeError, code: u16, health_only: bool) {
        let msg = e.to_string();
        if !self.warned_fail_open {
            tracing::warn!(backend = %s.name, user = %s.user, code, error = %msg,
                case = e.health_case(),
                "monitor refused by privileges; treating backend as healthy (fail open; check \
                 the monitor user's privileges)");
            self.warned_fail_open = true;
        }
        self.replicating = None;
        if health_only {
            self.health_error = Some(msg);
        } else {
            self.conn_error = Some(msg);
        }
    }

    /// The replication status query failed with a server error other than
    /// a privilege refusal: replication is not known to run, so the replica
    /// is not healthy.
    fn replication_unknown(&mut self, s: &Settings, e: ProbeError) {
        let msg = format!("{e} ({})", e.health_case());
        if self.health_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(backend = %s.name, code = ?e.server_code(), error = %e,
                case = e.health_case(), "monitor cannot read replication status; not healthy");
        }
        self.replicating = Some(false);
        self.health_error = Some(msg);
    }

    fn evaluate(&mut self, s: &Settings) {
        let verdict = decide(
            &Inputs {
                role: s.role,
                reachable: self.reachable,
                replicating: self.replicating,
                lag_ms: self.lag_ms,
                budget_ms: s.budget_ms,
                hysteresis_ms: s.hysteresis_ms,
            },
            self.lag_excluded,
        );
        if verdict.lag_excluded != self.lag_excluded {
            if verdict.lag_excluded {
                tracing::warn!(backend = %s.name, lag_ms = ?self.lag_ms, budget_ms = s.budget_ms,
                    "replica excluded for lag");
            } else {
                tracing::info!(backend = %s.name, lag_ms = ?self.lag_ms, "replica within lag budget again");
            }
        }
        self.lag_excluded = verdict.lag_excluded;
        let source_mismatch = self.safety(s);
        let mixed = self.mixed_flavor(s);
        // follow mode: a replica that does not follow the writer serves no read
        let eligible =
            verdict.eligible && !(s.follow && source_mismatch == Some(true)) && mixed.is_none();
        let now = Instant::now();
        let view = View {
            reachable: self.reachable,
            read_only: self.read_only,
            replicating: match s.role {
                Role::Primary => false,
                Role::Replica => self.replicating.unwrap_or(true),
            },
            gtid_executed: Arc::clone(&self.gtid),
            lag_ms: self.lag_ms,
            last_error: mixed.or_else(|| {
                self.conn_error
                    .clone()
                    .or_else(|| self.health_error.clone())
            }),
            measured_at: Some(now),
            eligible,
            server_uuid: self.server_uuid.clone(),
            source_uuids: self.source_uuids.clone(),
            source_mismatch,
            flavor: self.flavor,
        };
        let old = self.state.view.load();
        let heartbeat = self
            .last_publish
            .map_or(true, |t| now.duration_since(t) >= s.interval);
        if heartbeat || eval::worth_publishing(&old, &view) {
            if old.eligible != view.eligible {
                tracing::info!(backend = %s.name, eligible = view.eligible, reachable = view.reachable,
                    replicating = view.replicating, lag_ms = ?view.lag_ms, "eligibility changed");
            }
            drop(old);
            self.state.publish(view);
            self.last_publish = Some(now);
            bump(&self.counters.publishes);
        }
    }
}

impl Task {
    /// See [`super::mariadb::mixed_flavor`].
    fn mixed_flavor(&mut self, s: &Settings) -> Option<String> {
        let mine = self.flavor?;
        super::mariadb::mixed_flavor(
            &self.shared.primary_flavor,
            s,
            mine,
            &mut self.flavor_refused,
        )
    }

    /// The split-brain checks of a replica: warns once per transition when
    /// it is writable (`read_only` and `super_read_only` both off) or
    /// replicates from a server that is not the configured primary, and
    /// returns the source-mismatch fact for the view. Routing is not
    /// changed by either (they are reported, not acted on).
    fn safety(&mut self, s: &Settings) -> Option<bool> {
        if s.role != Role::Replica || s.watermark_query.is_some() {
            return None;
        }
        let measured = self.reachable && self.last_health.is_some();
        let writable = measured && !self.read_only;
        if writable != self.warned_writable {
            if writable {
                tracing::warn!(backend = %s.name, address = %s.address,
                    "replica is writable (read_only = 0 and super_read_only = 0): split-brain risk; \
                     SET GLOBAL super_read_only = ON on it");
            } else if measured {
                tracing::info!(backend = %s.name, "replica is read-only again");
            }
            self.warned_writable = writable;
        }
        let primary = self.shared.primary_uuid();
        let mismatch = if s.follow {
            // directly or through replicas that follow the writer
            // (a chain through a server nobody monitors cannot be checked:
            // then only a direct source counts)
            self.shared
                .sources
                .follows(self.source_uuids.as_deref(), primary.as_deref())
                .map(|f| !f)
                .or_else(|| eval::source_mismatch(self.source_uuids.as_deref(), primary.as_deref()))
        } else {
            eval::source_mismatch(self.source_uuids.as_deref(), primary.as_deref())
        };
        let foreign = measured && mismatch == Some(true);
        if foreign != self.warned_mismatch {
            if foreign {
                tracing::warn!(backend = %s.name, sources = ?self.source_uuids,
                    primary_uuid = ?primary,
                    "replica replicates from a server that is not the configured primary");
            } else if measured {
                tracing::info!(backend = %s.name, "replica replicates from the configured primary again");
            }
            self.warned_mismatch = foreign;
        }
        mismatch
    }
}
