//! The reply state machine of one command (`Reply`): it sees one packet
//! at a time and says what the client gets (the backend's bytes, or a
//! rewritten packet, and any packet added for the classic framing) and what
//! comes next, one small function per reply state. Pure: no I/O.

use mysql_common::constants::{CapabilityFlags, StatusFlags};

use super::{frame, Expect, OkHook, Outcome, RelayError};
use crate::protocol::messages::{self, read_lenenc};
use crate::protocol::packet::HEADER;
use crate::protocol::packet::MAX_PAYLOAD;
use crate::protocol::{ErrPacket, OkPacket};

/// What the relay of one reply is told.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplyOpts {
    /// The reply shape the command asks for.
    pub(super) expect: Expect,
    /// The client's capabilities (OK packets are re-encoded for them).
    pub(super) client_caps: CapabilityFlags,
    /// The backend link's capabilities (the reply is shaped by them).
    pub(super) link_caps: CapabilityFlags,
    /// The statement id the client knows a prepared statement by.
    pub(super) client_stmt_id: Option<u32>,
    /// The link's status flags after its previous reply.
    pub(super) status_before: u16,
}

/// Where a reply is: what its next packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum St {
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
pub(super) enum ToClient {
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
pub(super) struct Step {
    pub(super) next: St,
    pub(super) send: ToClient,
    /// An OK packet of the reply (the backend connection learns from it).
    pub(super) ok: Option<OkPacket>,
    /// Added to the packet's sequence id (packets added for the client
    /// before it).
    pub(super) shift: u8,
    /// A packet the client gets right after this one (an EOF the link
    /// does not send).
    pub(super) then: Option<Vec<u8>>,
    /// This packet ends the column definitions of a result set whose EOF
    /// the client is owed: it is written once known (`settle`).
    pub(super) owe: bool,
    /// The EOF owed after the column definitions, to write where it
    /// belongs before this packet.
    pub(super) settle: Option<Vec<u8>>,
}

impl Step {
    pub(super) fn to(next: St) -> Step {
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
pub(super) struct Reply<'h> {
    pub(super) opts: ReplyOpts,
    pub(super) deprecate_eof: bool,
    /// The link sends OK terminators, the client wants EOF packets.
    pub(super) to_eof: bool,
    /// Packets added for the client so far: its sequence ids run ahead of
    /// the link's by this much.
    pub(super) shift: u8,
    /// An EOF after the column definitions is owed to the client.
    pub(super) owed: bool,

    pub(super) on_ok: OkHook<'h>,
    pub(super) st: St,
    /// The last physical packet was 16 MiB: the next one continues its
    /// payload and is forwarded as it is.
    pub(super) cont: bool,
    pub(super) out: Outcome,
}

impl<'h> Reply<'h> {
    pub(super) fn new(opts: ReplyOpts, on_ok: OkHook<'h>) -> Reply<'h> {
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
    pub(super) fn done(&self) -> bool {
        self.st == St::Done && !self.cont
    }

    /// Takes one physical packet (`raw`, header included).
    pub(super) fn packet(&mut self, raw: &[u8]) -> Result<Step, RelayError> {
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
    pub(super) fn shifted(&mut self, mut step: Step) -> Step {
        step.shift = self.shift;
        if step.then.is_some() || step.owe {
            self.shift = self.shift.wrapping_add(1);
        }
        step
    }

    /// The first packet of a reply (or of the next result).
    pub(super) fn first(&mut self, payload: &[u8]) -> Result<Step, RelayError> {
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
    pub(super) fn error(&mut self, payload: &[u8]) -> Step {
        self.out.error = ErrPacket::parse(payload).ok();
        let mut step = Step::to(St::Done);
        if self.owed {
            step.settle = Some(self.settle_now());
        }
        step
    }

    /// A column definition of a result set, `n` of them left.
    pub(super) fn column(&mut self, n: u64) -> Step {
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
    pub(super) fn columns_eof(&mut self, payload: &[u8]) -> St {
        self.out.status = messages::terminator_status(payload, false);
        if self.out.status & StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits() != 0 {
            St::Done
        } else {
            St::Rows
        }
    }

    /// A row (copied, never decoded), an ERR, or the terminator.
    pub(super) fn row(&mut self, payload: &[u8]) -> Result<Step, RelayError> {
        let first = payload.first().copied().unwrap_or(0);
        if first == 0xFF {
            return Ok(self.error(payload));
        }
        if !messages::is_terminator(payload.len(), first, self.deprecate_eof) {
            self.out.rows = self.out.rows.saturating_add(1);
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
    pub(super) fn terminator(&mut self, payload: &[u8], first: u8) -> Result<Step, RelayError> {
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
    pub(super) fn after_terminator(&self) -> St {
        let cursor = self.out.status & StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits() != 0;
        if cursor && self.opts.expect == Expect::Execute {
            St::Done
        } else {
            more_or_done(self.out.status)
        }
    }

    /// The EOF owed after the column definitions, written before the rows'
    /// terminator is known: the session's status before this result.
    pub(super) fn settle_now(&mut self) -> Vec<u8> {
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
    pub(super) fn prepare_ok(&mut self, payload: &[u8]) -> Step {
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
    pub(super) fn prepare_param(&self, n: u16, cols: u16) -> Step {
        if n > 1 {
            Step::to(St::PrepParams(n - 1, cols))
        } else if !self.deprecate_eof {
            Step::to(St::PrepParamsEof(cols))
        } else {
            self.prepare_eof(prepare_columns(cols))
        }
    }

    /// A column definition of a prepare reply, `n` left.
    pub(super) fn prepare_column(&self, n: u16) -> Step {
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
    pub(super) fn prepare_eof(&self, next: St) -> Step {
        let mut step = Step::to(next);
        if self.to_eof {
            step.then = Some(frame::statement_eof(self.opts.status_before, 0));
        }
        step
    }

    /// Parses an OK from the backend (0x00, or 0xFE ending rows) and lets
    /// the session see it; the client gets a re-encoded copy when the
    /// session changed it or the client cannot read its session state.
    pub(super) fn ok(
        &mut self,
        payload: &[u8],
        header: u8,
    ) -> Result<(ToClient, OkPacket), RelayError> {
        let mut ok = OkPacket::parse(payload, self.opts.link_caps)
            .map_err(|e| RelayError::Protocol(e.to_string()))?;
        self.out.status = ok.status;
        self.out.affected = self.out.affected.saturating_add(ok.affected_rows);
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
pub(super) fn prepare_columns(cols: u16) -> St {
    if cols > 0 {
        St::PrepCols(cols)
    } else {
        St::Done
    }
}

/// After an OK or a terminator: the next result, or the end.
pub(super) fn more_or_done(status: u16) -> St {
    if status & StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits() != 0 {
        St::First
    } else {
        St::Done
    }
}

pub(super) fn read_u16(b: &[u8]) -> u16 {
    match b {
        [lo, hi] => u16::from_le_bytes([*lo, *hi]),
        _ => 0,
    }
}
