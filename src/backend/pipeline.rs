//! Pipelined backend connections (`[server] pipeline_depth`).
//!
//! Owns the connections on which several clients' commands are in flight
//! at once. MySQL runs the commands it receives on one connection strictly
//! in order and answers them in order, so a driver task that owns the
//! connection writes every queued command in one flush and reads the
//! replies back in order, handing each whole reply (its bytes, exactly as
//! the server sent them, sequence ids included) to the session that
//! submitted it through a oneshot channel. The session then relays those
//! bytes to its client as it relays any reply (`crate::relay`), so the
//! client's framing, sequence ids and OK rewriting are the ordinary ones.
//!
//! One pipe per worker thread, link key and schema (no cross-thread
//! wake-up on the path), in each backend's [`Pool`]; its connection is
//! taken from the pool (it counts against `pool_max_per_backend`) with no
//! replayed `SET`s, and given back after an idle second.
//!
//! Failure rules: a reply reaches a session only whole, so no byte of a
//! reply that fails reached any client. A reply cut short, or any I/O
//! error, fails that command and every one behind it with
//! [`PipelineError::Lost`] (the sessions may retry the reads elsewhere,
//! as for any read that failed before its first byte was relayed) and the
//! connection, whose state is now unknown, is closed. A session that gave
//! up on its command (KILL QUERY, client gone) drops its receiver; the
//! driver reads that reply and throws it away. Head-of-line blocking is
//! bounded by the caller: [`Pipe::submit`] refuses (returns the command)
//! when the pipe is full or the reply being read has been running longer
//! than the stall bound, and the command takes the ordinary path.

use bytes::BytesMut;
use mysql_common::constants::CapabilityFlags;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use super::conn::{BackendConn, LinkKey, Login};
use super::pool::Pool;
use crate::protocol::PacketConn;
use crate::relay::{self, Expect};

/// A pipe's connection goes back to its pool after this long without work.
const IDLE: Duration = Duration::from_secs(1);
/// Largest reply a pipe buffers; a larger one fails with `TooLarge` (its
/// command may then run again on the ordinary path).
const MAX_REPLY: usize = 4 << 20;

/// Errors of a pipelined command. In every case no byte of its reply
/// reached a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    /// The connection failed before the whole reply was read.
    #[error("pipelined connection to {server} lost")]
    Lost {
        /// Backend name.
        server: String,
    },
    /// The reply was larger than a pipe buffers.
    #[error("reply over {MAX_REPLY} bytes on a pipelined connection")]
    TooLarge,
}

/// A whole reply, as the server sent it.
#[derive(Debug)]
pub struct Reply {
    /// Its packets, headers included.
    pub bytes: BytesMut,
    /// The capabilities of the link it came over (its shape).
    pub caps: CapabilityFlags,
}

/// What a submitted command's reply comes back as.
pub type ReplyRx = oneshot::Receiver<Result<Reply, PipelineError>>;

/// One queued command.
struct Job {
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<Reply, PipelineError>>,
}

/// Which connection a pipelined command may share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PipeKey {
    thread: ThreadId,
    key: LinkKey,
    db: Option<String>,
}

/// What a pipe's driver and its submitters share.
#[derive(Debug)]
struct PipeState {
    /// Commands submitted and not yet answered.
    inflight: AtomicUsize,
    /// When the reply being read now was started (ms since `born`, + 1);
    /// 0 while none is.
    reading_since: AtomicU64,
    /// Set when the driver ended (idle or failed).
    closed: AtomicBool,
    born: Instant,
}

impl PipeState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
}

/// A pipelined connection: the queue its driver task reads.
#[derive(Debug)]
pub struct Pipe {
    tx: mpsc::UnboundedSender<Job>,
    state: Arc<PipeState>,
}

/// The pipes of one backend (one per thread, link key and schema).
#[derive(Debug, Default)]
pub struct Pipes {
    map: Mutex<HashMap<PipeKey, Arc<Pipe>>>,
    /// Pipes being opened now: a second session of the same thread and
    /// key takes the ordinary path meanwhile instead of opening another.
    opening: Mutex<HashSet<PipeKey>>,
}

/// Removes a key from `Pipes::opening` however the opening ends.
struct Opening<'a> {
    pipes: &'a Pipes,
    key: PipeKey,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        lock(&self.pipes.opening).remove(&self.key);
    }
}

/// How a submission went.
#[derive(Debug)]
pub enum Submitted {
    /// Queued: the reply comes on this receiver.
    Queued(ReplyRx),
    /// Not queued (no pipe could be had, it is full, or stalled behind a
    /// long statement): the command takes the ordinary path.
    Refused,
}

