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
//! The state machine (`Reply`) is pure: it sees one packet at a time and
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
use crate::protocol::messages::{self, read_lenenc};
use crate::protocol::packet::{complete_packet_len, HEADER, MAX_PAYLOAD};
use crate::protocol::stream::ByteStream;
use crate::protocol::{ErrPacket, OkPacket, PacketConn, PacketError};

mod frame;
use frame::Owed;

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

/// What the relay of one reply is told.
#[derive(Debug, Clone, Copy)]
struct ReplyOpts {
    /// The reply shape the command asks for.
    expect: Expect,
    /// The client's capabilities (OK packets are re-encoded for them).
    client_caps: CapabilityFlags,
    /// The backend link's capabilities (the reply is shaped by them).
    link_caps: CapabilityFlags,
    /// The statement id the client knows a prepared statement by.
    client_stmt_id: Option<u32>,
    /// The link's status flags after its previous reply.
    status_before: u16,
}

/// Where a reply is: what its next packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// The first packet of a reply, or of the next result of a
    /// multi-result reply: OK, ERR, LOCAL INFILE, a column count...
    First,
    /// Column definitions, this many left.
    Cols(u64),
    /// The EOF after the column definitions (without DEPRECATE_EOF).
    ColsEof,
    /// Rows, until a terminator or an ERR.
    Rows,
    /// Parameter definitions of a prepare reply (left, then columns).
    PrepParams(u16, u16),
    /// The EOF after the parameters, then this many columns.
    PrepParamsEof(u16),
    /// Column definitions of a prepare reply, this many left.
    PrepCols(u16),
    /// The EOF after the prepare reply's columns.
    PrepColsEof,
    /// The reply ended.
    Done,
}

/// What the client gets for one packet.
#[derive(Debug, PartialEq, Eq)]
enum ToClient {
    /// The backend's bytes as they are.
    Verbatim,
    /// This payload instead, with the packet's sequence id.
    Rewritten(Vec<u8>),

    /// The backend's bytes, flushed, then the client's LOCAL INFILE data
    /// is pumped to the backend.
    Infile,
}

/// The effect of one packet.
#[derive(Debug)]
struct Step {
    next: St,
    send: ToClient,
    /// An OK packet of the reply (the backend connection learns from it).
    ok: Option<OkPacket>,
    /// Added to the packet's sequence id (packets added for the client
    /// before it).
    shift: u8,
    /// A packet the client gets right after this one (an EOF the link
    /// does not send).
    then: Option<Vec<u8>>,
    /// This packet ends the column definitions of a result set whose EOF
    /// the client is owed: it is written once known (`settle`).
    owe: bool,
    /// The EOF owed after the column definitions, to write where it
    /// belongs before this packet.
    settle: Option<Vec<u8>>,
}

impl Step {
    fn to(next: St) -> Step {
        Step {
            next,
            send: ToClient::Verbatim,
            ok: None,
            shift: 0,
            then: None,
            owe: false,
            settle: None,
        }
    }
}

/// The reply state machine of one command.
struct Reply<'h> {
    opts: ReplyOpts,
    deprecate_eof: bool,
    /// The link sends OK terminators, the client wants EOF packets.
    to_eof: bool,
    /// Packets added for the client so far: its sequence ids run ahead of
    /// the link's by this much.
    shift: u8,
    /// An EOF after the column definitions is owed to the client.
    owed: bool,

    on_ok: OkHook<'h>,
    st: St,
    /// The last physical packet was 16 MiB: the next one continues its
    /// payload and is forwarded as it is.
    cont: bool,
    out: Outcome,
}

impl<'h> Reply<'h> {
    fn new(opts: ReplyOpts, on_ok: OkHook<'h>) -> Reply<'h> {
        let deprecate_eof = opts
            .link_caps
            .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
        Reply {
            opts,
            deprecate_eof,
            to_eof: deprecate_eof
                && !opts
                    .client_caps
                    .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF),
            shift: 0,
            owed: false,
            on_ok,
            st: match opts.expect {
                Expect::Fetch => St::Rows,
                _ => St::First,
            },
            cont: false,
            out: Outcome::default(),
        }
    }

    /// Whether the reply has been read to its end.
    fn done(&self) -> bool {
        self.st == St::Done && !self.cont
    }

    /// Takes one physical packet (`raw`, header included).
    fn packet(&mut self, raw: &[u8]) -> Result<Step, RelayError> {
        let payload = raw.get(HEADER..).unwrap_or_default();
        let continued = self.cont;
        self.cont = payload.len() == MAX_PAYLOAD;
        if continued {
            return Ok(self.shifted(Step::to(self.st)));
        }
        let step = match self.st {
            St::First => self.first(payload)?,
            St::Cols(n) => self.column(n),
            St::ColsEof => Step::to(self.columns_eof(payload)),
            St::Rows => self.row(payload)?,
            St::PrepParams(n, cols) => self.prepare_param(n, cols),
            St::PrepParamsEof(cols) => Step::to(prepare_columns(cols)),
            St::PrepCols(n) => self.prepare_column(n),
            St::PrepColsEof | St::Done => Step::to(St::Done),
        };
        self.st = step.next;
        Ok(self.shifted(step))
    }

