//! One client session: the per-connection task.
//!
//! Owns the client socket after login, the backend connections the session
//! holds (at most one per backend, kept for the session's life and returned
//! to their pools, reset, when it ends), the prepared-statement map, and
//! command dispatch. Every statement passes through `route`, the
//! per-statement backend decision point.

use causeway_config::User;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpStream;

use super::login::{self, ChangeUser};
use super::stmt::{Stmt, StmtMap};
use crate::backend::{BackendConn, BackendError, LinkKey, Login, Pool};
use crate::protocol::handshake;
use crate::protocol::{ErrPacket, OkPacket, PacketConn};
use crate::proxy::Proxy;
use crate::relay::{self, Expect, Outcome, RelayError};
use crate::topology::{Backend, Topology};

/// What the dispatcher tells the loop.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

struct Held {
    pool: Arc<Pool>,
    conn: BackendConn,
}

/// A logged-in client session.
pub struct Session {
    proxy: Arc<Proxy>,
    id: u32,
    client: PacketConn,
    peer_host: String,
    caps: CapabilityFlags,
    collation: u8,
    user: User,
    nonce: [u8; 20],
    db: Option<String>,
    topo: Arc<Topology>,
    held: Vec<Held>,
    stmts: StmtMap,
    status: u16,
    last_route: String,
}