/// What a submitter asks for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most commands in flight on one connection.
    pub depth: usize,
    /// A reply being read longer than this refuses new commands.
    pub stall: Duration,
}

impl Pipe {
    /// Queues `payload` unless the pipe is closed, full, or its current
    /// reply has been running longer than `limits.stall`.
    fn submit(&self, payload: &[u8], limits: Limits) -> Option<ReplyRx> {
        let s = &self.state;
        if s.closed.load(Ordering::Acquire) {
            return None;
        }
        let since = s.reading_since.load(Ordering::Acquire);
        if since != 0 && s.now_ms().saturating_sub(since) > limits.stall.as_millis() as u64 {
            return None;
        }
        if s.inflight.fetch_add(1, Ordering::AcqRel) >= limits.depth {
            s.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            payload: payload.to_vec(),
            reply,
        };
        if self.tx.send(job).is_err() {
            s.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(rx)
    }
}

impl Pipes {
    /// Submits COM_QUERY `payload` on this thread's pipe for `key` in
    /// schema `db` of `pool`'s backend, opening the pipe (a connection
    /// from the pool, without waiting for a slot) when there is none.
    pub async fn submit(
        pool: &Arc<Pool>,
        login: &Login,
        key: &LinkKey,
        db: Option<&str>,
        payload: &[u8],
        limits: Limits,
    ) -> Submitted {
        let pk = PipeKey {
            thread: std::thread::current().id(),
            key: key.clone(),
            db: db.map(str::to_string),
        };
        let existing = lock(&pool.pipes.map).get(&pk).cloned();
        if let Some(pipe) = existing {
            if let Some(rx) = pipe.submit(payload, limits) {
                return Submitted::Queued(rx);
            }
            if !pipe.state.closed.load(Ordering::Acquire) {
                return Submitted::Refused;
            }
        }
        if !lock(&pool.pipes.opening).insert(pk.clone()) {
            return Submitted::Refused;
        }
        let _opening = Opening {
            pipes: &pool.pipes,
            key: pk.clone(),
        };
        let Some(pipe) = open(pool, login, key, db, limits.depth).await else {
            return Submitted::Refused;
        };
        let rx = pipe.submit(payload, limits);
        lock(&pool.pipes.map).insert(pk, pipe);
        rx.map_or(Submitted::Refused, Submitted::Queued)
    }

