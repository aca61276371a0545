//! One connection from causeway to a MySQL server (the client side of the
//! protocol).
//!
//! Owns the login (TLS per `[backend_tls] mode`, caching_sha2_password
//! fast path, full authentication against a server whose cache is cold:
//! the cleartext password over TLS, RSA only on a plaintext link, auth
//! switch to mysql_native_password), the session setup every backend connection gets
//! (`session_track_gtids`, so commits report the executed GTID set in their
//! OK packets with no extra round trip), and simple request/response commands
//! used by the proxy itself (INIT_DB, RESET_CONNECTION, SET). Client traffic
//! is relayed by `crate::relay`, not here.
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

use mysql_common::constants::CapabilityFlags;
use socket2::{SockRef, TcpKeepalive};
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::protocol::handshake::{self, CACHING_SHA2, NATIVE};
use crate::protocol::messages::{self, track};
use crate::protocol::{ErrPacket, OkPacket, PacketConn, PacketError};
use crate::tls::BackendTls;

use super::reply::{self, Reply};
use super::stmt_cache::StmtCache;

/// Idle time before the first TCP keepalive probe on a backend socket.
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
/// Interval between TCP keepalive probes on a backend socket.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

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

impl BackendError {
    /// Whether nothing can have happened on the server, so another backend
    /// may be tried (connect failures, not errors of a sent statement).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            BackendError::Timeout { .. }
                | BackendError::PoolExhausted { .. }
                | BackendError::Tls { .. }
        )
    }
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
pub struct BackendConn {
    /// Framed socket.
    pub io: PacketConn,
    /// Capabilities in force on this link.
    pub caps: CapabilityFlags,
    /// MySQL's thread id for this connection.
    pub thread_id: u32,
    /// Backend name.
    pub server: String,
    /// Server version string.
    pub version: String,
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

impl BackendConn {
    /// A connection over an already connected socket, for unit tests of
    /// code that reads replies (no login, no setup).
    #[cfg(test)]
    pub(crate) fn for_tests(stream: TcpStream) -> BackendConn {
        BackendConn {
            io: PacketConn::new(stream),
            caps: base_capabilities(),
            thread_id: 1,
            server: "test".into(),
            version: String::new(),
            key: LinkKey {
                user: "test".into(),
                caps: 0,
                collation: 255,
            },
            db: None,
            idle_since: Instant::now(),
            broken: false,
            pending: false,
            home: std::thread::current().id(),
            permit: None,
            sets: Vec::new(),
            tainted: false,
            stmts: StmtCache::default(),
            fresh: true,
        }
    }

    /// The thread whose event loop drives the socket (using it from
    /// another one moves it, see [`Self::bring_home`]).
    pub fn home(&self) -> std::thread::ThreadId {
        self.home
    }

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

    /// Connects and logs in over plain TCP, bounded by `timeout` (tests
    /// and tools; the proxy's own links use [`Self::connect_with`]).
    pub async fn connect(
        server: &str,
        addr: &str,
        login: &Login,
        key: LinkKey,
        db: Option<&str>,
        timeout: Duration,
    ) -> Result<BackendConn, BackendError> {
        let plain = BackendTls::default();
        Self::connect_with(server, addr, login, (key, db), timeout, &plain).await
    }

