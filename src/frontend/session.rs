//! One client session: the per-connection task.
//!
//! Owns the client socket after login, the backend connections the session
//! holds (at most one per backend; in `session` pool mode kept for the
//! session's life and returned to their pools, reset, when it ends; in
//! `transaction` pool mode given back after each statement unless the
//! session needs them, see `multiplex`), the prepared-statement map, and
//! command dispatch. Every statement passes through `route`, the
//! per-statement backend decision point.

use causeway_config::{PoolMode, User};
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::failure::Failure;
use super::login;
use super::registry::SessionShared;
use super::stmt::StmtMap;
use crate::backend::{BackendConn, BackendError, LinkKey, Login, Pool};
use crate::consistency::{Picker, Settings};
use crate::protocol::handshake;
use crate::protocol::messages::{self, put_lenenc_str, track};
use crate::protocol::{ErrPacket, OkPacket, PacketConn};
use crate::relay::{self, Expect, Outcome, RelayError};
use crate::router::RouteState;
use crate::shared::Shared;
use crate::topology::{Backend, Topology};

/// A command relayed to the client (the flow, and the reply's outcome
/// unless the session must end), or a failure before any reply.
pub(super) type Relayed = Result<(Flow, Option<Outcome>), Failure>;

/// What the dispatcher tells the loop.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Quit,
}

pub(super) struct Held {
    pub(super) pool: Arc<Pool>,
    pub(super) conn: BackendConn,
    /// How many of the session's replayable SETs this connection has seen.
    pub(super) applied_sets: usize,
    /// Its address's slot in the session registry entry (for KILL).
    pub(super) slot: u32,
}

/// A logged-in client session.
pub struct Session {
    pub(super) ctx: Arc<Shared>,
    pub(super) id: u32,
    pub(super) client: PacketConn,
    pub(super) peer_host: String,
    pub(super) caps: CapabilityFlags,
    pub(super) collation: u8,
    pub(super) user: User,
    pub(super) nonce: [u8; 20],
    pub(super) db: Option<String>,
    pub(super) topo: Arc<Topology>,
    pub(super) held: Vec<Held>,
    pub(super) stmts: StmtMap,
    pub(super) status: u16,
    /// `@@causeway.last_route`.
    pub(super) last_route: Option<super::route::Sent>,
    /// Routing state machine.
    pub(super) route: RouteState,
    /// Consistency settings and token.
    pub(super) settings: Settings,
    /// Session-variable statements replayed on every backend connection.
    pub(super) sets: Vec<String>,
    /// What other sessions see of this one (KILL).
    pub(super) shared: Arc<SessionShared>,
    /// Weighted replica choice (see `crate::consistency::Picker`).
    pub(super) cursor: Picker,
    /// Tables written in the open transaction (the cache invalidates them
    /// again when it ends).
    pub(super) cache_written: Vec<String>,
    /// Tables written in the open transaction, recorded for fresh reads
    /// when it ends (an empty name: not known, every table).
    pub(super) fresh_written: Vec<String>,
    /// How this session shares backend connections (fixed at login).
    pub(super) mode: PoolMode,
    /// The KILL epoch (see `SessionShared::kill_epoch`) last seen when
    /// connections were given back.
    pub(super) kill_seen: u64,
    /// Prepared statements that need their backend connection kept: long
    /// data sent and not yet executed, or an open cursor (client id,
    /// backend name).
    pub(super) stmt_holds: Vec<(u32, String)>,
    /// Set when a reply of the running command reported a session-state
    /// change (SESSION_TRACK_STATE_CHANGE).
    pub(super) state_changed: bool,
    /// Set when an OK of the running command counted warnings.
    pub(super) warned: bool,
    /// The client's `LAST_INSERT_ID()`: the last nonzero insert id an OK
    /// reported to it (backend connections are shared in `transaction`
    /// pool mode, so theirs may be another client's).
    pub(super) insert_id: u64,
    /// Set for a statement that reads `LAST_INSERT_ID()` in `transaction`
    /// pool mode: `ready` gives the connection the client's value first.
    pub(super) needs_insert_id: bool,
    /// The statement running now may be pipelined (`frontend::pipelined`).
    pub(super) pipe_ok: bool,
    /// The backend login and link key of the user, capabilities and
    /// collation (built on first use, not per statement; cleared when
    /// COM_CHANGE_USER changes them).
    pub(super) link_identity: Option<(Login, LinkKey)>,
    /// Backend whose connection is kept for one more command because the
    /// last statement there left warnings or an error (`SHOW WARNINGS`,
    /// `GET DIAGNOSTICS` must read them on the same connection).
    pub(super) diag_hold: Option<String>,
    /// The running statement's routing facts (digests, decision log).
    pub(super) obs: super::observe::Obs,
}