    /// Stamps the step with the shift in force for its packet, and counts
    /// the packet it adds after itself.
    fn shifted(&mut self, mut step: Step) -> Step {
        step.shift = self.shift;
        if step.then.is_some() || step.owe {
            self.shift = self.shift.wrapping_add(1);
        }
        step
    }

    /// The first packet of a reply (or of the next result).
    fn first(&mut self, payload: &[u8]) -> Result<Step, RelayError> {
        let first = payload.first().copied().unwrap_or(0);
        match (self.opts.expect, first) {
            (_, 0xFF) => Ok(self.error(payload)),
            (Expect::Statistics, _) => Ok(Step::to(St::Done)),
            (Expect::Prepare, 0x00) if payload.len() >= 12 => Ok(self.prepare_ok(payload)),
            (Expect::FieldList, 0xFE) if self.deprecate_eof => self.terminator(payload, first),
            (Expect::FieldList, 0xFE) => Ok(Step::to(St::Done)),
            (Expect::FieldList, _) => Ok(Step::to(St::Rows)),
            // LOCAL INFILE request: forwarded, then the client's file
            // packets go to the backend, then its OK or ERR follows
            (Expect::Query, 0xFB) => Ok(Step {
                send: ToClient::Infile,
                ..Step::to(St::First)
            }),
            (Expect::Simple, 0xFE) if payload.len() < 9 => {
                // an old-style EOF (COM_SET_OPTION without
                // CLIENT_DEPRECATE_EOF): forwarded as is
                self.out.status = messages::terminator_status(payload, false);
                Ok(Step::to(St::Done))
            }
            (Expect::Simple, 0xFE) => self.terminator(payload, first),
            (_, 0x00) => {
                let (send, ok) = self.ok(payload, first)?;
                Ok(Step {
                    send,
                    ok: Some(ok),
                    ..Step::to(more_or_done(self.out.status))
                })
            }
            (Expect::Query | Expect::Execute, _) => match read_lenenc(payload) {
                Some((n, _)) if n > 0 => Ok(Step::to(St::Cols(n))),
                _ => Err(RelayError::Protocol("bad column count".into())),
            },
            _ => Err(RelayError::Protocol(format!(
                "unexpected reply 0x{first:02x}"
            ))),
        }
    }

    /// An ERR packet: it ends the reply.
    fn error(&mut self, payload: &[u8]) -> Step {
        self.out.error = ErrPacket::parse(payload).ok();
        let mut step = Step::to(St::Done);
        if self.owed {
            step.settle = Some(self.settle_now());
        }
        step
    }

    /// A column definition of a result set, `n` of them left.
    fn column(&mut self, n: u64) -> Step {
        if n > 1 {
            Step::to(St::Cols(n - 1))
        } else if self.deprecate_eof {
            let mut step = Step::to(St::Rows);
            step.owe = self.to_eof;
            self.owed = self.to_eof;
            step
        } else {
            Step::to(St::ColsEof)
        }
    }

    /// The EOF after the column definitions: rows follow, unless the
    /// statement opened a cursor (rows come with COM_STMT_FETCH).
    fn columns_eof(&mut self, payload: &[u8]) -> St {
        self.out.status = messages::terminator_status(payload, false);
        if self.out.status & StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits() != 0 {
            St::Done
        } else {
            St::Rows
        }
    }

    /// A row (copied, never decoded), an ERR, or the terminator.
    fn row(&mut self, payload: &[u8]) -> Result<Step, RelayError> {
        let first = payload.first().copied().unwrap_or(0);
        if first == 0xFF {
            return Ok(self.error(payload));
        }
        if !messages::is_terminator(payload.len(), first, self.deprecate_eof) {
            return Ok(Step::to(St::Rows));
        }
        if self.deprecate_eof {
            return self.terminator(payload, first);
        }
        self.out.status = messages::terminator_status(payload, false);
        Ok(Step::to(self.after_terminator()))
    }

    /// An OK that ends rows (or a whole reply): the client gets it, or an
    /// EOF made from it when it does not read OK terminators; an EOF owed
    /// after the column definitions is settled first.
    fn terminator(&mut self, payload: &[u8], first: u8) -> Result<Step, RelayError> {
        let (send, ok) = self.ok(payload, first)?;
        let next = self.after_terminator();
        let mut step = Step::to(next);
        if !self.to_eof {
            step.send = send;
            step.ok = Some(ok);
            return Ok(step);
        }
        let out_params = StatusFlags::SERVER_PS_OUT_PARAMS.bits();
        step.send = if ok.status & out_params != 0 {
            // MySQL's classic EOF after OUT parameters has neither flag
            // (the CALL's OK still follows)
            let more = StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits();
            let status = ok.status & !(out_params | more);
            ToClient::Rewritten(frame::eof_from_ok(&OkPacket {
                status,
                ..ok.clone()
            }))
        } else {
            ToClient::Rewritten(frame::eof_from_ok(&ok))
        };
        let cursor = ok.status & StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits() != 0;
        if std::mem::take(&mut self.owed) {
            if cursor && self.opts.expect == Expect::Execute {
                // a cursor: the client's EOF after the columns is this one
                self.shift = self.shift.wrapping_sub(1);
            } else {
                step.settle = Some(frame::columns_eof(ok.status));
            }
        }
        step.ok = Some(ok);
        Ok(step)
    }