impl Session {
    /// Runs a client connection from greeting to close.
    pub async fn run(proxy: Arc<Proxy>, stream: TcpStream, peer: SocketAddr) {
        let id = proxy.next_connection_id();
        let mut client = PacketConn::new(stream);
        let topo = proxy.topology.load_full();
        if proxy.clients.load(Ordering::Relaxed) > topo.config.server.max_connections as usize {
            let err = ErrPacket::new(1040, "08004", "Too many connections");
            let mut seq = 0;
            let _ = client.send(&mut seq, &err.encode()).await;
            return;
        }
        let peer_host = peer.ip().to_string();
        let version = proxy.server_version.load_full();
        let (auth, mut seq) =
            match login::login(&mut client, &topo.config, id, &version, &peer_host).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(conn = id, error = %e, "login failed");
                    return;
                }
            };
        let mut session = Session {
            id,
            peer_host,
            caps: auth.hello.caps,
            collation: auth.hello.collation,
            user: auth.user,
            nonce: auth.nonce,
            db: auth.hello.db.clone(),
            topo,
            held: Vec::new(),
            stmts: StmtMap::default(),
            status: StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits(),
            last_route: String::new(),
            client,
            proxy,
        };
        if let Err(err) = session.check_initial_db().await {
            let _ = session.client.send(&mut seq, &err.encode()).await;
            session.close();
            return;
        }
        if session
            .client
            .send(&mut seq, &login::login_ok(session.caps))
            .await
            .is_ok()
        {
            tracing::debug!(conn = id, user = %session.user.name, "client logged in");
            session.serve().await;
        }
        session.close();
    }

    /// Validates the schema named at login (MySQL refuses unknown ones).
    async fn check_initial_db(&mut self) -> Result<(), ErrPacket> {
        if self.db.is_some() {
            let primary = Arc::clone(&self.topo.primary);
            self.conn_for(&primary).await?;
        }
        Ok(())
    }

    async fn serve(&mut self) {
        let mut stop = self.proxy.shutdown_signal();
        loop {
            let pkt = if self.client.has_buffered_packet() {
                self.client.read_packet().await
            } else {
                tokio::select! {
                    r = self.client.read_packet() => r,
                    _ = stop.changed() => break,
                }
            };
            let Ok(pkt) = pkt else { break };
            match self.dispatch(&pkt.payload).await {
                Flow::Continue => {}
                Flow::Quit => break,
            }
        }
    }

    /// Returns every held backend connection to its pool.
    fn close(&mut self) {
        for h in self.held.drain(..) {
            h.pool.release(h.conn);
        }
        self.client_shutdown();
    }

    fn client_shutdown(&mut self) {
        // dropping the socket closes it; flush what is queued first
        self.client.wbuf.clear();
    }

    async fn dispatch(&mut self, payload: &[u8]) -> Flow {
        let Some(&cmd) = payload.first() else {
            return self.reply_err(&unknown_command()).await;
        };
        match cmd {
            0x01 => Flow::Quit,
            0x02 => {
                let flow = self.forward_primary(payload, Expect::Simple, None).await;
                if let Some(o) = flow.1 {
                    if o.error.is_none() {
                        self.db = Some(String::from_utf8_lossy(&payload[1..]).into_owned());
                    }
                }
                flow.0
            }
            0x03 => self.query(payload).await,
            0x04 => {
                self.forward_primary(payload, Expect::FieldList, None)
                    .await
                    .0
            }
            0x09 => {
                self.forward_primary(payload, Expect::Statistics, None)
                    .await
                    .0
            }
            0x0E => self.reply_ok().await,
            0x11 => self.change_user(payload).await,
            0x16 => self.prepare(payload).await,
            0x17 => {
                self.stmt_command(payload, Expect::Execute, "mysqld_stmt_execute")
                    .await
            }
            0x18 | 0x19 => self.stmt_no_reply(payload).await,
            0x1A => {
                self.stmt_command(payload, Expect::Simple, "mysqld_stmt_reset")
                    .await
            }
            0x1B => self.set_option(payload).await,
            0x1C => {
                self.stmt_command(payload, Expect::Fetch, "mysqld_stmt_fetch")
                    .await
            }
            0x1F => {
                for h in self.held.drain(..) {
                    h.pool.release(h.conn);
                }
                self.stmts.clear();
                self.status = StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits();
                self.reply_ok().await
            }
            _ => self.reply_err(&unknown_command()).await,
        }
    }

    async fn query(&mut self, payload: &[u8]) -> Flow {
        let sql = &payload[1..];
        if starts_with_keyword(sql, b"kill") {
            let err = ErrPacket::new(
                1235,
                "42000",
                "causeway does not support KILL yet; connect to the server directly to kill a query",
            );
            return self.reply_err(&err).await;
        }
        let backend = self.route(sql);
        self.forward(&backend, payload, Expect::Query, None).await.0
    }

    /// The per-statement backend decision.
    fn route(&mut self, _sql: &[u8]) -> Arc<Backend> {
        self.topo = self.proxy.topology.load_full();
        Arc::clone(&self.topo.primary)
    }

    async fn forward_primary(
        &mut self,
        payload: &[u8],
        expect: Expect,
        stmt_id: Option<u32>,
    ) -> (Flow, Option<Outcome>) {
        let primary = Arc::clone(&self.topo.primary);
        self.forward(&primary, payload, expect, stmt_id).await
    }

    /// Sends one command to `backend` and relays its reply.
    async fn forward(
        &mut self,
        backend: &Arc<Backend>,
        payload: &[u8],
        expect: Expect,
        stmt_id: Option<u32>,
    ) -> (Flow, Option<Outcome>) {
        let idx = match self.conn_for(backend).await {
            Ok(i) => i,
            Err(err) => return (self.reply_err(&err).await, None),
        };
        self.last_route = backend.name().to_string();
        let h = &mut self.held[idx];
        let mut seq = 0;
        h.conn.io.queue(&mut seq, payload);
        if let Err(e) = h.conn.io.flush().await {
            let name = h.conn.server.clone();
            self.drop_conn(idx);
            tracing::warn!(conn = self.id, backend = %name, error = %e, "backend write failed");
            return (self.reply_err(&lost_backend(&name)).await, None);
        }
        let caps = self.caps;
        let result = relay::relay(
            &mut h.conn,
            &mut self.client,
            caps,
            expect,
            stmt_id,
            &mut |_ok, _final| false,
        )
        .await;
        match result {
            Ok(outcome) => {
                self.status = outcome.status;
                (Flow::Continue, Some(outcome))
            }
            Err(RelayError::Client(_)) => (Flow::Quit, None),
            Err(RelayError::Backend {
                sent: false,
                source,
            }) => {
                let name = self.held[idx].conn.server.clone();
                tracing::warn!(conn = self.id, backend = %name, error = %source, "backend lost");
                self.drop_conn(idx);
                (self.reply_err(&lost_backend(&name)).await, None)
            }
            Err(e) => {
                tracing::warn!(conn = self.id, error = %e, "reply broken; closing client");
                self.drop_conn(idx);
                (Flow::Quit, None)
            }
        }
    }

    /// The held connection to `backend`, acquiring one if needed, with the
    /// session's schema applied.
    async fn conn_for(&mut self, backend: &Arc<Backend>) -> Result<usize, ErrPacket> {
        let idx = match self
            .held
            .iter()
            .position(|h| h.conn.server == backend.name())
        {
            Some(i) => i,
            None => {
                let login = Login {
                    user: self.user.backend_user.clone(),
                    password: self.user.backend_password.clone(),
                };
                let key = LinkKey {
                    user: login.user.clone(),
                    caps: (self.caps & handshake::reply_shaping_capabilities()).bits(),
                    collation: self.collation,
                };
                let conn = backend
                    .pool
                    .acquire(&login, &key, self.db.as_deref())
                    .await
                    .map_err(|e| backend_error(&e, backend))?;
                self.proxy.learn_server_version(&conn.version);
                self.held.push(Held {
                    pool: Arc::clone(&backend.pool),
                    conn,
                });
                self.held.len() - 1
            }
        };
        if let Some(db) = self.db.clone() {
            if self.held[idx].conn.db.as_deref() != Some(db.as_str()) {
                match self.held[idx].conn.init_db(&db).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Err(err),
                    Err(e) => {
                        self.drop_conn(idx);
                        return Err(backend_error(&e, backend));
                    }
                }
            }
        }
        Ok(idx)
    }

    fn drop_conn(&mut self, idx: usize) {
        let h = self.held.swap_remove(idx);
        self.stmts.forget_backend(&h.conn.server);
    }

    async fn reply_err(&mut self, err: &ErrPacket) -> Flow {
        let mut seq = 1;
        match self.client.send(&mut seq, &err.encode()).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }

    async fn reply_ok(&mut self) -> Flow {
        let ok = OkPacket {
            status: self.status
                & (StatusFlags::SERVER_STATUS_AUTOCOMMIT | StatusFlags::SERVER_STATUS_IN_TRANS)
                    .bits(),
            ..OkPacket::default()
        };
        let mut seq = 1;
        match self.client.send(&mut seq, &ok.encode(0, self.caps)).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }

    async fn set_option(&mut self, payload: &[u8]) -> Flow {
        let (flow, outcome) = self.forward_primary(payload, Expect::Simple, None).await;
        if outcome.is_some_and(|o| o.error.is_none()) && payload.len() >= 3 {
            let on = u16::from_le_bytes([payload[1], payload[2]]) == 0;
            self.caps.set(CapabilityFlags::CLIENT_MULTI_STATEMENTS, on);
        }
        flow
    }

    async fn prepare(&mut self, payload: &[u8]) -> Flow {
        let backend = self.route(&payload[1..]);
        let client_id = self.stmts.next_id();
        let (flow, outcome) = self
            .forward(&backend, payload, Expect::Prepare, Some(client_id))
            .await;
        if let Some((backend_id, columns, params)) = outcome.and_then(|o| o.prepared) {
            self.stmts.insert(
                client_id,
                Stmt {
                    backend: backend.name().to_string(),
                    backend_id,
                    columns,
                    params,
                },
            );
        }
        flow
    }

    /// A statement command with a reply (execute, fetch, reset).
    async fn stmt_command(&mut self, payload: &[u8], expect: Expect, what: &str) -> Flow {
        let Some((stmt, rewritten)) = self.stmts.rewrite(payload) else {
            let id = stmt_id_of(payload);
            let err = ErrPacket::new(
                1243,
                "HY000",
                format!("Unknown prepared statement handler ({id}) given to {what}"),
            );
            return self.reply_err(&err).await;
        };
        let Some(backend) = self.topo.backend(&stmt.backend).cloned() else {
            return self.reply_err(&lost_backend(&stmt.backend)).await;
        };
        self.forward(&backend, &rewritten, expect, None).await.0
    }

    /// SEND_LONG_DATA and CLOSE: forwarded, no reply.
    async fn stmt_no_reply(&mut self, payload: &[u8]) -> Flow {
        let Some((stmt, rewritten)) = self.stmts.rewrite(payload) else {
            return Flow::Continue;
        };
        if payload[0] == 0x19 {
            self.stmts.remove(stmt_id_of(payload));
        }
        if let Some(h) = self.held.iter_mut().find(|h| h.conn.server == stmt.backend) {
            let mut seq = 0;
            h.conn.io.queue(&mut seq, &rewritten);
            if h.conn.io.flush().await.is_err() {
                h.conn.broken = true;
            }
        }
        Flow::Continue
    }

    async fn change_user(&mut self, payload: &[u8]) -> Flow {
        let Some(req) = login::parse_change_user(payload, self.caps) else {
            let err = ErrPacket::new(1043, "08S01", "Bad handshake");
            self.reply_err(&err).await;
            return Flow::Quit;
        };
        let mut seq = 1;
        let cfg = Arc::clone(&self.topo.config);
        let user = match login::change_user(
            &mut self.client,
            &mut seq,
            &cfg,
            &req,
            &mut self.nonce,
            &self.peer_host,
        )
        .await
        {
            Ok(u) => u,
            Err(_) => return Flow::Quit,
        };
        self.apply_change_user(user, &req);
        if let Err(err) = self.check_initial_db().await {
            let _ = self.client.send(&mut seq, &err.encode()).await;
            return Flow::Quit;
        }
        match self
            .client
            .send(&mut seq, &login::login_ok(self.caps))
            .await
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }

    fn apply_change_user(&mut self, user: User, req: &ChangeUser) {
        for h in self.held.drain(..) {
            h.pool.release(h.conn);
        }
        self.stmts.clear();
        self.user = user;
        self.db = req.db.clone();
        if let Some(c) = req.collation {
            self.collation = c;
        }
        self.status = StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits();
    }
}

