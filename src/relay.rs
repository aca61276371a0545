//! Relaying a backend's reply to the client.
//!
//! Owns the reply state machine of every command the proxy forwards
//! (text and binary result sets, multi-results, cursors, prepare replies,
//! LOCAL INFILE, field lists). Packets are copied byte for byte, rows are
//! never decoded; only OK packets are parsed, so the session can read their
//! status flags and session-state (GTID) entries, and re-encoded when the
//! client's capabilities differ from the backend link's (a client without
//! CLIENT_SESSION_TRACK) or the session adds its consistency token.
//!
//! A relay that does not read the reply to its end, for whatever reason,
//! leaves the backend connection marked as having a reply pending (and, on
//! an error, broken): such a connection is closed, never pooled.

use bytes::Buf;
use mysql_common::constants::{CapabilityFlags, StatusFlags};

use crate::backend::BackendConn;
use crate::protocol::messages::{self, read_lenenc};
use crate::protocol::packet::{complete_packet_len, HEADER, MAX_PAYLOAD};
use crate::protocol::{ErrPacket, OkPacket, PacketConn, PacketError};

/// Errors while relaying.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The backend failed; `sent` tells whether part of the reply already
    /// reached the client (then the client connection cannot be saved).
    #[error("backend failed during reply (sent to client: {sent}): {source}")]
    Backend {
        /// Whether bytes of this reply were already written to the client.
        sent: bool,
        /// Cause.
        #[source]
        source: PacketError,
    },
    /// The client socket failed.
    #[error("client failed: {0}")]
    Client(#[source] PacketError),
    /// The backend broke the protocol.
    #[error("backend protocol violation: {0}")]
    Protocol(String),
}

/// Which reply shape to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY: OK, ERR, LOCAL INFILE or text result sets, possibly several.
    Query,
    /// COM_STMT_EXECUTE: OK, ERR or binary result sets, possibly a cursor.
    Execute,
    /// COM_STMT_FETCH: rows then a terminator, or ERR.
    Fetch,
    /// COM_STMT_PREPARE: prepare OK with parameter and column definitions.
    Prepare,
    /// COM_FIELD_LIST: column definitions then a terminator.
    FieldList,
    /// COM_STATISTICS: one string packet.
    Statistics,
    /// Commands answered by one OK, EOF or ERR packet.
    Simple,
}

/// What the relay learned about the reply.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Status flags of the last OK or terminator.
    pub status: u16,
    /// The error that ended the reply, if any.
    pub error: Option<ErrPacket>,
    /// Last GTID set reported by SESSION_TRACK_GTIDS.
    pub gtids: Option<String>,
    /// For a prepare: backend statement id, columns, params.
    pub prepared: Option<(u32, u16, u16)>,
    /// Whether any OK packet (not a terminator of rows) was seen.
    pub saw_ok: bool,
}

impl Outcome {
    /// Whether the final status says a transaction is open.
    pub fn in_trans(&self) -> bool {
        self.status & StatusFlags::SERVER_STATUS_IN_TRANS.bits() != 0
    }
}

/// Hook the session uses to inspect and rewrite OK packets going to the
/// client; returns true when it changed the packet.
pub type OkHook<'a> = &'a mut (dyn FnMut(&mut OkPacket, bool) -> bool + Send);

#[derive(Debug, Clone, Copy)]
enum St {
    First,
    Cols(u64),
    ColsEof,
    Rows,
    PrepParams(u16, u16),
    PrepParamsEof(u16),
    PrepCols(u16),
    PrepColsEof,
    Done,
}

/// Relays one reply from `backend` to `client`.
///
/// `client_stmt_id` replaces the statement id of a prepare reply. `on_ok` is
/// called for every OK packet with `final = true` for the one that ends the
/// reply. Long replies stream to the client as they arrive; the reply's last
/// bytes are left queued in `client.wbuf` for the caller to flush.
pub async fn relay(
    backend: &mut BackendConn,
    client: &mut PacketConn,
    client_caps: CapabilityFlags,
    expect: Expect,
    client_stmt_id: Option<u32>,
    on_ok: OkHook<'_>,
) -> Result<Outcome, RelayError> {
    relay_to(
        backend,
        client,
        client_caps,
        expect,
        client_stmt_id,
        on_ok,
        false,
    )
    .await
}

