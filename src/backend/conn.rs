//! One connection from causeway to a MySQL server (the client side of the
//! protocol).
//!
//! Owns the session setup every backend connection gets
//! (`session_track_gtids`, so commits report the executed GTID set in their
//! OK packets with no extra round trip), and simple request/response commands
//! used by the proxy itself (INIT_DB, RESET_CONNECTION, SET). The login
//! (TLS, authentication) is in `login`. Client traffic is relayed by
//! `crate::relay`, not here. A connection is generic over its byte stream
//! (the proxy's TCP or TLS [`Stream`] by default) so the relay can be
//! tested over in-memory streams.
//!
//! Also owns whether a connection's state is known: a connection is
//! reusable only when no reply is pending (a command was sent and its reply
//! not read to its end), nothing is buffered, and it was never marked
//! broken. The pool refuses every other connection, so one client's
//! abandoned result can never be read by the next. And it records the
//! session state a connection carries for `transaction` pool mode: its
//! schema, the replayed `SET`s applied to it, whether it carries state
//! nothing describes (`tainted`, reset before reuse), and the statements
//! prepared on it (`super::stmt_cache`).

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use socket2::SockRef;
use std::mem::MaybeUninit;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

use crate::protocol::messages::{self, track};
use crate::protocol::stream::{ByteStream, Stream};
use crate::protocol::{ErrPacket, OkPacket, PacketConn, PacketError};

use super::reply::{self, Reply};
use super::stmt_cache::StmtCache;

mod login;

/// Errors talking to a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Socket or framing failure; the connection is unusable.
    #[error("backend {server}: {source}")]
    Io {
        /// Backend name.
        server: String,
        /// Cause.
        #[source]
        source: PacketError,
    },
    /// Connecting or logging in took longer than the connect timeout.
    #[error("backend {server}: connect timed out after {ms} ms")]
    Timeout {
        /// Backend name.
        server: String,
        /// Timeout.
        ms: u128,
    },
    /// The server answered with an error packet (passed to the client as is).
    #[error("backend {server}: {err}")]
    Server {
        /// Backend name.
        server: String,
        /// The server's error.
        err: ErrPacket,
    },
    /// The server sent something the protocol does not allow here.
    #[error("backend {server}: protocol violation: {detail}")]
    Protocol {
        /// Backend name.
        server: String,
        /// What was wrong.
        detail: String,
    },
    /// TLS could not be set up as `[backend_tls] mode` requires (the
    /// server does not offer it, or its certificate did not verify).
    #[error("backend {server}: TLS (backend_tls.mode = {mode}): {detail}")]
    Tls {
        /// Backend name.
        server: String,
        /// The mode in force.
        mode: causeway_config::TlsMode,
        /// What failed, e.g. "invalid peer certificate: UnknownIssuer".
        detail: String,
    },
    /// No connection slot became free in time.
    #[error("backend {server}: connection pool exhausted ({max} connections)")]
    PoolExhausted {
        /// Backend name.
        server: String,
        /// Pool limit.
        max: usize,
    },
}

/// Who logs in and how the link is shaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkKey {
    /// MySQL user.
    pub user: String,
    /// Reply-shaping capabilities copied from the client.
    pub caps: u32,
    /// Collation id sent in the handshake.
    pub collation: u8,
}

/// Credentials for a backend login.
#[derive(Debug, Clone)]
pub struct Login {
    /// MySQL user.
    pub user: String,
    /// Its password.
    pub password: String,
}

