//! Small protocol messages the proxy builds or inspects itself.
//!
//! Owns length-encoded integers and strings, OK / ERR / EOF packets (parsing
//! and building, including the session-state part of OK packets that the
//! GTID token logic reads), and the column-count / terminator tests used by
//! the relay. Rows are never decoded here.

use mysql_common::constants::{CapabilityFlags, StatusFlags};

/// Errors decoding a message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The payload ended early or had a bad shape.
    #[error("malformed {0} packet")]
    Malformed(&'static str),
}

/// Reads a length-encoded integer at the start of `buf`: (value, bytes used).
pub fn read_lenenc(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    match first {
        0..=0xFA => Some((first as u64, 1)),
        0xFC => Some((
            u16::from_le_bytes(buf.get(1..3)?.try_into().ok()?) as u64,
            3,
        )),
        0xFD => {
            let &[b0, b1, b2] = buf.get(1..4)? else {
                return None;
            };
            Some((b0 as u64 | (b1 as u64) << 8 | (b2 as u64) << 16, 4))
        }
        0xFE => Some((u64::from_le_bytes(buf.get(1..9)?.try_into().ok()?), 9)),
        _ => None,
    }
}

/// Reads a length-encoded string: (bytes, bytes used).
pub fn read_lenenc_str(buf: &[u8]) -> Option<(&[u8], usize)> {
    let (len, n) = read_lenenc(buf)?;
    let end = n.checked_add(usize::try_from(len).ok()?)?;
    Some((buf.get(n..end)?, end))
}

/// Appends a length-encoded integer.
pub fn put_lenenc(out: &mut Vec<u8>, v: u64) {
    if v < 0xFB {
        out.push(v as u8);
    } else if v <= 0xFFFF {
        out.push(0xFC);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= 0xFF_FFFF {
        out.push(0xFD);
        out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xFE);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Session-state change types (`SESSION_TRACK_*`).
pub mod track {
    /// A system variable changed (`session_track_system_variables`;
    /// MariaDB reports `last_gtid` this way).
    pub const SYSTEM_VARIABLES: u8 = 0;
    /// The current schema changed.
    pub const SCHEMA: u8 = 1;
    /// Some session state changed.
    pub const STATE_CHANGE: u8 = 2;
    /// GTIDs (per `session_track_gtids`).
    pub const GTIDS: u8 = 3;
}

/// A decoded OK packet (header 0x00, or 0xFE as a result-set terminator).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OkPacket {
    /// Affected rows.
    pub affected_rows: u64,
    /// Last insert id.
    pub last_insert_id: u64,
    /// Server status flags.
    pub status: u16,
    /// Warning count.
    pub warnings: u16,
    /// Human readable info.
    pub info: Vec<u8>,
    /// Raw session-state block (present when SERVER_SESSION_STATE_CHANGED).
    pub session_state: Vec<u8>,
}

impl OkPacket {
    /// Parses an OK payload sent under `caps` (the capabilities of that link).
    pub fn parse(payload: &[u8], caps: CapabilityFlags) -> Result<OkPacket, MessageError> {
        const E: MessageError = MessageError::Malformed("OK");
        let mut p = 1;
        let (affected_rows, n) = read_lenenc(payload.get(p..).ok_or(E)?).ok_or(E)?;
        p += n;
        let (last_insert_id, n) = read_lenenc(payload.get(p..).ok_or(E)?).ok_or(E)?;
        p += n;
        let Some(&[s0, s1, w0, w1]) = payload.get(p..p + 4) else {
            return Err(E);
        };
        let status = u16::from_le_bytes([s0, s1]);
        let warnings = u16::from_le_bytes([w0, w1]);
        p += 4;
        let mut ok = OkPacket {
            affected_rows,
            last_insert_id,
            status,
            warnings,
            ..OkPacket::default()
        };
        let rest = |p: usize| payload.get(p..).filter(|r| !r.is_empty());
        if caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
            if let Some(r) = rest(p) {
                let (info, n) = read_lenenc_str(r).ok_or(E)?;
                ok.info = info.to_vec();
                p += n;
            }
            if status & StatusFlags::SERVER_SESSION_STATE_CHANGED.bits() != 0 {
                if let Some(r) = rest(p) {
                    let (state, _) = read_lenenc_str(r).ok_or(E)?;
                    ok.session_state = state.to_vec();
                }
            }
        } else if let Some(r) = rest(p) {
            ok.info = match read_lenenc_str(r) {
                Some((info, n)) if n == r.len() => info.to_vec(),
                _ => r.to_vec(),
            };
        }
        Ok(ok)
    }

    /// Encodes this OK for a link with capabilities `caps`, with `header`
    /// 0x00 (plain OK) or 0xFE (result-set terminator).
    pub fn encode(&self, header: u8, caps: CapabilityFlags) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.info.len() + self.session_state.len());
        out.push(header);
        put_lenenc(&mut out, self.affected_rows);
        put_lenenc(&mut out, self.last_insert_id);
        let mut status = self.status;
        let track = caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK);
        if !track || self.session_state.is_empty() {
            status &= !StatusFlags::SERVER_SESSION_STATE_CHANGED.bits();
        }
        out.extend_from_slice(&status.to_le_bytes());
        out.extend_from_slice(&self.warnings.to_le_bytes());
        if track {
            if !self.info.is_empty() || !self.session_state.is_empty() {
                put_lenenc_str(&mut out, &self.info);
            }
            if !self.session_state.is_empty() {
                put_lenenc_str(&mut out, &self.session_state);
            }
        } else if !self.info.is_empty() {
            // MySQL's net_send_ok writes the message length-encoded even
            // without CLIENT_SESSION_TRACK; clients expect those bytes.
            put_lenenc_str(&mut out, &self.info);
        }
        out
    }

    /// Iterates the session-state entries: (type, data).
    pub fn state_entries(&self) -> StateEntries<'_> {
        StateEntries {
            rest: &self.session_state,
        }
    }
}