/// Reads one reply from `backend` and throws it away (a read whose result
/// must not reach the client, e.g. after a failed consistency wait).
pub async fn discard(
    backend: &mut BackendConn,
    scratch: &mut PacketConn,
    expect: Expect,
) -> Result<Outcome, RelayError> {
    let caps = backend.caps;
    relay_to(
        backend,
        scratch,
        caps,
        expect,
        None,
        &mut |_, _| false,
        true,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn relay_to(
    backend: &mut BackendConn,
    client: &mut PacketConn,
    client_caps: CapabilityFlags,
    expect: Expect,
    client_stmt_id: Option<u32>,
    on_ok: OkHook<'_>,
    discard: bool,
) -> Result<Outcome, RelayError> {
    // Until the reply has been read to its end the connection's state is
    // unknown: any early return (client gone, protocol surprise, backend
    // failure, the future being dropped) leaves it pending, so it is never
    // pooled; errors also mark it broken.
    backend.begin_reply();
    let r = relay_packets(
        backend,
        client,
        client_caps,
        expect,
        client_stmt_id,
        on_ok,
        discard,
    )
    .await;
    match r {
        Ok(_) => backend.end_reply(),
        Err(_) => backend.broken = true,
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn relay_packets(
    backend: &mut BackendConn,
    client: &mut PacketConn,
    client_caps: CapabilityFlags,
    expect: Expect,
    client_stmt_id: Option<u32>,
    on_ok: OkHook<'_>,
    discard: bool,
) -> Result<Outcome, RelayError> {
    let keep = client.wbuf.len();
    let link_caps = backend.caps;
    let deprecate_eof = link_caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    let mut out = Outcome::default();
    let mut st = match expect {
        Expect::Fetch => St::Rows,
        _ => St::First,
    };
    let mut cont = false;
    let mut sent = false;
    loop {
        let mut pos = 0;
        while let Some((len, seq)) = complete_packet_len(&backend.io.rbuf[pos..]) {
            let mut seen_ok = None;
            let total = HEADER + len;
            let pkt_start = pos;
            pos += total;
            if cont {
                cont = len == MAX_PAYLOAD;
                client
                    .wbuf
                    .extend_from_slice(&backend.io.rbuf[pkt_start..pos]);
                continue;
            }
            cont = len == MAX_PAYLOAD;
            let payload = &backend.io.rbuf[pkt_start + HEADER..pos];
            let first = payload.first().copied().unwrap_or(0);
            let mut verbatim = true;
            st = match st {
                St::First => match (expect, first) {
                    (_, 0xFF) => {
                        out.error = ErrPacket::parse(payload).ok();
                        St::Done
                    }
                    (Expect::Statistics, _) => St::Done,
                    (Expect::Prepare, 0x00) if payload.len() >= 12 => {
                        let id = u32::from_le_bytes(payload[1..5].try_into().unwrap_or_default());
                        let cols = u16::from_le_bytes([payload[5], payload[6]]);
                        let params = u16::from_le_bytes([payload[7], payload[8]]);
                        out.prepared = Some((id, cols, params));
                        if let Some(cid) = client_stmt_id {
                            verbatim = false;
                            let mut p = payload.to_vec();
                            p[1..5].copy_from_slice(&cid.to_le_bytes());
                            let mut s = seq;
                            client.queue(&mut s, &p);
                        }
                        next_prep_params(params, cols, deprecate_eof)
                    }
                    (Expect::FieldList, 0xFE) => St::Done,
                    (Expect::FieldList, _) => St::Rows,
                    (Expect::Query, 0xFB) => {
                        // LOCAL INFILE request: forward it, then pump the
                        // client's file packets to the backend.
                        client
                            .wbuf
                            .extend_from_slice(&backend.io.rbuf[pkt_start..pos]);
                        backend.io.rbuf.advance(pos);
                        pos = 0;
                        client.flush().await.map_err(RelayError::Client)?;
                        sent = true;
                        pump_infile(client, &mut backend.io).await?;
                        continue;
                    }
                    (Expect::Simple, 0xFE) if len < 9 => {
                        // an old-style EOF (COM_SET_OPTION without
                        // CLIENT_DEPRECATE_EOF): forwarded as is
                        out.status = messages::terminator_status(payload, false);
                        St::Done
                    }
                    (_, 0x00) | (Expect::Simple, 0xFE) => {
                        let (queued, ok) = handle_ok(
                            payload,
                            seq,
                            link_caps,
                            client,
                            client_caps,
                            first,
                            &mut out,
                            on_ok,
                        )?;
                        verbatim = !queued;
                        seen_ok = Some(ok);
                        out.saw_ok = true;
                        more_or_done(out.status)
                    }
                    (Expect::Query | Expect::Execute, _) => match read_lenenc(payload) {
                        Some((n, _)) if n > 0 => St::Cols(n),
                        _ => return Err(RelayError::Protocol("bad column count".into())),
                    },
                    _ => {
                        return Err(RelayError::Protocol(format!(
                            "unexpected reply 0x{first:02x}"
                        )))
                    }
                },
                St::Cols(n) => {
                    if n > 1 {
                        St::Cols(n - 1)
                    } else if deprecate_eof {
                        St::Rows
                    } else {
                        St::ColsEof
                    }
                }
                St::ColsEof => {
                    out.status = messages::terminator_status(payload, false);
                    if out.status & StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits() != 0 {
                        St::Done
                    } else {
                        St::Rows
                    }
                }
                St::Rows => {
                    if first == 0xFF {
                        out.error = ErrPacket::parse(payload).ok();
                        St::Done
                    } else if messages::is_terminator(len, first, deprecate_eof) {
                        if deprecate_eof {
                            let (queued, ok) = handle_ok(
                                payload,
                                seq,
                                link_caps,
                                client,
                                client_caps,
                                first,
                                &mut out,
                                on_ok,
                            )?;
                            verbatim = !queued;
                            seen_ok = Some(ok);
                        } else {
                            out.status = messages::terminator_status(payload, false);
                        }
                        if out.status & StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits() != 0
                            && expect == Expect::Execute
                        {
                            St::Done
                        } else {
                            more_or_done(out.status)
                        }
                    } else {
                        St::Rows
                    }
                }
                St::PrepParams(n, cols) => {
                    if n > 1 {
                        St::PrepParams(n - 1, cols)
                    } else if !deprecate_eof {
                        St::PrepParamsEof(cols)
                    } else {
                        next_prep_cols(cols, deprecate_eof)
                    }
                }
                St::PrepParamsEof(cols) => next_prep_cols(cols, deprecate_eof),
                St::PrepCols(n) => {
                    if n > 1 {
                        St::PrepCols(n - 1)
                    } else if !deprecate_eof {
                        St::PrepColsEof
                    } else {
                        St::Done
                    }
                }
                St::PrepColsEof | St::Done => St::Done,
            };
            if let Some(ok) = seen_ok {
                backend.observe_ok(&ok);
            }
            if verbatim {
                client
                    .wbuf
                    .extend_from_slice(&backend.io.rbuf[pkt_start..pos]);
            }
            if matches!(st, St::Done) && !cont {
                backend.io.rbuf.advance(pos);
                if discard {
                    client.wbuf.truncate(keep);
                }
                // the end of the reply stays queued: the session flushes it
                // once its bookkeeping (routing state, metrics) is done
                return Ok(out);
            }
        }
        backend.io.rbuf.advance(pos);
        if discard {
            client.wbuf.truncate(keep);
        } else if !client.wbuf.is_empty() {
            sent = true;
            client.flush().await.map_err(RelayError::Client)?;
        }
        if let Err(source) = backend.io.fill().await {
            return Err(RelayError::Backend { sent, source });
        }
    }
}

fn next_prep_params(params: u16, cols: u16, deprecate_eof: bool) -> St {
    if params > 0 {
        St::PrepParams(params, cols)
    } else {
        next_prep_cols(cols, deprecate_eof)
    }
}

fn next_prep_cols(cols: u16, _deprecate_eof: bool) -> St {
    if cols > 0 {
        St::PrepCols(cols)
    } else {
        St::Done
    }
}

fn more_or_done(status: u16) -> St {
    if status & StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits() != 0 {
        St::First
    } else {
        St::Done
    }
}

/// Parses an OK from the backend, lets the session see it, and queues a
/// re-encoded copy for the client when needed. Returns true when it queued
/// the packet itself.
#[allow(clippy::too_many_arguments)]
fn handle_ok(
    payload: &[u8],
    seq: u8,
    link_caps: CapabilityFlags,
    client: &mut PacketConn,
    client_caps: CapabilityFlags,
    header: u8,
    out: &mut Outcome,
    on_ok: OkHook<'_>,
) -> Result<(bool, OkPacket), RelayError> {
    let mut ok =
        OkPacket::parse(payload, link_caps).map_err(|e| RelayError::Protocol(e.to_string()))?;
    out.status = ok.status;
    for (ty, data) in ok.state_entries() {
        if ty == messages::track::GTIDS {
            if let Some(g) = messages::gtids_from_state_data(data) {
                out.gtids = Some(String::from_utf8_lossy(g).into_owned());
            }
        }
    }
    let is_final = out.status & StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits() == 0;
    let changed = on_ok(&mut ok, is_final);
    let caps_differ = !client_caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK)
        && (!ok.info.is_empty() || !ok.session_state.is_empty());
    if changed || caps_differ {
        let mut s = seq;
        client.queue(&mut s, &ok.encode(header, client_caps));
        return Ok((true, ok));
    }
    Ok((false, ok))
}

/// Forwards the client's LOCAL INFILE data packets to the backend, up to
/// and including the empty packet that ends them.
async fn pump_infile(client: &mut PacketConn, backend: &mut PacketConn) -> Result<(), RelayError> {
    loop {
        let mut pos = 0;
        let mut done = false;
        while let Some((len, _)) = complete_packet_len(&client.rbuf[pos..]) {
            pos += HEADER + len;
            if len == 0 {
                done = true;
                break;
            }
        }
        if pos > 0 {
            let chunk = client.rbuf.split_to(pos);
            backend
                .write_raw(&chunk)
                .await
                .map_err(|source| RelayError::Backend { sent: true, source })?;
        }
        if done {
            return Ok(());
        }
        client.fill().await.map_err(RelayError::Client)?;
    }
}

#[cfg(test)]
mod tests;