/// An authenticated backend connection.
#[derive(Debug)]
pub struct BackendConn<S = Stream> {
    /// Framed socket.
    pub io: PacketConn<S>,
    /// Capabilities in force on this link.
    pub caps: CapabilityFlags,
    /// MySQL's thread id for this connection.
    pub thread_id: u32,
    /// Backend name.
    pub server: String,
    /// Server version string.
    pub version: String,
    /// MySQL or MariaDB, from the greeting ([`super::flavor::detect`]).
    pub flavor: causeway_gtid::Flavor,
    /// Status flags of the last reply read to its end (the EOF a client
    /// without DEPRECATE_EOF is owed before a result's status is known).
    pub status: u16,
    /// Pool key this connection belongs to.
    pub key: LinkKey,
    /// Current default schema, as last reported by the server.
    pub db: Option<String>,
    /// When it was last handed back to its pool.
    pub idle_since: Instant,
    /// Set when the connection must not be reused.
    pub broken: bool,
    /// Set from the moment a command that has a reply is sent until that
    /// reply has been read to its end. A connection whose reply is pending
    /// is in an unknown state and is never reused (see [`Self::reusable`]).
    pending: bool,
    /// The thread whose event loop drives the socket (see
    /// `crate::workers`).
    home: std::thread::ThreadId,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    /// The replayed `SET` statements whose effect this connection carries
    /// since its last reset (its session-variable state, compared by the
    /// pool and by sessions in `transaction` pool mode).
    pub sets: Vec<String>,
    /// Set when the connection carries state that cannot be described by
    /// `db` and `sets` (a pinned session's user variables, temporary
    /// tables, locks...): it is reset before anyone else uses it.
    pub tainted: bool,
    /// Statements prepared on this connection, by SQL text.
    pub stmts: StmtCache,
    /// True until its first borrower has seen it (learns the version).
    pub fresh: bool,
    /// What `LAST_INSERT_ID()` returns on this connection, as far as
    /// causeway saw (the last nonzero insert id an OK reported here; 0
    /// after a reset).
    pub last_insert_id: u64,
}

/// Capabilities causeway always asks a backend for.
pub fn base_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_SESSION_TRACK
}

/// SQL run once on every new backend connection and after every reset:
/// commits report their GTIDs, and every change of session state is
/// reported (`SESSION_TRACK_STATE_CHANGE`), so a session in `transaction`
/// pool mode notices state it did not parse.
pub const SETUP_SQL: &str =
    "SET SESSION session_track_gtids = ALL_GTIDS, session_track_state_change = ON";

/// Who a logged-in connection is: server thread, names and link.
pub(crate) struct Identity {
    pub(crate) caps: CapabilityFlags,
    pub(crate) thread_id: u32,
    pub(crate) server: String,
    pub(crate) version: String,
    pub(crate) flavor: causeway_gtid::Flavor,
    pub(crate) key: LinkKey,
    pub(crate) db: Option<String>,
}

impl<S> BackendConn<S> {
    /// A freshly logged-in connection on this thread: no reply pending,
    /// no SETs, nothing cached (its setup has not run yet).
    pub(crate) fn logged_in(io: PacketConn<S>, who: Identity) -> BackendConn<S> {
        BackendConn {
            io,
            caps: who.caps,
            thread_id: who.thread_id,
            server: who.server,
            version: who.version,
            flavor: who.flavor,
            key: who.key,
            db: who.db,
            status: StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits(),
            idle_since: Instant::now(),
            broken: false,
            pending: false,
            home: std::thread::current().id(),
            permit: None,
            sets: Vec::new(),
            tainted: false,
            stmts: StmtCache::default(),
            fresh: true,
            last_insert_id: 0,
        }
    }

    /// A connection over an already connected socket, for unit tests of
    /// code that reads replies (no login, no setup).
    #[cfg(test)]
    pub(crate) fn for_tests(stream: S) -> BackendConn<S> {
        let who = Identity {
            caps: base_capabilities(),
            thread_id: 1,
            server: "test".into(),
            version: String::new(),
            flavor: causeway_gtid::Flavor::Mysql,
            key: LinkKey {
                user: "test".into(),
                caps: 0,
                collation: 255,
            },
            db: None,
        };
        Self::logged_in(PacketConn::with_stream(stream), who)
    }

    /// The thread whose event loop drives the socket (using it from
    /// another one moves it, see [`Self::bring_home`]).
    pub fn home(&self) -> std::thread::ThreadId {
        self.home
    }