/// Iterator over session-state entries of an OK packet.
pub struct StateEntries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for StateEntries<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (&ty, after) = self.rest.split_first()?;
        let (data, n) = read_lenenc_str(after)?;
        self.rest = after.get(n..).unwrap_or_default();
        Some((ty, data))
    }
}

/// Builds a SESSION_TRACK_GTIDS entry holding `gtids` (encoding spec 0).
pub fn gtids_state_entry(gtids: &str) -> Vec<u8> {
    let mut data = vec![0u8];
    put_lenenc_str(&mut data, gtids.as_bytes());
    let mut out = vec![track::GTIDS];
    put_lenenc_str(&mut out, &data);
    out
}

/// Decodes the data of a SESSION_TRACK_SYSTEM_VARIABLES entry into the
/// variable's name and value.
pub fn sysvar_from_state_data(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (name, n) = read_lenenc_str(data)?;
    let (value, _) = read_lenenc_str(data.get(n..)?)?;
    Some((name, value))
}

/// Builds a SESSION_TRACK_SYSTEM_VARIABLES entry `name = value`.
pub fn sysvar_state_entry(name: &str, value: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(name.len() + value.len() + 2);
    put_lenenc_str(&mut data, name.as_bytes());
    put_lenenc_str(&mut data, value.as_bytes());
    let mut out = vec![track::SYSTEM_VARIABLES];
    put_lenenc_str(&mut out, &data);
    out
}

/// Decodes the data of a SESSION_TRACK_GTIDS entry into the GTID text.
pub fn gtids_from_state_data(data: &[u8]) -> Option<&[u8]> {
    // one byte encoding specification (0), then a length-encoded string
    let (s, _) = read_lenenc_str(data.get(1..)?)?;
    Some(s)
}

/// Longest error message causeway sends or relays, in bytes: MySQL's
/// `MYSQL_ERRMSG_SIZE`. Longer messages (which can only come from echoing
/// client-supplied text) are cut on a character boundary and end in `...`.
pub const MAX_ERR_MESSAGE: usize = 512;

/// `message` cut to [`MAX_ERR_MESSAGE`] bytes (see there).
pub fn truncate_message(mut message: String) -> String {
    if message.len() <= MAX_ERR_MESSAGE {
        return message;
    }
    let mut cut = MAX_ERR_MESSAGE - "...".len();
    while cut > 0 && !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str("...");
    message
}

/// A decoded ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    /// Error code.
    pub code: u16,
    /// Five-character SQLSTATE.
    pub state: [u8; 5],
    /// Message.
    pub message: String,
}

impl ErrPacket {
    /// A new error; the message is cut to [`MAX_ERR_MESSAGE`] bytes.
    pub fn new(code: u16, state: &str, message: impl Into<String>) -> Self {
        let mut s = [b'H', b'Y', b'0', b'0', b'0'];
        for (d, c) in s.iter_mut().zip(state.bytes()) {
            *d = c;
        }
        ErrPacket {
            code,
            state: s,
            message: truncate_message(message.into()),
        }
    }