fn stmt_id_of(payload: &[u8]) -> u32 {
    payload
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

fn unknown_command() -> ErrPacket {
    ErrPacket::new(1047, "08S01", "Unknown command")
}

fn lost_backend(name: &str) -> ErrPacket {
    ErrPacket::new(
        2013,
        "HY000",
        format!("Lost connection to backend '{name}' during query (causeway)"),
    )
}

/// The client-facing error for a failure to get a backend connection.
fn backend_error(e: &BackendError, backend: &Backend) -> ErrPacket {
    match e {
        BackendError::Server { err, .. } => err.clone(),
        BackendError::PoolExhausted { .. } => ErrPacket::new(
            1040,
            "08004",
            format!(
                "Too many connections (causeway pool for backend '{}' is full)",
                backend.name()
            ),
        ),
        other => ErrPacket::new(
            2003,
            "HY000",
            format!(
                "Can't connect to backend '{}' ({}) (causeway: {other})",
                backend.name(),
                backend.config.address
            ),
        ),
    }
}

/// Whether `sql`, after whitespace and comments, starts with `kw`.
fn starts_with_keyword(sql: &[u8], kw: &[u8]) -> bool {
    let mut s = sql;
    loop {
        while let Some((&c, rest)) = s.split_first() {
            if c.is_ascii_whitespace() {
                s = rest;
            } else {
                break;
            }
        }
        if s.starts_with(b"/*") {
            match s.windows(2).position(|w| w == b"*/") {
                Some(end) => s = &s[end + 2..],
                None => return false,
            }
        } else {
            break;
        }
    }
    s.len() > kw.len()
        && s[..kw.len()].eq_ignore_ascii_case(kw)
        && !s[kw.len()].is_ascii_alphanumeric()
        && s[kw.len()] != b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_detection() {
        assert!(starts_with_keyword(b"  /* x */ KILL 3", b"kill"));
        assert!(starts_with_keyword(b"kill query 3", b"kill"));
        assert!(!starts_with_keyword(b"killer", b"kill"));
        assert!(!starts_with_keyword(b"SELECT 'kill'", b"kill"));
    }
}