    fn io_err(&mut self, source: PacketError) -> BackendError {
        self.broken = true;
        BackendError::Io {
            server: self.server.clone(),
            source,
        }
    }

    /// Marks the connection unusable and builds the protocol error.
    fn desync(&mut self, detail: String) -> BackendError {
        self.broken = true;
        BackendError::Protocol {
            server: self.server.clone(),
            detail,
        }
    }

    /// Whether the connection is in a known, idle state: not broken, no
    /// reply pending, nothing buffered in either direction. Only such a
    /// connection may be reset and pooled.
    pub fn reusable(&self) -> bool {
        !self.broken && !self.pending && self.io.rbuf.is_empty() && self.io.wbuf.is_empty()
    }

    /// Records that a reply is about to be read (the relay calls this when
    /// it starts); until [`Self::end_reply`] the connection is not reusable.
    pub fn begin_reply(&mut self) {
        self.pending = true;
    }

    /// Records that the reply was read to its end.
    pub fn end_reply(&mut self) {
        self.pending = false;
    }

    /// Whether a reply is pending (see [`Self::begin_reply`]).
    #[cfg(test)]
    pub(crate) fn reply_pending(&self) -> bool {
        self.pending
    }

    /// A COM_QUERY payload for causeway's own `sql`: on a link with
    /// CLIENT_QUERY_ATTRIBUTES it carries the empty attribute block.
    pub fn query_payload(&self, sql: &[u8]) -> Vec<u8> {
        let mut q = Vec::with_capacity(3 + sql.len());
        q.push(0x03);
        if self.caps.contains(CapabilityFlags::CLIENT_QUERY_ATTRIBUTES) {
            q.extend_from_slice(&crate::protocol::query_attrs::EMPTY_PREFIX);
        }
        q.extend_from_slice(sql);
        q
    }

