//! Replies the proxy writes itself: text result sets for `SELECT
//! @@causeway.*` and `SHOW CAUSEWAY BACKENDS`, shaped for the client's
//! capabilities (EOF packets or CLIENT_DEPRECATE_EOF terminators).

use mysql_common::constants::{CapabilityFlags, StatusFlags};

use crate::protocol::messages::{eof, put_lenenc, put_lenenc_str};
use crate::protocol::OkPacket;

/// Payloads of a text result set with string columns, starting at
/// sequence id 1.
pub fn text_result_set(
    caps: CapabilityFlags,
    status: u16,
    columns: &[&str],
    rows: &[Vec<Option<String>>],
) -> Vec<Vec<u8>> {
    let defs = columns.iter().map(|name| column_def(name)).collect();
    let rows = rows
        .iter()
        .map(|row| {
            let mut p = Vec::new();
            for v in row {
                match v {
                    Some(s) => put_lenenc_str(&mut p, s.as_bytes()),
                    None => p.push(0xFB),
                }
            }
            p
        })
        .collect();
    framed_result_set(caps, status, defs, rows)
}

/// Payloads of a text result set from encoded column definitions and
/// rows, starting at sequence id 1: the column count, the definitions,
/// the rows, and the EOF packets or CLIENT_DEPRECATE_EOF terminator.
pub fn framed_result_set(
    caps: CapabilityFlags,
    status: u16,
    defs: Vec<Vec<u8>>,
    rows: Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let deprecate_eof = caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    let mut out = Vec::with_capacity(defs.len() + rows.len() + 3);
    let mut count = Vec::new();
    put_lenenc(&mut count, defs.len() as u64);
    out.push(count);
    out.extend(defs);
    let status = status & !StatusFlags::SERVER_MORE_RESULTS_EXISTS.bits();
    if !deprecate_eof {
        out.push(eof(0, status));
    }
    out.extend(rows);
    if deprecate_eof {
        let ok = OkPacket {
            status,
            ..OkPacket::default()
        };
        out.push(ok.encode(0xFE, caps));
    } else {
        out.push(eof(0, status));
    }
    out
}

/// A VARCHAR utf8mb4 column definition.
fn column_def(name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(32 + name.len());
    put_lenenc_str(&mut p, b"def");
    put_lenenc_str(&mut p, b"");
    put_lenenc_str(&mut p, b"");
    put_lenenc_str(&mut p, b"");
    put_lenenc_str(&mut p, name.as_bytes());
    put_lenenc_str(&mut p, b"");
    p.push(0x0C);
    p.extend_from_slice(&255u16.to_le_bytes()); // utf8mb4_0900_ai_ci
    p.extend_from_slice(&(4096u32 * 4).to_le_bytes());
    p.push(0xFD); // VAR_STRING
    p.extend_from_slice(&0u16.to_le_bytes());
    p.push(0x1F);
    p.extend_from_slice(&[0, 0]);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_deprecate_eof() {
        let rows = vec![vec![Some("a".to_string()), None]];
        let old = text_result_set(CapabilityFlags::empty(), 2, &["x", "y"], &rows);
        // count, 2 defs, EOF, row, EOF
        assert_eq!(old.len(), 6);
        assert_eq!(old[3][0], 0xFE);
        assert_eq!(old[4], vec![1, b'a', 0xFB]);
        let new = text_result_set(CapabilityFlags::CLIENT_DEPRECATE_EOF, 2, &["x", "y"], &rows);
        // count, 2 defs, row, OK terminator
        assert_eq!(new.len(), 5);
        assert_eq!(new[4][0], 0xFE);
    }
}