    /// Connects and logs in, bounded by `timeout`, with TLS as `tls` says.
    pub async fn connect_with(
        server: &str,
        addr: &str,
        login: &Login,
        (key, db): (LinkKey, Option<&str>),
        timeout: Duration,
        tls: &BackendTls,
    ) -> Result<BackendConn, BackendError> {
        let inner = Self::connect_inner(server, addr, login, key, db, tls);
        match tokio::time::timeout(timeout, inner).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout {
                server: server.to_string(),
                ms: timeout.as_millis(),
            }),
        }
    }

    async fn connect_inner(
        server: &str,
        addr: &str,
        login: &Login,
        key: LinkKey,
        db: Option<&str>,
        tls: &BackendTls,
    ) -> Result<BackendConn, BackendError> {
        let io_err = |source: PacketError| BackendError::Io {
            server: server.to_string(),
            source,
        };
        let proto = |detail: String| BackendError::Protocol {
            server: server.to_string(),
            detail,
        };
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| io_err(e.into()))?;
        set_keepalive(&stream, server);
        let mut io = PacketConn::new(stream);
        let greet = io.read_packet().await.map_err(io_err)?;
        if greet.payload.first() == Some(&0xFF) {
            let err = ErrPacket::parse(&greet.payload).map_err(|e| proto(e.to_string()))?;
            return Err(BackendError::Server {
                server: server.to_string(),
                err,
            });
        }
        let hello =
            handshake::parse_server_hello(&greet.payload).map_err(|e| proto(e.to_string()))?;
        let caps = (base_capabilities()
            | CapabilityFlags::from_bits_truncate(key.caps)
                & handshake::reply_shaping_capabilities())
            & (hello.caps | CapabilityFlags::CLIENT_CONNECT_WITH_DB);
        if !caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
            return Err(proto("server does not support CLIENT_SESSION_TRACK".into()));
        }
        let mut plugin = hello.plugin.clone();
        let mut nonce = hello.nonce.clone();
        if plugin != CACHING_SHA2 && plugin != NATIVE {
            plugin = CACHING_SHA2.to_string();
        }
        let auth = handshake::scramble(&plugin, &nonce, &login.password).unwrap_or_default();
        let mut seq = greet.seq.wrapping_add(1);
        let link = LinkTls {
            server,
            addr,
            tls,
            offered: hello.caps.contains(CapabilityFlags::CLIENT_SSL),
        };
        let hello_caps = link
            .start(&mut io, &mut seq, caps, (key.collation, db.is_some()))
            .await?;
        let resp =
            handshake::client_hello(hello_caps, key.collation, &login.user, &auth, db, &plugin);
        io.send(&mut seq, &resp).await.map_err(io_err)?;
        loop {
            let p = io.read_packet().await.map_err(io_err)?;
            seq = p.seq.wrapping_add(1);
            match p.payload.first().copied() {
                Some(0x00) => break,
                Some(0xFF) => {
                    let err = ErrPacket::parse(&p.payload).map_err(|e| proto(e.to_string()))?;
                    return Err(BackendError::Server {
                        server: server.to_string(),
                        err,
                    });
                }
                Some(0xFE) => {
                    // auth switch: plugin name NUL, nonce NUL
                    let body = &p.payload[1..];
                    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    plugin = String::from_utf8_lossy(&body[..end]).into_owned();
                    let mut n = body.get(end + 1..).unwrap_or_default().to_vec();
                    if n.last() == Some(&0) {
                        n.pop();
                    }
                    nonce = n;
                    let auth =
                        handshake::scramble(&plugin, &nonce, &login.password).ok_or_else(|| {
                            BackendError::Server {
                                server: server.to_string(),
                                err: unsupported_plugin(&login.user, &plugin),
                            }
                        })?;
                    io.send(&mut seq, &auth).await.map_err(io_err)?;
                }
                Some(0x01) if plugin == CACHING_SHA2 => match p.payload.get(1) {
                    Some(0x03) => {} // fast auth succeeded; OK follows
                    Some(0x04) if io.is_tls() => {
                        // full authentication over TLS: the cleartext
                        // password, as MySQL clients send it; no RSA key
                        let mut pw = login.password.as_bytes().to_vec();
                        pw.push(0);
                        io.send(&mut seq, &pw).await.map_err(io_err)?;
                    }
                    Some(0x04) => {
                        // full authentication without TLS: ask for the RSA key
                        io.send(&mut seq, &[0x02]).await.map_err(io_err)?;
                        let key_pkt = io.read_packet().await.map_err(io_err)?;
                        seq = key_pkt.seq.wrapping_add(1);
                        if key_pkt.payload.first() != Some(&0x01) {
                            return Err(proto("expected RSA public key".into()));
                        }
                        let pem = &key_pkt.payload[1..];
                        let plain = handshake::xor_password(&login.password, &nonce);
                        let enc = mysql_common::crypto::encrypt(&plain, pem);
                        io.send(&mut seq, &enc).await.map_err(io_err)?;
                    }
                    _ => return Err(proto("unexpected caching_sha2_password state".into())),
                },
                _ => return Err(proto("unexpected packet during authentication".into())),
            }
        }
        let mut conn = BackendConn {
            io,
            caps,
            thread_id: hello.connection_id,
            server: server.to_string(),
            version: hello.version,
            key,
            db: db.map(str::to_string),
            idle_since: Instant::now(),
            broken: false,
            pending: false,
            home: std::thread::current().id(),
            permit: None,
            sets: Vec::new(),
            tainted: false,
            stmts: StmtCache::default(),
            fresh: true,
        };
        conn.query_ok(SETUP_SQL)
            .await?
            .map_err(|err| BackendError::Server {
                server: server.to_string(),
                err,
            })?;
        Ok(conn)
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

    /// Records that a reply is about to be read (the relay calls this when
    /// it starts); until [`Self::end_reply`] the connection is not reusable.
    pub fn begin_reply(&mut self) {
        self.pending = true;
    }

    /// Records that the reply was read to its end.
    pub fn end_reply(&mut self) {
        self.pending = false;
    }

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

    /// Changes the default schema.
    pub async fn init_db(&mut self, db: &str) -> Result<Result<OkPacket, ErrPacket>, BackendError> {
        let r = self.command(0x02, db.as_bytes()).await?;
        if r.is_ok() {
            self.db = Some(db.to_string());
        }
        Ok(r)
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
        r
    }

    async fn reset_steps(&mut self) -> Result<(), BackendError> {
        let server = self.server.clone();
        let to_err = |err| BackendError::Server {
            server: server.clone(),
            err,
        };
        self.command(0x1F, &[]).await?.map_err(to_err)?;
        self.query_ok(SETUP_SQL).await?.map_err(to_err)?;
        let cs = collation_names(self.key.collation);
        if let Some((charset, collation)) = cs {
            self.query_ok(&format!("SET NAMES {charset} COLLATE {collation}"))
                .await?
                .map_err(to_err)?;
        }
        Ok(())
    }

    /// Closes prepared statements `ids` (COM_STMT_CLOSE has no reply).
    pub async fn close_stmts(&mut self, ids: &[u32]) -> Result<(), BackendError> {
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            let mut p = [0x19, 0, 0, 0, 0];
            if let Some(dst) = p.get_mut(1..5) {
                dst.copy_from_slice(&id.to_le_bytes());
            }
            let mut seq = 0;
            self.io.queue(&mut seq, &p);
        }
        if let Err(e) = self.io.flush().await {
            return Err(self.io_err(e));
        }
        Ok(())
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