    /// Learns what an OK packet reports about session state this connection
    /// tracks itself (the current schema).
    pub fn observe_ok(&mut self, ok: &OkPacket) {
        for (ty, data) in ok.state_entries() {
            if ty == track::SCHEMA {
                if let Some((name, _)) = messages::read_lenenc_str(data) {
                    self.db = Some(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }
}

impl<S: ByteStream> BackendConn<S> {
    /// Sends one client command whose reply the caller reads next (through
    /// `crate::relay`). The connection counts as having a reply pending
    /// from here on. Refused when bytes of an earlier reply are still
    /// buffered: the connection is then out of step with the server.
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        if !self.io.rbuf.is_empty() || self.pending {
            return Err(self.desync("unread reply bytes before a new command".into()));
        }
        self.pending = true;
        let mut seq = 0;
        self.io.queue(&mut seq, payload);
        if let Err(e) = self.io.flush().await {
            return Err(self.io_err(e));
        }
        Ok(())
    }

    /// Sends a command whose reply is a single OK or ERR packet, and reads
    /// exactly that packet: sequence id 1, an OK that parses to its last
    /// byte, or an ERR. Anything else breaks the connection.
    pub async fn command(
        &mut self,
        cmd: u8,
        arg: &[u8],
    ) -> Result<Result<OkPacket, ErrPacket>, BackendError> {
        let mut payload = Vec::with_capacity(1 + arg.len());
        payload.push(cmd);
        payload.extend_from_slice(arg);
        self.send_command(&payload).await?;
        let p = match self.io.read_packet().await {
            Ok(p) => p,
            Err(e) => return Err(self.io_err(e)),
        };
        let kind = reply::check_reply(p.seq, &p.payload, self.caps)
            .map_err(|e| self.desync(e.to_string()))?;
        if !self.io.rbuf.is_empty() {
            return Err(self.desync("bytes after a single-packet reply".into()));
        }
        match kind {
            Reply::Ok => {
                let ok = OkPacket::parse(&p.payload, self.caps)
                    .map_err(|e| self.desync(e.to_string()))?;
                self.pending = false;
                self.observe_ok(&ok);
                self.status = ok.status;
                Ok(Ok(ok))
            }
            Reply::Err => {
                let err = ErrPacket::parse(&p.payload).map_err(|e| self.desync(e.to_string()))?;
                self.pending = false;
                Ok(Err(err))
            }
        }
    }

    /// Sends `wait_sql` (a `SELECT WAIT_FOR_EXECUTED_GTID_SET(...)`) and then
    /// the client's command `payload` in one write, and reads the wait's
    /// reply. Returns whether the wait succeeded (result 0). The command's
    /// reply is left unread for the caller to relay or discard.
    pub async fn pipelined_wait(
        &mut self,
        wait_sql: &str,
        payload: &[u8],
    ) -> Result<bool, BackendError> {
        let q = self.query_payload(wait_sql.as_bytes());
        let mut seq = 0;
        self.io.queue(&mut seq, &q);
        let mut seq = 0;
        self.io.queue(&mut seq, payload);
        if let Err(e) = self.io.flush().await {
            return Err(self.io_err(e));
        }
        match self.read_single_value().await? {
            Ok(v) => Ok(v.as_deref() == Some(&b"0"[..])),
            Err(err) => {
                tracing::warn!(backend = %self.server, error = %err, "WAIT_FOR_EXECUTED_GTID_SET failed; the wait counts as missed");
                Ok(false)
            }
        }
    }

    /// Reads a text result set of one row and returns its first value
    /// (None for NULL), or the server's error.
    async fn read_single_value(
        &mut self,
    ) -> Result<Result<Option<Vec<u8>>, ErrPacket>, BackendError> {
        let deprecate_eof = self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        let first = self.read_or_break().await?;
        match first.first() {
            Some(0xFF) => {
                return Ok(Err(ErrPacket::parse(&first).unwrap_or_else(|_| {
                    ErrPacket::new(1105, "HY000", "malformed error")
                })))
            }
            Some(0x00) => return Ok(Ok(None)),
            _ => {}
        }
        let cols = messages::read_lenenc(&first).map(|v| v.0).unwrap_or(0);
        for _ in 0..cols {
            self.read_or_break().await?;
        }
        if !deprecate_eof {
            self.read_or_break().await?;
        }
        let mut value = None;
        loop {
            let p = self.read_or_break().await?;
            if p.first() == Some(&0xFF) {
                return Ok(Err(ErrPacket::parse(&p).unwrap_or_else(|_| {
                    ErrPacket::new(1105, "HY000", "malformed error")
                })));
            }
            if messages::is_terminator(p.len(), p.first().copied().unwrap_or(0), deprecate_eof) {
                return Ok(Ok(value));
            }
            if value.is_none() && p.first() != Some(&0xFB) {
                value = messages::read_lenenc_str(&p).map(|(v, _)| v.to_vec());
            }
        }
    }

    async fn read_or_break(&mut self) -> Result<bytes::BytesMut, BackendError> {
        match self.io.read_packet().await {
            Ok(p) => Ok(p.payload),
            Err(e) => Err(self.io_err(e)),
        }
    }

    /// Runs a query answering one row and returns its first value (None
    /// for NULL or no row), or the server's error.
    pub async fn query_value(
        &mut self,
        sql: &str,
    ) -> Result<Result<Option<Vec<u8>>, ErrPacket>, BackendError> {
        let q = self.query_payload(sql.as_bytes());
        let mut seq = 0;
        self.io.queue(&mut seq, &q);
        if let Err(e) = self.io.flush().await {
            return Err(self.io_err(e));
        }
        self.read_single_value().await
    }

    /// Runs a statement that returns no rows.
    pub async fn query_ok(
        &mut self,
        sql: &str,
    ) -> Result<Result<OkPacket, ErrPacket>, BackendError> {
        let q = self.query_payload(sql.as_bytes());
        self.command(0x03, q.get(1..).unwrap_or_default()).await
    }

    /// Changes the default schema.
    pub async fn init_db(&mut self, db: &str) -> Result<Result<OkPacket, ErrPacket>, BackendError> {
        let r = self.command(0x02, db.as_bytes()).await?;
        if r.is_ok() {
            self.db = Some(db.to_string());
        }
        Ok(r)
    }

    /// Closes prepared statements `ids` (COM_STMT_CLOSE has no reply).
    pub async fn close_stmts(&mut self, ids: &[u32]) -> Result<(), BackendError> {
        if ids.is_empty() {
            return Ok(());
        }
        for &id in ids {
            // COM_STMT_CLOSE: the command byte, then the statement id
            if let Some(close) = messages::with_stmt_id(&[0x19, 0, 0, 0, 0], id) {
                let mut seq = 0;
                self.io.queue(&mut seq, &close);
            }
        }
        if let Err(e) = self.io.flush().await {
            return Err(self.io_err(e));
        }
        Ok(())
    }
}

impl BackendConn {
    /// Moves the socket to the calling thread's event loop if it is driven
    /// by another one (a pooled connection opened by a session on another
    /// worker), so the session's round trips need no cross-thread wake-up.
    pub fn bring_home(&mut self) -> std::io::Result<()> {
        let here = std::thread::current().id();
        if self.home != here {
            self.io.reregister()?;
            self.home = here;
        }
        Ok(())
    }

    /// Like [`Self::reusable`], and the socket has nothing unread and is
    /// not closed by the server (one non-blocking `MSG_PEEK`).
    pub fn quiescent(&self) -> bool {
        if !self.reusable() {
            return false;
        }
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        let Some(tcp) = self.io.tcp() else {
            return false;
        };
        match SockRef::from(tcp).peek(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            // bytes nobody asked for, or the server closed the connection
            Ok(_) => false,
        }
    }

    /// COM_RESET_CONNECTION followed by the session setup, so the connection
    /// carries no state of its previous user. Runs only on a quiescent
    /// connection; each step must answer with exactly one OK (see
    /// [`Self::command`]); any other outcome leaves the connection broken.
    pub async fn reset(&mut self) -> Result<(), BackendError> {
        if !self.quiescent() {
            return Err(self.desync("connection state unknown; not reset".into()));
        }
        let r = self.reset_steps().await;
        if r.is_err() {
            self.broken = true;
        }
        // the server closed every prepared statement and forgot the SETs
        self.stmts.clear();
        self.sets.clear();
        self.tainted = false;
        self.last_insert_id = 0;
        r
    }

    async fn reset_steps(&mut self) -> Result<(), BackendError> {
        let server = self.server.clone();
        let to_err = |err| BackendError::Server {
            server: server.clone(),
            err,
        };
        self.command(0x1F, &[]).await?.map_err(to_err)?;
        let setup = super::flavor::setup_sql(self.flavor);
        self.query_ok(setup).await?.map_err(to_err)?;
        if let Some(names) = super::flavor::set_names(self.flavor, self.key.collation) {
            self.query_ok(&names).await?.map_err(to_err)?;
        }
        Ok(())
    }
}

/// Character set and collation names of a collation id.
pub fn collation_names(id: u8) -> Option<(String, String)> {
    use mysql_common::collations::{Collation, CollationId};
    let cid = CollationId::from(id as u16);
    if cid == CollationId::UNKNOWN_COLLATION_ID {
        return None;
    }
    let c = Collation::resolve(cid);
    Some((c.charset().to_string(), c.collation().to_string()))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collation_ids_resolve() {
        assert_eq!(
            collation_names(255),
            Some(("utf8mb4".into(), "utf8mb4_0900_ai_ci".into()))
        );
        // SET NAMES must name the charset as the server knows it
        assert_eq!(
            collation_names(33),
            Some(("utf8mb3".into(), "utf8mb3_general_ci".into()))
        );
        assert_eq!(
            collation_names(8),
            Some(("latin1".into(), "latin1_swedish_ci".into()))
        );
        assert_eq!(collation_names(0), None, "no collation has id 0");
    }
}