    /// Pipes open now (for tests and metrics).
    pub fn open_pipes(&self) -> usize {
        lock(&self.map)
            .values()
            .filter(|p| !p.state.closed.load(Ordering::Acquire))
            .count()
    }
}

/// A new pipe on a connection from `pool` in schema `db` with no `SET`s,
/// its driver spawned on this thread, at most `limit` commands in flight;
/// None when no connection can be had at once.
async fn open(
    pool: &Arc<Pool>,
    login: &Login,
    key: &LinkKey,
    db: Option<&str>,
    limit: usize,
) -> Option<Arc<Pipe>> {
    let mut conn = pool.acquire(login, key, db, &[], false).await.ok()?;
    if (!conn.sets.is_empty() || conn.tainted) && conn.reset().await.is_err() {
        return None;
    }
    if let Some(db) = db {
        if conn.db.as_deref() != Some(db) && !matches!(conn.init_db(db).await, Ok(Ok(_))) {
            // a refused schema leaves the connection sound: back it goes
            pool.release_kept(conn);
            return None;
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(PipeState {
        inflight: AtomicUsize::new(0),
        reading_since: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        born: Instant::now(),
    });
    let depth =
        metrics::histogram!(crate::metrics::PIPELINE_DEPTH, "backend" => pool.name().to_string());
    let driver = Driver {
        conn,
        rx,
        state: Arc::clone(&state),
        inflight: VecDeque::new(),
        sink: sink(),
        depth,
        limit,
    };
    tokio::spawn(driver.run(Arc::clone(pool)));
    Some(Arc::new(Pipe { tx, state }))
}

/// The write side of a reply capture: bytes relayed here are kept
/// (`capture`), never sent anywhere.
fn sink() -> PacketConn<tokio::io::Empty> {
    let mut s = PacketConn::with_stream(tokio::io::empty());
    s.capture = Some(Vec::new());
    s.capture_limit = MAX_REPLY;
    s
}

/// The task that owns a pipelined connection.
struct Driver {
    conn: BackendConn,
    rx: mpsc::UnboundedReceiver<Job>,
    state: Arc<PipeState>,
    /// Commands written and not yet answered, oldest first.
    inflight: VecDeque<Job>,
    sink: PacketConn<tokio::io::Empty>,
    depth: metrics::Histogram,
    /// Most commands written and unanswered (`pipeline_depth`).
    limit: usize,
}

impl Driver {
    /// Writes what is queued, reads replies in order, until idle or failed;
    /// then gives a sound connection back to `pool`.
    async fn run(mut self, pool: Arc<Pool>) {
        let sound = self.serve().await;
        self.state.closed.store(true, Ordering::Release);
        // commands that raced the close get no reply: their senders drop
        self.rx.close();
        while let Ok(job) = self.rx.try_recv() {
            self.fail(job, None);
        }
        if sound {
            pool.release_kept(self.conn);
        }
    }

    /// The loop; false when the connection must be closed.
    async fn serve(&mut self) -> bool {
        loop {
            while self.inflight.len() < self.limit {
                let Ok(job) = self.rx.try_recv() else { break };
                self.queue(job);
            }
            // a command taken while idle is queued too: flush whatever is
            if !self.conn.io.wbuf.is_empty() {
                self.depth.record(self.inflight.len() as f64);
                if self.conn.io.flush().await.is_err() {
                    self.fail_all();
                    return false;
                }
            }
            let Some(job) = self.inflight.pop_front() else {
                match tokio::time::timeout(IDLE, self.rx.recv()).await {
                    Ok(Some(job)) => {
                        self.queue(job);
                        continue;
                    }
                    // the pipe was dropped, or idle: a sound connection
                    _ => return true,
                }
            };
            self.state
                .reading_since
                .store(self.state.now_ms(), Ordering::Release);
            let got = self.read_reply().await;
            self.state.reading_since.store(0, Ordering::Release);
            match got {
                Ok(bytes) => {
                    self.state.inflight.fetch_sub(1, Ordering::AcqRel);
                    // a session that gave up dropped its receiver
                    let _ = job.reply.send(Ok(bytes));
                }
                Err(e) => {
                    let lost = matches!(e, PipelineError::Lost { .. });
                    self.fail(job, Some(e));
                    if lost {
                        self.fail_all();
                        return false;
                    }
                }
            }
        }
    }

    /// Queues a job's command for the next flush; false when its session
    /// already gave up (nothing is sent).
    fn queue(&mut self, job: Job) -> bool {
        if job.reply.is_closed() {
            self.state.inflight.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let mut seq = 0;
        self.conn.io.queue(&mut seq, &job.payload);
        self.inflight.push_back(job);
        true
    }

    /// Reads the next reply whole, exactly as the server sent it.
    async fn read_reply(&mut self) -> Result<Reply, PipelineError> {
        let caps = self.conn.caps;
        let r = relay::relay(
            &mut self.conn,
            &mut self.sink,
            caps,
            Expect::Query,
            None,
            &mut |_, _| false,
        )
        .await;
        let captured = self.sink.capture.replace(Vec::new());
        let tail = self.sink.wbuf.split();
        match (r, captured) {
            (Ok(_), Some(mut bytes)) => {
                bytes.extend_from_slice(&tail);
                Ok(Reply {
                    bytes: BytesMut::from(&bytes[..]),
                    caps,
                })
            }
            (Ok(_), None) => Err(PipelineError::TooLarge),
            (Err(_), _) => Err(PipelineError::Lost {
                server: self.conn.server.clone(),
            }),
        }
    }

    /// Answers `job` with `err` (None: its sender is dropped).
    fn fail(&self, job: Job, err: Option<PipelineError>) {
        self.state.inflight.fetch_sub(1, Ordering::AcqRel);
        if let Some(e) = err {
            let _ = job.reply.send(Err(e));
        }
    }

    /// Fails every command written and not answered.
    fn fail_all(&mut self) {
        let server = self.conn.server.clone();
        while let Some(job) = self.inflight.pop_front() {
            self.fail(
                job,
                Some(PipelineError::Lost {
                    server: server.clone(),
                }),
            );
        }
    }
}

/// A connection whose "socket" is one reply already read whole: the
/// session relays it to its client with the ordinary relay.
pub fn replayed(reply: Reply) -> BackendConn<tokio::io::Empty> {
    let Reply { bytes, caps } = reply;
    let who = super::conn::Identity {
        caps,
        thread_id: 0,
        server: String::new(),
        version: String::new(),
        key: LinkKey {
            user: String::new(),
            caps: 0,
            collation: 0,
        },
        db: None,
        // Pipelined statements are reads: no GTID to track in their OKs.
        flavor: causeway_gtid::Flavor::Mysql,
    };
    BackendConn::logged_in(PacketConn::with_buffered(tokio::io::empty(), bytes), who)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| {
        m.clear_poison();
        poisoned.into_inner()
    })
}