    /// Parses an ERR payload (protocol 4.1); the message is cut to
    /// [`MAX_ERR_MESSAGE`] bytes.
    pub fn parse(payload: &[u8]) -> Result<ErrPacket, MessageError> {
        const E: MessageError = MessageError::Malformed("ERR");
        let Some(&[0xFF, lo, hi]) = payload.get(..3) else {
            return Err(E);
        };
        let code = u16::from_le_bytes([lo, hi]);
        let marked = payload.get(3) == Some(&b'#');
        let (state, msg) = match (marked, payload.get(4..9), payload.get(9..)) {
            (true, Some(st), Some(rest)) => {
                let mut s = [0u8; 5];
                s.copy_from_slice(st);
                (s, rest)
            }
            _ => (*b"HY000", payload.get(3..).unwrap_or_default()),
        };
        Ok(ErrPacket {
            code,
            state,
            message: truncate_message(String::from_utf8_lossy(msg).into_owned()),
        })
    }

    /// Encodes the ERR payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        out.push(0xFF);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.push(b'#');
        out.extend_from_slice(&self.state);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// SQLSTATE as text.
    pub fn sqlstate(&self) -> &str {
        std::str::from_utf8(&self.state).unwrap_or("HY000")
    }
}

impl std::fmt::Display for ErrPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            self.sqlstate(),
            self.message
        )
    }
}

/// The statement id of a COM_STMT_* command or of a COM_STMT_PREPARE OK
/// (bytes 1 to 4, little-endian); `None` when the payload is too short.
pub fn stmt_id(payload: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(payload.get(1..5)?.try_into().ok()?))
}

/// `payload` (a COM_STMT_* command or a COM_STMT_PREPARE OK) with its
/// statement id replaced by `id`; `None` when it is too short to hold one.
/// The one place a statement id is patched: the proxy numbers statements
/// for its clients, each backend numbers its own.
pub fn with_stmt_id(payload: &[u8], id: u32) -> Option<Vec<u8>> {
    let mut out = payload.to_vec();
    out.get_mut(1..5)?.copy_from_slice(&id.to_le_bytes());
    Some(out)
}