/// Idle connections found closed by their server that one acquire
/// drops before it takes whatever comes next.
const STALE_RETRIES: usize = 8;

impl Session {
    /// Returns every held backend connection to its pool.
    pub(super) fn close(&mut self) {
        self.release_all();
        self.client_shutdown();
    }

    fn client_shutdown(&mut self) {
        // dropping the socket closes it; whatever is still queued for the
        // client is discarded, not sent
        self.client.wbuf.clear();
    }

    pub(super) async fn dispatch(&mut self, payload: &[u8]) -> Flow {
        let Some(&cmd) = payload.first() else {
            return self.reply_err(&unknown_command()).await;
        };
        match cmd {
            0x01 => Flow::Quit,
            0x02 => {
                let flow = self.forward_primary(payload, Expect::Simple, None).await;
                if let Some(o) = flow.1 {
                    if o.error.is_none() {
                        let name = payload.get(1..).unwrap_or_default();
                        self.db = Some(String::from_utf8_lossy(name).into_owned());
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
            0x0C => self.process_kill(payload).await,
            0x0E => self.reply_ok().await,
            0x11 => self.change_user(payload).await,
            0x16 => self.prepare(payload).await,
            0x17 => self.execute(payload).await,
            0x18 => self.long_data(payload).await,
            0x19 => self.close_stmt(payload).await,
            0x1A => {
                self.stmt_follow_up(payload, Expect::Simple, "mysqld_stmt_reset")
                    .await
            }
            0x1B => self.set_option(payload).await,
            0x1C => {
                self.stmt_follow_up(payload, Expect::Fetch, "mysqld_stmt_fetch")
                    .await
            }
            0x1F => {
                self.reset_state();
                self.reply_ok().await
            }
            _ => self.reply_err(&unknown_command()).await,
        }
    }

    async fn forward_primary(
        &mut self,
        payload: &[u8],
        expect: Expect,
        stmt_id: Option<u32>,
    ) -> (Flow, Option<Outcome>) {
        // the writer may have changed since the last statement (failover)
        self.refresh_topology();
        let primary = Arc::clone(&self.topo.primary);
        self.forward(&primary, payload, expect, stmt_id).await
    }

    /// Sends one command to `backend` and relays its reply; a failure goes
    /// to the client.
    pub(super) async fn forward(
        &mut self,
        backend: &Arc<Backend>,
        payload: &[u8],
        expect: Expect,
        stmt_id: Option<u32>,
    ) -> (Flow, Option<Outcome>) {
        let relayed = match self.conn_for(backend).await {
            Ok(idx) => self.forward_on(idx, payload, expect, stmt_id).await,
            Err(f) => Err(f),
        };
        self.settle(relayed).await
    }

    /// Sends one command on held connection `idx` and relays its reply. A
    /// failure before any byte of the reply reached the client is returned,
    /// not sent: the caller decides where the statement goes next.
    pub(super) async fn forward_on(
        &mut self,
        idx: usize,
        payload: &[u8],
        expect: Expect,
        stmt_id: Option<u32>,
    ) -> Relayed {
        let Some(h) = self.held.get_mut(idx) else {
            return Err(Failure::vanished());
        };
        self.shared.start(h.slot, h.conn.thread_id);
        if let Err(e) = h.conn.send_command(payload).await {
            let name = h.conn.server.clone();
            self.drop_conn(idx);
            tracing::warn!(conn = self.id, backend = %name, error = %e, "backend write failed");
            return Err(Failure::lost(&name));
        }
        self.relay_reply(idx, expect, stmt_id).await
    }

    /// Relays the reply to a command already sent on held connection `idx`
    /// (a failure before any of it reached the client is returned).
    pub(super) async fn relay_reply(
        &mut self,
        idx: usize,
        expect: Expect,
        stmt_id: Option<u32>,
    ) -> Relayed {
        let caps = self.caps;
        let token = &mut self.settings.token;
        let changed = &mut self.state_changed;
        let warned = &mut self.warned;
        let mut insert_id = 0;
        let Some(h) = self.held.get_mut(idx) else {
            return Err(Failure::vanished());
        };
        // only the primary's GTID sets advance the token: a replica's set
        // says what it has, not what the session wrote
        let from_primary = h.conn.server == self.topo.primary.name();
        let result = relay::relay(
            &mut h.conn,
            &mut self.client,
            caps,
            expect,
            stmt_id,
            &mut |ok, _final| {
                if ok.state_entries().any(|(ty, _)| ty == track::STATE_CHANGE) {
                    *changed = true;
                }
                if ok.warnings > 0 {
                    *warned = true;
                }
                if ok.last_insert_id != 0 {
                    insert_id = ok.last_insert_id;
                }
                from_primary && merge_token(ok, token)
            },
        )
        .await;
        self.shared.idle();
        if insert_id != 0 {
            self.insert_id = insert_id;
            if let Some(h) = self.held.get_mut(idx) {
                h.conn.last_insert_id = insert_id;
            }
        }
        match result {
            Ok(outcome) => {
                if outcome.error.is_none() {
                    self.status = outcome.status;
                }
                Ok((Flow::Continue, Some(outcome)))
            }
            Err(RelayError::Client(e)) => {
                // the rest of the reply is still on its way: the backend
                // connection is closed, never handed to another client
                tracing::debug!(conn = self.id, error = %e, "client failed during reply");
                self.drop_conn(idx);
                Ok((Flow::Quit, None))
            }
            Err(RelayError::Backend {
                sent: false,
                source,
            }) => {
                let name = self.held.get(idx).map(|h| h.conn.server.clone());
                let name = name.unwrap_or_default();
                tracing::warn!(conn = self.id, backend = %name, error = %source, "backend lost");
                self.drop_conn(idx);
                Err(Failure::lost(&name))
            }
            Err(e) => {
                tracing::warn!(conn = self.id, error = %e, "reply broken; closing client");
                self.drop_conn(idx);
                Ok((Flow::Quit, None))
            }
        }
    }

    /// The held connection to `backend`, acquiring one if needed (waiting
    /// for a free pool slot), with the session's schema and SETs applied.
    pub(super) async fn conn_for(&mut self, backend: &Arc<Backend>) -> Result<usize, Failure> {
        self.link(backend, true).await
    }

    /// [`Session::conn_for`]; without `wait` a full pool fails at once
    /// ([`Cause::Full`]: a read that may go elsewhere does not wait).
    pub(super) async fn link(
        &mut self,
        backend: &Arc<Backend>,
        wait: bool,
    ) -> Result<usize, Failure> {
        // A reload may have given this name a new address (a new pool): the
        // old connection is returned and a new one taken.
        if let Some(i) = self
            .held
            .iter()
            .position(|h| h.conn.server == backend.name() && !Arc::ptr_eq(&h.pool, &backend.pool))
        {
            let h = self.held.swap_remove(i);
            self.stmts.forget_backend(&h.conn.server);
            h.pool.release(h.conn);
        }
        let idx = match self
            .held
            .iter()
            .position(|h| h.conn.server == backend.name())
        {
            Some(i) => i,
            None => self.acquire(backend, wait).await?,
        };
        self.ready(idx, backend).await?;
        backend.state.queries.fetch_add(1, Ordering::Relaxed);
        Ok(idx)
    }

    /// Takes a connection to `backend` from its pool into `held` (its index).
    async fn acquire(&mut self, backend: &Arc<Backend>, wait: bool) -> Result<usize, Failure> {
        let (login, key) = self
            .link_identity
            .get_or_insert_with(|| link_identity(&self.user, self.caps, self.collation));
        let failed = |e: BackendError| Failure::from_backend(&e, backend);
        // An idle connection the server closed (it died or restarted) is
        // dropped and another taken, so the error, if any, is the real one
        // (e.g. connection refused), not the stale socket's state.
        let mut stale = 0;
        let mut conn = loop {
            let mut conn = backend
                .pool
                .acquire(login, key, self.db.as_deref(), &self.sets, wait)
                .await
                .map_err(failed)?;
            if self.sets.starts_with(&conn.sets) {
                break conn;
            }
            if !conn.quiescent() && stale < STALE_RETRIES {
                stale += 1;
                continue;
            }
            // another client's SETs: back to a clean state first
            conn.reset().await.map_err(failed)?;
            break conn;
        };
        let applied_sets = conn.sets.len();
        if std::mem::take(&mut conn.fresh) {
            self.ctx.learn_server_version(&conn.version);
        }
        let slot = self.shared.slot(&backend.config.address);
        self.held.push(Held {
            pool: Arc::clone(&backend.pool),
            conn,
            applied_sets,
            slot,
        });
        Ok(self.held.len() - 1)
    }

    /// Brings held connection `idx` (to `backend`) to the session's schema
    /// and replayable SETs.
    async fn ready(&mut self, idx: usize, backend: &Backend) -> Result<(), Failure> {
        let Some(h) = self.held.get_mut(idx) else {
            return Err(Failure::lost(backend.name()));
        };
        if let Some(db) = self.db.as_deref() {
            if h.conn.db.as_deref() != Some(db) {
                match h.conn.init_db(db).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Err(Failure::refused(err)),
                    Err(e) => {
                        self.drop_conn(idx);
                        return Err(Failure::from_backend(&e, backend));
                    }
                }
            }
        }
        let behind = h.applied_sets < self.sets.len();
        while let Some(sql) = self.sets.get(h.applied_sets) {
            match h.conn.query_ok(sql).await {
                Ok(Ok(_)) => h.applied_sets += 1,
                Ok(Err(err)) => {
                    // partly applied: its state is described by nothing
                    h.conn.tainted = true;
                    return Err(Failure::refused(err));
                }
                Err(e) => {
                    self.drop_conn(idx);
                    return Err(Failure::from_backend(&e, backend));
                }
            }
        }
        if behind {
            // up to date: its state is the session's list
            h.conn.sets.clone_from(&self.sets);
        }
        if self.needs_insert_id && h.conn.last_insert_id != self.insert_id {
            // the connection's LAST_INSERT_ID() is another client's (or
            // unknown): one extra statement, which also sets ROW_COUNT()
            let sql = format!("DO LAST_INSERT_ID({})", self.insert_id);
            match h.conn.query_ok(&sql).await {
                Ok(Ok(_)) => h.conn.last_insert_id = self.insert_id,
                Ok(Err(err)) => return Err(Failure::refused(err)),
                Err(e) => {
                    self.drop_conn(idx);
                    return Err(Failure::from_backend(&e, backend));
                }
            }
        }
        Ok(())
    }

    /// Closes held connection `idx` (its state is unknown or it failed):
    /// dropping it closes the socket and frees its pool slot.
    pub(super) fn drop_conn(&mut self, idx: usize) {
        if idx < self.held.len() {
            let h = self.held.swap_remove(idx);
            self.stmts.forget_backend(&h.conn.server);
        }
    }

    /// Hands every held backend connection back to its pool, which resets
    /// and keeps only those whose state is known (see
    /// `BackendConn::reusable`) and closes the rest.
    pub(super) fn release_all(&mut self) {
        for h in self.held.drain(..) {
            h.pool.release(h.conn);
        }
    }

    /// The client's answer to a command nothing else will be tried for: a
    /// relayed reply as it is, a failure as its error.
    pub(super) async fn settle(&mut self, relayed: Relayed) -> (Flow, Option<Outcome>) {
        match relayed {
            Ok(done) => done,
            Err(f) => (self.reply_failure(f).await, None),
        }
    }

    /// Sends a failure's error to the client, counting a backend failure.
    pub(super) async fn reply_failure(&mut self, f: Failure) -> Flow {
        count_failure(&f);
        self.reply_err(&f.err).await
    }

    pub(super) async fn reply_err(&mut self, err: &ErrPacket) -> Flow {
        let mut seq = 1;
        match self.client.send(&mut seq, &err.encode()).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Quit,
        }
    }

    pub(super) async fn reply_ok(&mut self) -> Flow {
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

    /// COM_PROCESS_KILL (old clients, e.g. PyMySQL's `kill()`; MariaDB
    /// still serves it): `KILL CONNECTION <id>` of a causeway connection.
    async fn process_kill(&mut self, payload: &[u8]) -> Flow {
        let Some(&[a, b, c, d]) = payload.get(1..5) else {
            return self.reply_err(&unknown_command()).await;
        };
        let id = u32::from_le_bytes([a, b, c, d]);
        self.kill(super::registry::Kill {
            query_only: false,
            id,
        })
        .await
    }

    async fn set_option(&mut self, payload: &[u8]) -> Flow {
        let (flow, outcome) = self.forward_primary(payload, Expect::Simple, None).await;
        if let (true, Some(&[lo, hi])) = (
            outcome.is_some_and(|o| o.error.is_none()),
            payload.get(1..3),
        ) {
            let on = u16::from_le_bytes([lo, hi]) == 0;
            self.caps.set(CapabilityFlags::CLIENT_MULTI_STATEMENTS, on);
            self.link_identity = None;
            self.option_changed(on);
        }
        flow
    }
}

/// Merges the GTID set of an OK packet's SESSION_TRACK_GTIDS entry into the
/// session token, and makes the entry carry the whole token. Returns true
/// when the packet changed.
pub(super) fn merge_token(ok: &mut OkPacket, token: &mut causeway_gtid::GtidSet) -> bool {
    if ok.session_state.is_empty() {
        return false;
    }
    let mut rebuilt = Vec::with_capacity(ok.session_state.len());
    let mut changed = false;
    for (ty, data) in ok.state_entries() {
        if ty == track::GTIDS {
            if let Some(set) = messages::gtids_from_state_data(data)
                .and_then(|g| std::str::from_utf8(g).ok())
                .and_then(|g| causeway_gtid::GtidSet::parse(g).ok())
            {
                token.union(&set);
                if !set.contains(token) {
                    rebuilt.extend_from_slice(&messages::gtids_state_entry(&token.to_string()));
                    changed = true;
                    continue;
                }
            }
        } else if ty == track::SYSTEM_VARIABLES {
            if let Some(entry) = merge_last_gtid(data, token) {
                rebuilt.extend_from_slice(&entry);
                changed = true;
                continue;
            }
        }
        rebuilt.push(ty);
        put_lenenc_str(&mut rebuilt, data);
    }
    if changed {
        ok.session_state = rebuilt;
    }
    changed
}

/// MariaDB: merges an OK's `last_gtid` (a SESSION_TRACK_SYSTEM_VARIABLES
/// entry) into the session token per domain; returns the entry rewritten
/// to carry the whole token when the server's value lacks part of it.
fn merge_last_gtid(data: &[u8], token: &mut causeway_gtid::GtidSet) -> Option<Vec<u8>> {
    let (name, value) = messages::sysvar_from_state_data(data)?;
    if !name.eq_ignore_ascii_case(b"last_gtid") {
        return None;
    }
    let pos = causeway_gtid::MariadbPos::parse(std::str::from_utf8(value).ok()?).ok()?;
    let set = pos.to_gtid_set();
    token.union(&set);
    if set.contains(token) {
        return None;
    }
    let text = causeway_gtid::token_text(token);
    Some(messages::sysvar_state_entry("last_gtid", &text))
}

pub(super) fn stmt_id_of(payload: &[u8]) -> u32 {
    payload
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

pub(super) fn unknown_command() -> ErrPacket {
    ErrPacket::new(1047, "08S01", "Unknown command")
}

/// Counts `f` in `causeway_backend_errors_total` when the backend failed.
pub(super) fn count_failure(f: &Failure) {
    if f.is_backend_error() {
        metrics::counter!(crate::metrics::BACKEND_ERRORS).increment(1);
    }
}

/// The backend login and link key of a session of `user` whose client
/// asked for `caps` and `collation`. Every link negotiates DEPRECATE_EOF,
/// so its result sets end in an OK carrying the GTID set (the relay gives
/// a client without it EOF packets); clients with and without share links.
pub(super) fn link_identity(user: &User, caps: CapabilityFlags, collation: u8) -> (Login, LinkKey) {
    let login = login::backend_login(user);
    let shaping = caps & handshake::reply_shaping_capabilities();
    let key = LinkKey {
        user: login.user.clone(),
        caps: (shaping | CapabilityFlags::CLIENT_DEPRECATE_EOF).bits(),
        collation,
    };
    (login, key)
}
