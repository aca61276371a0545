//! The classic EOF framing for clients without CLIENT_DEPRECATE_EOF.
//!
//! Owns what the relay adds or changes when the backend link negotiated
//! CLIENT_DEPRECATE_EOF (always, so its OK packets carry the server's
//! GTID set) and the client did not: the EOF packets the link does not
//! send, the terminating OKs turned into EOFs, the sequence-id shift of the
//! packets after an added one, and the EOF after a result set's column
//! definitions, which is written once the status it carries is known
//! (`Owed`): when the rows' terminator is in the same read, or before the
//! rows are flushed.

use bytes::BytesMut;
use mysql_common::constants::StatusFlags;

use super::RelayError;
use crate::protocol::messages;
use crate::protocol::packet::{complete_packet_len, HEADER};
use crate::protocol::stream::ByteStream;
use crate::protocol::{OkPacket, PacketConn};

/// Status flags an EOF never carries: session state travels only in OK
/// packets.
const NOT_IN_EOF: u16 = StatusFlags::SERVER_SESSION_STATE_CHANGED.bits();

/// The EOF a client without DEPRECATE_EOF gets for a terminating OK.
pub(super) fn eof_from_ok(ok: &OkPacket) -> Vec<u8> {
    messages::eof(ok.warnings, ok.status & !NOT_IN_EOF)
}

/// The EOF after column (or parameter) definitions, with `status`.
pub(super) fn columns_eof(status: u16) -> Vec<u8> {
    let drop = NOT_IN_EOF
        | StatusFlags::SERVER_STATUS_LAST_ROW_SENT.bits()
        | StatusFlags::SERVER_STATUS_CURSOR_EXISTS.bits();
    messages::eof(0, status & !drop)
}

/// Status flags that belong to the session rather than to one statement
/// (the server clears the others when a statement starts).
const SESSION_FLAGS: u16 = StatusFlags::SERVER_STATUS_IN_TRANS.bits()
    | StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits()
    | StatusFlags::SERVER_STATUS_IN_TRANS_READONLY.bits()
    | StatusFlags::SERVER_STATUS_NO_BACKSLASH_ESCAPES.bits();

/// The EOF a statement's own packets (a prepare reply's definitions, or
/// column definitions whose rows' status is not known yet) carry: the
/// session's flags from `before`, the status of the link's last reply, and
/// `more` (SERVER_MORE_RESULTS_EXISTS when an earlier result of the same
/// reply had it).
pub(super) fn statement_eof(before: u16, more: u16) -> Vec<u8> {
    let more = more & StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits();
    messages::eof(0, (before & SESSION_FLAGS) | more)
}

/// Appends a packet as the backend sent it, its sequence id moved on by
/// `shift`.
pub(super) fn put_raw(wbuf: &mut BytesMut, raw: &[u8], shift: u8) {
    let at = wbuf.len();
    wbuf.extend_from_slice(raw);
    if shift != 0 {
        if let Some(seq) = wbuf.get_mut(at + HEADER - 1) {
            *seq = seq.wrapping_add(shift);
        }
    }
}

/// Where the EOF owed after a result set's column definitions goes in the
/// client's write buffer, and its sequence id.
#[derive(Debug, Default)]
pub(super) struct Owed {
    at: Option<(usize, u8)>,
}

impl Owed {
    /// The column definitions ended at `at` in the write buffer; the EOF
    /// gets sequence id `seq`.
    pub(super) fn owe(&mut self, at: usize, seq: u8) {
        self.at = Some((at, seq));
    }

    /// Whether an EOF is still to be written.
    pub(super) fn is_owed(&self) -> bool {
        self.at.is_some()
    }

    /// Writes the owed EOF (payload `eof`) where it belongs, before the
    /// rows queued since.
    pub(super) fn settle(&mut self, wbuf: &mut BytesMut, eof: &[u8]) {
        let Some((at, seq)) = self.at.take() else {
            return;
        };
        let at = at.min(wbuf.len());
        let rows = wbuf.split_off(at);
        let mut seq = seq;
        crate::protocol::packet::write_packets(wbuf, &mut seq, eof);
        wbuf.unsplit(rows);
    }
}

/// Forwards the client's LOCAL INFILE data packets to the backend, up to
/// and including the empty packet that ends them; their sequence ids are
/// moved back by `shift` (the packets the client got that the server did
/// not send).
pub(super) async fn pump_infile<B: ByteStream, C: ByteStream>(
    client: &mut PacketConn<C>,
    backend: &mut PacketConn<B>,
    shift: u8,
) -> Result<(), RelayError> {
    loop {
        let mut pos = 0;
        let mut done = false;
        while let Some((len, _)) = client.rbuf.get(pos..).and_then(complete_packet_len) {
            if shift != 0 {
                if let Some(seq) = client.rbuf.get_mut(pos + HEADER - 1) {
                    *seq = seq.wrapping_sub(shift);
                }
            }
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
