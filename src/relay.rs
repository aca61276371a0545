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
//! Every backend link negotiates CLIENT_DEPRECATE_EOF, so result sets end
//! with an OK packet that carries the server's GTID set. A client without
//! it gets the classic framing instead (`frame`): the EOF the server would
//! have sent after the column definitions is added, each terminating OK
//! becomes an EOF (warnings, status), and later packets' sequence ids are
//! shifted to the client's count.
//!
//! The state machine (`Reply`, in `reply`) is pure: it sees one packet at a time and
//! says what the client gets (the backend's bytes, or a rewritten packet)
//! and what comes next, one small function per reply state. The driver
//! (`relay_packets`) moves bytes between the two connections; both are
//! generic over their byte streams, so the unit tests run the relay over
//! in-memory streams.
//!
//! A relay that does not read the reply to its end, for whatever reason,
//! leaves the backend connection marked as having a reply pending (and, on
//! an error, broken): such a connection is closed, never pooled.

use bytes::Buf;
use mysql_common::constants::{CapabilityFlags, StatusFlags};

use crate::backend::BackendConn;
use crate::protocol::packet::{complete_packet_len, HEADER};
use crate::protocol::stream::ByteStream;
use crate::protocol::{ErrPacket, OkPacket, PacketConn, PacketError};

mod frame;
mod reply;
use frame::Owed;
use reply::{Reply, ReplyOpts, ToClient};

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
    /// Rows relayed (text or binary result set rows).
    pub rows: u64,
    /// Sum of the affected-rows counts of the reply's OK packets.
    pub affected: u64,
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

/// Relays one reply from `backend` to `client`.
///
/// `client_stmt_id` replaces the statement id of a prepare reply. `on_ok` is
/// called for every OK packet with `final = true` for the one that ends the
/// reply. Long replies stream to the client as they arrive; the reply's last
/// bytes are left queued in `client.wbuf` for the caller to flush.
pub async fn relay<B: ByteStream, C: ByteStream>(
    backend: &mut BackendConn<B>,
    client: &mut PacketConn<C>,
    client_caps: CapabilityFlags,
    expect: Expect,
    client_stmt_id: Option<u32>,
    on_ok: OkHook<'_>,
) -> Result<Outcome, RelayError> {
    let opts = ReplyOpts {
        expect,
        client_caps,
        link_caps: backend.caps,
        client_stmt_id,
        status_before: backend.status,
    };
    relay_to(backend, client, Reply::new(opts, on_ok), false).await
}

/// Reads one reply from `backend` and throws it away (a read whose result
/// must not reach the client, e.g. after a failed consistency wait).
pub async fn discard<B: ByteStream, C: ByteStream>(
    backend: &mut BackendConn<B>,
    scratch: &mut PacketConn<C>,
    expect: Expect,
) -> Result<Outcome, RelayError> {
    let opts = ReplyOpts {
        expect,
        client_caps: backend.caps,
        link_caps: backend.caps,
        client_stmt_id: None,
        status_before: backend.status,
    };
    relay_to(backend, scratch, Reply::new(opts, &mut |_, _| false), true).await
}

async fn relay_to<B: ByteStream, C: ByteStream>(
    backend: &mut BackendConn<B>,
    client: &mut PacketConn<C>,
    reply: Reply<'_>,
    discard: bool,
) -> Result<Outcome, RelayError> {
    // Until the reply has been read to its end the connection's state is
    // unknown: any early return (client gone, protocol surprise, backend
    // failure, the future being dropped) leaves it pending, so it is never
    // pooled; errors also mark it broken.
    backend.begin_reply();
    let r = relay_packets(backend, client, reply, discard).await;
    match &r {
        Ok(out) => {
            // an ERR carries no status: the session's flags are unchanged
            if out.error.is_none() {
                backend.status = out.status;
            }
            backend.end_reply()
        }
        Err(_) => backend.broken = true,
    }
    r
}

/// Moves the reply's bytes: every whole packet buffered from the backend
/// goes through the state machine and on to the client's write buffer,
/// which is flushed before the next read from the backend (in `discard`
/// mode it is cut back instead). The reply's last bytes stay queued.
async fn relay_packets<B: ByteStream, C: ByteStream>(
    backend: &mut BackendConn<B>,
    client: &mut PacketConn<C>,
    mut reply: Reply<'_>,
    discard: bool,
) -> Result<Outcome, RelayError> {
    let keep = client.wbuf.len();
    let mut sent = false;
    let mut owed = Owed::default();
    loop {
        let mut pos = 0;
        while let Some((len, seq)) = backend.io.rbuf.get(pos..).and_then(complete_packet_len) {
            let end = pos + HEADER + len;
            let raw = backend.io.rbuf.get(pos..end).unwrap_or_default();
            let step = reply.packet(raw)?;
            if let Some(eof) = &step.settle {
                owed.settle(&mut client.wbuf, eof);
            }
            let infile = step.send == ToClient::Infile;
            let mut seq = seq.wrapping_add(step.shift);
            match step.send {
                ToClient::Verbatim | ToClient::Infile => {
                    frame::put_raw(&mut client.wbuf, raw, step.shift)
                }
                ToClient::Rewritten(payload) => client.queue(&mut seq, &payload),
            }
            if let Some(extra) = &step.then {
                let mut next = seq.wrapping_add(1);
                client.queue(&mut next, extra);
            }
            if step.owe {
                owed.owe(client.wbuf.len(), seq.wrapping_add(1));
            } else if !reply.owed {
                owed = Owed::default();
            }
            if let Some(ok) = &step.ok {
                backend.observe_ok(ok);
            }
            pos = end;
            if infile {
                backend.io.rbuf.advance(pos);
                pos = 0;
                client.flush().await.map_err(RelayError::Client)?;
                sent = true;
                frame::pump_infile(client, &mut backend.io, reply.shift).await?;
            } else if reply.done() {
                backend.io.rbuf.advance(pos);
                if discard {
                    client.wbuf.truncate(keep);
                }
                // the end of the reply stays queued: the session flushes it
                // once its bookkeeping (routing state, metrics) is done
                return Ok(reply.out);
            }
        }
        backend.io.rbuf.advance(pos);
        if owed.is_owed() {
            // rows go out before their terminator is known: the EOF after
            // the column definitions gets the best status known now
            let eof = reply.settle_now();
            owed.settle(&mut client.wbuf, &eof);
        }
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

#[cfg(test)]
mod tests;