/// Builds an old-style EOF payload.
pub fn eof(warnings: u16, status: u16) -> Vec<u8> {
    let mut out = vec![0xFE];
    out.extend_from_slice(&warnings.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// Whether `payload` is an EOF or OK-as-terminator packet under the link's
/// DEPRECATE_EOF setting (0xFE header and a short payload).
pub fn is_terminator(payload_len: usize, first: u8, deprecate_eof: bool) -> bool {
    first == 0xFE
        && if deprecate_eof {
            payload_len < 0xFF_FFFF
        } else {
            payload_len < 9
        }
}

/// Status flags of a terminator (EOF or OK 0xFE) payload.
pub fn terminator_status(payload: &[u8], deprecate_eof: bool) -> u16 {
    if deprecate_eof {
        // OK layout: header, lenenc affected, lenenc insert id, status
        let mut p = 1;
        for _ in 0..2 {
            match payload.get(p..).and_then(read_lenenc) {
                Some((_, n)) => p += n,
                None => return 0,
            }
        }
        u16_at(payload, p)
    } else {
        u16_at(payload, 3)
    }
}

/// The little-endian u16 at `p`, or 0 when the payload is shorter.
fn u16_at(payload: &[u8], p: usize) -> u16 {
    match payload.get(p..p.saturating_add(2)) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trip() {
        for v in [
            0u64,
            250,
            251,
            0xFFFF,
            0x10000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_lenenc(&mut out, v);
            assert_eq!(read_lenenc(&out), Some((v, out.len())), "value {v}");
        }
    }

    #[test]
    fn ok_round_trip_with_session_state() {
        let caps = CapabilityFlags::CLIENT_SESSION_TRACK | CapabilityFlags::CLIENT_PROTOCOL_41;
        let ok = OkPacket {
            affected_rows: 3,
            last_insert_id: 300,
            status: StatusFlags::SERVER_SESSION_STATE_CHANGED.bits() | 2,
            warnings: 1,
            info: b"Rows matched: 3".to_vec(),
            session_state: gtids_state_entry("uuid:1-3"),
        };
        let enc = ok.encode(0, caps);
        let back = OkPacket::parse(&enc, caps).unwrap();
        assert_eq!(back, ok);
        let entries: Vec<_> = back.state_entries().collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, track::GTIDS);
        assert_eq!(gtids_from_state_data(entries[0].1), Some(&b"uuid:1-3"[..]));
    }

    #[test]
    fn ok_without_session_track_drops_state_and_flag() {
        let ok = OkPacket {
            status: StatusFlags::SERVER_SESSION_STATE_CHANGED.bits(),
            info: b"hello".to_vec(),
            session_state: gtids_state_entry("x:1"),
            ..OkPacket::default()
        };
        let caps = CapabilityFlags::CLIENT_PROTOCOL_41;
        let enc = ok.encode(0, caps);
        let back = OkPacket::parse(&enc, caps).unwrap();
        assert_eq!(back.status, 0);
        assert_eq!(back.info, b"hello");
        assert!(back.session_state.is_empty());
    }

    #[test]
    fn err_round_trip() {
        let e = ErrPacket::new(1045, "28000", "Access denied");
        let back = ErrPacket::parse(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.to_string(), "ERROR 1045 (28000): Access denied");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = format!("Unknown database '{}'", "é".repeat(100_000));
        let e = ErrPacket::new(1049, "42000", long.clone());
        assert!(e.message.len() <= MAX_ERR_MESSAGE, "{}", e.message.len());
        assert!(e.message.ends_with("..."));
        assert!(long.starts_with(e.message.trim_end_matches("...")));
        let back = ErrPacket::parse(&ErrPacket::new(1, "HY000", "x".repeat(600)).encode()).unwrap();
        assert_eq!(back.message.len(), MAX_ERR_MESSAGE);
        // a backend's long message is cut too
        let mut raw = vec![0xFF, 0x19, 0x04, b'#', b'4', b'2', b'0', b'0', b'0'];
        raw.extend(std::iter::repeat_n(b'y', 5000));
        assert_eq!(
            ErrPacket::parse(&raw).unwrap().message.len(),
            MAX_ERR_MESSAGE
        );
        assert_eq!(ErrPacket::new(1, "HY000", "short").message, "short");
        for n in 500..520 {
            let m = truncate_message("😀".repeat(n / 4 + 1) + &"a".repeat(n % 4));
            assert!(m.len() <= MAX_ERR_MESSAGE);
        }
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        for p in [&[][..], &[0xFF], &[0xFF, 1], &[0x00], &[0xFE, 0xFD, 1]] {
            let _ = ErrPacket::parse(p);
            let _ = OkPacket::parse(p, CapabilityFlags::CLIENT_SESSION_TRACK);
            let _ = terminator_status(p, true);
            let _ = terminator_status(p, false);
            let _ = read_lenenc_str(p);
        }
        let ok = OkPacket {
            session_state: vec![3, 0xFC, 0xFF],
            ..OkPacket::default()
        };
        assert_eq!(ok.state_entries().count(), 0);
    }

    #[test]
    fn statement_ids_are_read_and_patched_in_place() {
        let prepare_ok = [0x00, 7, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0];
        assert_eq!(stmt_id(&prepare_ok), Some(7));
        let patched = with_stmt_id(&prepare_ok, 0x0102_0304).unwrap();
        assert_eq!(&patched[..5], &[0x00, 4, 3, 2, 1]);
        assert_eq!(&patched[5..], &prepare_ok[5..]);
        assert_eq!(stmt_id(&patched), Some(0x0102_0304));
        assert_eq!(with_stmt_id(&[0x19, 1, 2, 3], 5), None);
        assert_eq!(stmt_id(&[0x19, 1, 2, 3]), None);
        assert_eq!(
            with_stmt_id(&[0x19, 0, 0, 0, 0], 9),
            Some(vec![0x19, 9, 0, 0, 0])
        );
    }

    proptest::proptest! {
        #[test]
        fn stmt_id_patch_round_trips(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..16),
            id in proptest::num::u32::ANY,
        ) {
            match with_stmt_id(&payload, id) {
                Some(p) => {
                    proptest::prop_assert_eq!(stmt_id(&p), Some(id));
                    proptest::prop_assert_eq!(p.len(), payload.len());
                    proptest::prop_assert_eq!(p.first(), payload.first());
                    proptest::prop_assert_eq!(p.get(5..), payload.get(5..));
                }
                None => proptest::prop_assert!(payload.len() < 5),
            }
        }
    }

    #[test]
    fn terminators() {
        assert!(is_terminator(5, 0xFE, false));
        assert!(!is_terminator(9, 0xFE, false));
        assert!(is_terminator(7, 0xFE, true));
        assert!(!is_terminator(0xFF_FFFF, 0xFE, true));
        assert_eq!(terminator_status(&eof(0, 0x0008), false), 0x0008);
        let ok = OkPacket {
            status: 0x22,
            ..OkPacket::default()
        };
        assert_eq!(
            terminator_status(&ok.encode(0xFE, CapabilityFlags::empty()), true),
            0x22
        );
    }
}
