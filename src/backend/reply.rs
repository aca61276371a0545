//! Strict checks of the one-packet replies causeway reads itself.
//!
//! Owns the rule that a reply the proxy expects to be a single OK or ERR
//! packet (COM_RESET_CONNECTION, COM_INIT_DB, the session setup and replayed
//! SET statements) is accepted only when it is exactly that: the right
//! sequence id (1, the request went out with 0), and an OK that parses to
//! its last byte, session-state entries included. Anything else means the
//! connection is out of step with the server (e.g. rows of an earlier,
//! abandoned result set are still arriving) and must be closed.

use mysql_common::constants::{CapabilityFlags, StatusFlags};

use crate::protocol::messages::{read_lenenc, read_lenenc_str};

/// Errors in this module: why a packet is not the expected reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The sequence id is not the one that follows the request.
    #[error("reply with sequence id {got}, expected {expected}")]
    Sequence {
        /// Sequence id of the packet read.
        got: u8,
        /// The one expected.
        expected: u8,
    },
    /// The packet is neither a complete OK nor an ERR.
    #[error("expected a single OK or ERR packet, got {0}")]
    Shape(&'static str),
}

/// What a single-packet reply was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A complete OK packet.
    Ok,
    /// An ERR packet.
    Err,
}

/// Sequence id of the reply to a command sent with sequence id 0.
pub const REPLY_SEQ: u8 = 1;

/// Classifies the packet read as the reply to a one-packet command.
pub fn check_reply(seq: u8, payload: &[u8], caps: CapabilityFlags) -> Result<Reply, ReplyError> {
    if seq != REPLY_SEQ {
        return Err(ReplyError::Sequence {
            got: seq,
            expected: REPLY_SEQ,
        });
    }
    match payload.first() {
        Some(0x00) if ok_is_exact(payload, caps) => Ok(Reply::Ok),
        Some(0x00) => Err(ReplyError::Shape("a malformed OK packet")),
        Some(0xFF) if payload.len() >= 3 => Ok(Reply::Err),
        Some(0xFF) => Err(ReplyError::Shape("a truncated ERR packet")),
        Some(_) => Err(ReplyError::Shape("another packet type")),
        None => Err(ReplyError::Shape("an empty packet")),
    }
}

/// Whether `payload` is an OK packet (0x00 header) that parses exactly,
/// with no byte missing or left over.
pub fn ok_is_exact(payload: &[u8], caps: CapabilityFlags) -> bool {
    ok_rest(payload, caps).is_some_and(|rest| rest.is_empty())
}

/// Parses an OK packet and returns what is left after it.
fn ok_rest(payload: &[u8], caps: CapabilityFlags) -> Option<&[u8]> {
    let (&header, mut p) = payload.split_first()?;
    if header != 0x00 {
        return None;
    }
    for _ in 0..2 {
        // affected rows, last insert id
        let (_, n) = read_lenenc(p)?;
        p = p.get(n..)?;
    }
    let sw = p.get(..4)?;
    let status = u16::from_le_bytes([sw[0], sw[1]]);
    p = p.get(4..)?;
    if !caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
        // the rest is a human-readable info string up to the end
        return Some(&[]);
    }
    if p.is_empty() {
        return Some(p);
    }
    let (_, n) = read_lenenc_str(p)?;
    p = p.get(n..)?;
    if status & StatusFlags::SERVER_SESSION_STATE_CHANGED.bits() != 0 {
        let (mut state, n) = read_lenenc_str(p)?;
        p = p.get(n..)?;
        while let Some((_, entry)) = state.split_first() {
            let (_, n) = read_lenenc_str(entry)?;
            state = entry.get(n..)?;
        }
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::OkPacket;
    use proptest::prelude::*;

    fn caps() -> CapabilityFlags {
        CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_SESSION_TRACK
    }

    #[test]
    fn plain_ok_with_seq_1_is_accepted() {
        let ok = OkPacket {
            status: StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits(),
            ..OkPacket::default()
        }
        .encode(0, caps());
        assert_eq!(check_reply(1, &ok, caps()), Ok(Reply::Ok));
    }

    #[test]
    fn ok_with_session_state_is_accepted() {
        let ok = OkPacket {
            status: (StatusFlags::SERVER_STATUS_AUTOCOMMIT
                | StatusFlags::SERVER_SESSION_STATE_CHANGED)
                .bits(),
            session_state: crate::protocol::messages::gtids_state_entry("a:1-2"),
            ..OkPacket::default()
        }
        .encode(0, caps());
        assert_eq!(check_reply(1, &ok, caps()), Ok(Reply::Ok));
        // one byte more or less is not an OK
        let mut longer = ok.clone();
        longer.push(0);
        assert!(check_reply(1, &longer, caps()).is_err());
        assert!(check_reply(1, &ok[..ok.len() - 1], caps()).is_err());
    }

    /// The row `''`, `X'000000000000'` of issue 10 looks like an OK packet;
    /// only its sequence id gives it away, and that is checked.
    #[test]
    fn a_row_that_looks_like_ok_is_refused_by_its_sequence_id() {
        let row = [0x00, 0x06, 0, 0, 0, 0, 0, 0];
        assert!(ok_is_exact(&row, caps()));
        assert_eq!(
            check_reply(211, &row, caps()),
            Err(ReplyError::Sequence {
                got: 211,
                expected: 1
            })
        );
    }

    #[test]
    fn other_shapes_are_refused() {
        assert!(check_reply(1, &[], caps()).is_err());
        assert!(check_reply(1, &[0x01, 0x31], caps()).is_err());
        assert!(check_reply(1, &[0xFE, 0, 0, 2, 0], caps()).is_err());
        assert!(check_reply(1, &[0x00, 0x00], caps()).is_err());
        assert!(check_reply(1, &[0xFF, 0x10], caps()).is_err());
        assert_eq!(
            check_reply(1, b"\xFF\x15\x04#28000denied", caps()),
            Ok(Reply::Err)
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_wrong_seq_is_never_accepted(
            seq in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let r = check_reply(seq, &payload, caps());
            if seq != REPLY_SEQ {
                prop_assert!(r.is_err());
            }
            let _ = check_reply(seq, &payload, CapabilityFlags::CLIENT_PROTOCOL_41);
        }

        #[test]
        fn encoded_oks_are_exact(
            affected in any::<u64>(),
            id in any::<u64>(),
            warnings in any::<u16>(),
            info in proptest::collection::vec(any::<u8>(), 0..40),
            gtids in "[a-f0-9:-]{0,40}",
        ) {
            let ok = OkPacket {
                affected_rows: affected,
                last_insert_id: id,
                status: StatusFlags::SERVER_SESSION_STATE_CHANGED.bits(),
                warnings,
                info,
                session_state: crate::protocol::messages::gtids_state_entry(&gtids),
            };
            let bytes = ok.encode(0, caps());
            prop_assert_eq!(check_reply(1, &bytes, caps()), Ok(Reply::Ok));
        }
    }
}
