//! The life of one client connection around its session: admission (the
//! handshake bound `[server] max_pending_logins`, then a `max_connections`
//! slot, which only logged-in clients take), the login under
//! `[server] login_timeout_ms`, the command read loop with
//! `[server] client_idle_timeout_ms` and `[server] max_client_packet`, and
//! the close.
//!
//! Everything counted for the connection is held by a Drop guard (see
//! `crate::shared`), so it is released however the task ends.

use causeway_config::Server;
use mysql_common::constants::StatusFlags;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::login::{self, Authenticated};
use super::registry::SessionShared;
use super::session::{Flow, Session};
use super::stmt::StmtMap;
use crate::consistency::{Picker, Settings};
use crate::protocol::compress;
use crate::protocol::packet::tune_socket;
use crate::protocol::{ErrPacket, PacketConn, PacketError};
use crate::router::RouteState;
use crate::shared::Shared;
use crate::topology::Topology;

/// How long the rest of an oversized packet is read (and dropped) so the
/// client, still writing it, gets to read the 1153 instead of a reset.
const DISCARD_TIME: Duration = Duration::from_secs(10);
/// How many bytes of an oversized packet are read and dropped at most.
const DISCARD_BYTES: usize = 1 << 30;
/// How long a parting error may take to reach a client.
const PARTING_WRITE: Duration = Duration::from_secs(1);

/// MySQL's error for too many connections (1040 / 08004).
pub fn too_many_connections() -> ErrPacket {
    ErrPacket::new(1040, "08004", "Too many connections")
}

/// MySQL 8's error for a client idle longer than `wait_timeout`
/// (4031 / HY000), sent unsolicited with sequence id 0 before the close.
pub fn idle_timeout_error() -> ErrPacket {
    ErrPacket::new(
        4031,
        "HY000",
        "The client was disconnected by the server because of inactivity. \
         See wait_timeout and interactive_timeout for configuring this behavior.",
    )
}

/// An ERR sent instead of the greeting, as MySQL sends it: the client's
/// capabilities are not known yet, so there is no SQLSTATE marker.
pub fn pre_greeting_error(err: &ErrPacket) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + err.message.len());
    out.push(0xFF);
    out.extend_from_slice(&err.code.to_le_bytes());
    out.extend_from_slice(err.message.as_bytes());
    out
}

/// Sends a last error before the close, giving up after [`PARTING_WRITE`]
/// (a client that reads nothing must not hold the task).
async fn send_parting(client: &mut PacketConn, seq: u8, payload: &[u8]) {
    let mut seq = seq;
    let _ = tokio::time::timeout(PARTING_WRITE, client.send(&mut seq, payload)).await;
}