/// Turns on TCP keepalive, so a backend that vanished without a FIN (host
/// down, network cut) is noticed by the kernel. Best effort.
fn set_keepalive(stream: &TcpStream, server: &str) {
    let ka = TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(backend = %server, error = %e, "cannot enable TCP keepalive");
    }
}

/// The TLS step of one backend login.
struct LinkTls<'a> {
    server: &'a str,
    addr: &'a str,
    tls: &'a BackendTls,
    /// The server's greeting announced CLIENT_SSL.
    offered: bool,
}

impl LinkTls<'_> {
    fn error(&self, detail: String) -> BackendError {
        BackendError::Tls {
            server: self.server.to_string(),
            mode: self.tls.mode,
            detail,
        }
    }

    /// Switches `io` to TLS when the mode asks for it and the server
    /// offers it (an SSLRequest, then the TLS handshake); refuses when the
    /// mode requires TLS and the server does not offer it. Returns the
    /// capabilities the handshake response must carry.
    async fn start(
        &self,
        io: &mut PacketConn,
        seq: &mut u8,
        caps: CapabilityFlags,
        (collation, with_db): (u8, bool),
    ) -> Result<CapabilityFlags, BackendError> {
        let Some(connector) = self.tls.connector() else {
            return Ok(caps);
        };
        if !self.offered {
            if self.tls.mode.requires() {
                return Err(self.error("the server does not offer TLS".into()));
            }
            return Ok(caps);
        }
        let name = BackendTls::server_name(self.addr)
            .ok_or_else(|| self.error(format!("no host name or IP address in '{}'", self.addr)))?;
        let caps = caps | CapabilityFlags::CLIENT_SSL;
        // the same capabilities as the handshake response that follows
        // (MySQL refuses a mismatch with 1043)
        let mut sent = caps;
        sent.set(CapabilityFlags::CLIENT_CONNECT_WITH_DB, with_db);
        let mut req = Vec::with_capacity(32);
        req.extend_from_slice(&sent.bits().to_le_bytes());
        req.extend_from_slice(&(1u32 << 30).to_le_bytes());
        req.push(collation);
        req.extend_from_slice(&[0u8; 23]);
        io.send(seq, &req)
            .await
            .map_err(|source| BackendError::Io {
                server: self.server.to_string(),
                source,
            })?;
        io.connect_tls(connector, name)
            .await
            .map_err(|e| self.error(format!("handshake failed: {}", tls_cause(&e))))?;
        Ok(caps)
    }
}

/// The innermost cause of a failed TLS handshake (rustls' own error,
/// e.g. "invalid peer certificate: UnknownIssuer").
fn tls_cause(e: &PacketError) -> String {
    match e {
        PacketError::Io(io) => io
            .get_ref()
            .map_or_else(|| io.to_string(), |inner| inner.to_string()),
        other => other.to_string(),
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

/// The error for a backend account whose authentication plugin causeway
/// cannot speak (ER_NOT_SUPPORTED_AUTH_MODE, 1251 / 08004), naming the
/// account and the plugin. `sha256_password` needs TLS or an RSA exchange
/// causeway does not implement towards backends.
pub fn unsupported_plugin(user: &str, plugin: &str) -> ErrPacket {
    let why = if plugin == "sha256_password" {
        "which causeway does not support without TLS to backends"
    } else {
        "which causeway does not support"
    };
    ErrPacket::new(
        1251,
        "08004",
        format!(
            "backend account '{user}' uses authentication plugin {plugin}, {why}; \
             use caching_sha2_password (ALTER USER ... IDENTIFIED WITH caching_sha2_password)"
        ),
    )
}

#[cfg(test)]
mod plugin_tests {
    #[test]
    fn unsupported_plugins_are_named() {
        let e = super::unsupported_plugin("x", "sha256_password");
        assert_eq!(e.code, 1251);
        assert_eq!(&e.state, b"08004");
        assert!(
            e.message.contains("'x'")
                && e.message.contains("sha256_password")
                && e.message.contains("without TLS")
                && e.message.contains("caching_sha2_password"),
            "{}",
            e.message
        );
    }
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
        assert_eq!(
            collation_names(33).map(|c| c.0),
            Some("utf8mb3".to_string()).or(Some("utf8".into()))
        );
    }
}