    /// Where a result goes after its terminator (status in `out`).
    fn after_terminator(&self) -> St {
        let cursor = self.out.status & StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits() != 0;
        if cursor && self.opts.expect == Expect::Execute {
            St::Done
        } else {
            more_or_done(self.out.status)
        }
    }

    /// The EOF owed after the column definitions, written before the rows'
    /// terminator is known: the session's status before this result.
    fn settle_now(&mut self) -> Vec<u8> {
        self.owed = false;
        let before = if self.out.status != 0 {
            self.out.status
        } else {
            self.opts.status_before
        };
        frame::statement_eof(before, self.out.status)
    }

    /// A prepare OK: statement id, columns, params; the id is replaced by
    /// the one the client knows.
    fn prepare_ok(&mut self, payload: &[u8]) -> Step {
        let u16_at = |p: usize| payload.get(p..p + 2).map_or(0, read_u16);
        let id = messages::stmt_id(payload).unwrap_or(0);
        let (cols, params) = (u16_at(5), u16_at(7));
        self.out.prepared = Some((id, cols, params));
        let rewritten = self
            .opts
            .client_stmt_id
            .and_then(|cid| messages::with_stmt_id(payload, cid));
        let next = if params > 0 {
            St::PrepParams(params, cols)
        } else {
            prepare_columns(cols)
        };
        Step {
            send: rewritten.map_or(ToClient::Verbatim, ToClient::Rewritten),
            ..Step::to(next)
        }
    }

    /// A parameter definition of a prepare reply, `n` left, then `cols`.
    fn prepare_param(&self, n: u16, cols: u16) -> Step {
        if n > 1 {
            Step::to(St::PrepParams(n - 1, cols))
        } else if !self.deprecate_eof {
            Step::to(St::PrepParamsEof(cols))
        } else {
            self.prepare_eof(prepare_columns(cols))
        }
    }

    /// A column definition of a prepare reply, `n` left.
    fn prepare_column(&self, n: u16) -> Step {
        if n > 1 {
            Step::to(St::PrepCols(n - 1))
        } else if !self.deprecate_eof {
            Step::to(St::PrepColsEof)
        } else {
            self.prepare_eof(St::Done)
        }
    }

    /// The end of a prepare reply's parameters or columns: an EOF follows
    /// for a client that reads EOF packets.
    fn prepare_eof(&self, next: St) -> Step {
        let mut step = Step::to(next);
        if self.to_eof {
            step.then = Some(frame::statement_eof(self.opts.status_before, 0));
        }
        step
    }

    /// Parses an OK from the backend (0x00, or 0xFE ending rows) and lets
    /// the session see it; the client gets a re-encoded copy when the
    /// session changed it or the client cannot read its session state.
    fn ok(&mut self, payload: &[u8], header: u8) -> Result<(ToClient, OkPacket), RelayError> {
        let mut ok = OkPacket::parse(payload, self.opts.link_caps)
            .map_err(|e| RelayError::Protocol(e.to_string()))?;
        self.out.status = ok.status;
        for (ty, data) in ok.state_entries() {
            if ty == messages::track::GTIDS {
                if let Some(g) = messages::gtids_from_state_data(data) {
                    self.out.gtids = Some(String::from_utf8_lossy(g).into_owned());
                }
            }
        }
        let is_final = ok.status & StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits() == 0;
        let changed = (self.on_ok)(&mut ok, is_final);
        let client_caps = self.opts.client_caps;
        let caps_differ = !client_caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK)
            && (!ok.info.is_empty() || !ok.session_state.is_empty());
        if changed || caps_differ {
            return Ok((ToClient::Rewritten(ok.encode(header, client_caps)), ok));
        }
        Ok((ToClient::Verbatim, ok))
    }
}

/// The column definitions of a prepare reply, if any.
fn prepare_columns(cols: u16) -> St {
    if cols > 0 {
        St::PrepCols(cols)
    } else {
        St::Done
    }
}

/// After an OK or a terminator: the next result, or the end.
fn more_or_done(status: u16) -> St {
    if status & StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits() != 0 {
        St::First
    } else {
        St::Done
    }
}

fn read_u16(b: &[u8]) -> u16 {
    match b {
        [lo, hi] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