/// Sleeps for `d`, or forever when there is no timeout.
async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Runs a client connection from greeting to close. `id` is its
    /// connection id.
    pub async fn run(ctx: Arc<Shared>, id: u32, stream: TcpStream, peer: SocketAddr) {
        if let Err(e) = tune_socket(&stream) {
            tracing::debug!(conn = id, error = %e, "cannot set client socket options");
        }
        let mut client = PacketConn::new(stream);
        // refused before the greeting, as MySQL does
        let Some(pending) = ctx.try_pending_login().filter(|_| ctx.has_login_room()) else {
            send_parting(&mut client, 0, &pre_greeting_error(&too_many_connections())).await;
            return;
        };
        let topo = ctx.topology.load_full();
        let deadline = Instant::now() + topo.config.server.login_timeout();
        let peer_host = peer.ip().to_string();
        let version = ctx.server_version.load_full();
        // a shutdown does not wait for handshakes
        let mut stop = ctx.shutdown_signal();
        if ctx.is_shutting_down() {
            return;
        }
        let tls = topo.client_tls.as_ref();
        let login = login::login(&mut client, (&topo.config, tls), id, &version, &peer_host);
        let login = tokio::select! {
            r = tokio::time::timeout_at(deadline, login) => r,
            _ = stop.changed() => return,
        };
        let (auth, seq) = match login {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::debug!(conn = id, error = %e, "login failed");
                return;
            }
            Err(_) => {
                tracing::debug!(conn = id, %peer, "login timed out; socket closed");
                return;
            }
        };
        let Some(_slot) = ctx.try_login_slot() else {
            send_parting(&mut client, seq, &too_many_connections().encode()).await;
            return;
        };
        let compression = auth.hello.compression();
        let mut session = Session::new(ctx, id, client, peer_host, auth, topo);
        let ready = tokio::time::timeout_at(deadline, session.finish_login(seq)).await;
        if let (Ok(true), Some(algorithm)) = (&ready, compression) {
            // MySQL compresses from the first packet after the login's OK
            session.client.start_compression(algorithm);
        }
        drop(pending);
        match ready {
            Ok(true) => {
                let compression = compression.map_or("none", |a| a.name());
                let tls = session.client.tls_version().unwrap_or("none");
                tracing::debug!(
                    conn = id,
                    user = %session.user.name,
                    tls,
                    compression,
                    "client logged in"
                );
                let db = session.db.as_deref();
                session.shared.activity.start(peer.to_string(), db);
                let _registered = session.ctx.register(id, Arc::clone(&session.shared));
                session.serve().await;
            }
            Ok(false) => {}
            Err(_) => tracing::debug!(conn = id, %peer, "login timed out; socket closed"),
        }
        session.close();
    }

    fn new(
        ctx: Arc<Shared>,
        id: u32,
        client: PacketConn,
        peer_host: String,
        auth: Authenticated,
        topo: Arc<Topology>,
    ) -> Session {
        let cfg = Arc::clone(&topo.config);
        let shared = SessionShared::new(&auth.user.name, super::login::backend_login(&auth.user));
        Session {
            id,
            peer_host,
            caps: auth.hello.caps,
            collation: auth.hello.collation,
            user: auth.user,
            nonce: auth.nonce,
            db: auth.hello.db,
            topo,
            held: Vec::new(),
            stmts: StmtMap::default(),
            status: StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits(),
            last_route: None,
            obs: Default::default(),
            route: RouteState::default(),
            settings: Settings::from_config(&cfg),
            sets: Vec::new(),
            cursor: Picker::new(u64::from(id), cfg.routing.read_balance),
            cache_written: Vec::new(),
            fresh_written: Vec::new(),
            mode: cfg.server.pool_mode,
            kill_seen: 0,
            stmt_holds: Vec::new(),
            state_changed: false,
            warned: false,
            insert_id: 0,
            needs_insert_id: false,
            pipe_ok: false,
            diag_hold: None,
            link_identity: None,
            shared,
            client,
            ctx,
        }
    }

    /// Checks the schema named at login and sends the login's OK; false
    /// when the client was refused or is gone.
    async fn finish_login(&mut self, mut seq: u8) -> bool {
        let checked = self.check_initial_db().await;
        // transaction mode: the schema check's connection goes back at once
        self.end_of_command();
        if let Err(err) = checked {
            let _ = self.client.send(&mut seq, &err.encode()).await;
            return false;
        }
        self.client
            .send(&mut seq, &login::login_ok(self.caps))
            .await
            .is_ok()
    }

    /// Validates the schema named at login (MySQL refuses unknown ones) on
    /// the first server that answers: the primary, else each replica the
    /// monitor does not know to be down, so a dead primary blocks no login.
    /// The server's own refusal (unknown schema) is the answer; when none
    /// answers, the first failure (the primary's) is.
    pub(super) async fn check_initial_db(&mut self) -> Result<(), ErrPacket> {
        if self.db.is_none() {
            return Ok(());
        }
        let topo = Arc::clone(&self.topo);
        let mut first: Option<ErrPacket> = None;
        for (i, b) in topo.backends().enumerate() {
            if i > 0 && !b.state.view.load().reachable {
                continue;
            }
            match self.conn_for(b).await {
                Ok(_) => return Ok(()),
                Err(f) if f.cause == super::failure::Cause::Refused => return Err(f.err),
                Err(f) => {
                    first.get_or_insert(f.err);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The command loop: reads a command, dispatches it, flushes the reply.
    async fn serve(&mut self) {
        let mut stop = self.ctx.shutdown_signal();
        loop {
            let idle = self.arm_limits();
            let pkt = if self.client.has_buffered_packet() {
                self.client.read_packet().await
            } else {
                tokio::select! {
                    r = self.client.read_packet() => r,
                    _ = stop.changed() => break,
                    _ = self.shared.kill.notified() => break,
                    _ = sleep_or_never(idle) => {
                        self.disconnect_idle().await;
                        break;
                    }
                }
            };
            let pkt = match pkt {
                Ok(p) => p,
                Err(PacketError::TooLarge { size, limit, seq }) => {
                    self.refuse_too_large(size, limit, seq).await;
                    break;
                }
                Err(e) => {
                    if compress::is_corrupt(&e) {
                        send_parting(&mut self.client, 1, &compress::uncompress_error().encode())
                            .await;
                    }
                    break;
                }
            };
            if self
                .shared
                .killed
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                break;
            }
            // diagnostics of the previous statement are read by this one only
            self.diag_hold = None;
            self.note_command(&pkt.payload);
            let flow = self.dispatch(&pkt.payload).await;
            // transaction mode: connections no longer needed go back now
            self.end_of_command();
            self.note_idle();
            // the reply's last bytes go out only now, after the session's
            // bookkeeping, so whoever sees the answer also sees its metrics
            if self.client.flush().await.is_err() {
                break;
            }
            if let Flow::Quit = flow {
                break;
            }
        }
    }

    /// Applies the current `[server]` packet limit to the client socket
    /// and returns the idle timeout in force now (none inside a
    /// transaction). Read per command, so a reload applies at once.
    fn arm_limits(&mut self) -> Option<Duration> {
        let topo = self.ctx.topology.load();
        let server: &Server = &topo.config.server;
        let (max, idle) = (
            server.max_client_packet_bytes(),
            server.client_idle_timeout(),
        );
        self.client.set_max_payload(max);
        idle.filter(|_| !self.in_transaction())
    }

    /// Takes the current topology snapshot for the next statement, unless
    /// a transaction is open: a transaction keeps the snapshot it started
    /// with, so a reload never moves it.
    pub(super) fn refresh_topology(&mut self) {
        if self.route.trx.is_none() {
            self.topo = self.ctx.topology.load_full();
        }
    }

    /// Whether the client has a transaction open.
    fn in_transaction(&self) -> bool {
        self.route.trx.is_some() || self.status & StatusFlags::SERVER_STATUS_IN_TRANS.bits() != 0
    }

    /// Tells an idle client why it is disconnected, as MySQL 8.0.24+ does
    /// (an unsolicited ERR with sequence id 0).
    async fn disconnect_idle(&mut self) {
        tracing::debug!(
            conn = self.id,
            "client idle too long; disconnected with 4031"
        );
        send_parting(&mut self.client, 0, &idle_timeout_error().encode()).await;
    }

    /// Answers a packet over `max_client_packet` as MySQL does (1153, then
    /// the close). The rest of the packet is read and dropped first, within
    /// bounds, so a client still writing it gets to read the error.
    async fn refuse_too_large(&mut self, size: usize, limit: usize, seq: u8) {
        tracing::debug!(
            conn = self.id,
            size,
            limit,
            "client packet too large; closing"
        );
        let mut seq = seq.wrapping_add(1);
        self.client
            .queue(&mut seq, &login::packet_too_large().encode());
        let client = &mut self.client;
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            if client.flush().await.is_ok() {
                let _ = client.discard_packet(DISCARD_BYTES).await;
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_match_mysql() {
        let e = idle_timeout_error();
        assert_eq!((e.code, e.sqlstate()), (4031, "HY000"));
        assert_eq!(
            e.message,
            "The client was disconnected by the server because of inactivity. See \
             wait_timeout and interactive_timeout for configuring this behavior."
        );
        assert_eq!(
            pre_greeting_error(&too_many_connections()),
            b"\xff\x10\x04Too many connections"
        );
        let e = too_many_connections();
        assert_eq!(
            (e.code, e.sqlstate(), e.message.as_str()),
            (1040, "08004", "Too many connections")
        );
    }
}
