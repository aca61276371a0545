//! Decoding of `GTID_TAGGED_LOG_EVENT` (type 42, MySQL 8.4+: a GTID
//! `uuid:tag:n`, as written after `SET gtid_next = 'AUTOMATIC:tag'`),
//! which `mysql_common` 0.35 does not know. The body is in MySQL's
//! serialization-library format: a version byte, then a message of
//! variable-length integers (`payload size`, `last non-ignorable field id`,
//! then `field id, value` pairs). Only the fields the reader needs are
//! kept: uuid, tag, gno and the immediate commit timestamp.

use causeway_gtid::{GtidSet, Tag, Uuid};

/// Event type of a tagged GTID event.
pub const GTID_TAGGED_LOG_EVENT: u8 = 42;

/// What the reader takes from a tagged GTID event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedGtid {
    /// Source uuid.
    pub uuid: [u8; 16],
    /// Tag (lowercase, as MySQL normalises it).
    pub tag: String,
    /// Transaction number.
    pub gno: u64,
    /// Commit time on the immediate source, microseconds since the epoch.
    pub commit_us: u64,
}

impl TaggedGtid {
    /// The one-transaction set.
    pub fn set(&self) -> Result<GtidSet, String> {
        let tag = Tag::new(&self.tag).map_err(|e| e.to_string())?;
        let mut s = GtidSet::new();
        s.add(Uuid(self.uuid), tag, self.gno)
            .map_err(|e| e.to_string())?;
        Ok(s)
    }
}

/// Reads one unsigned variable-length integer: the count of trailing one
/// bits of the first byte, plus one, is its length in bytes (nine when the
/// first byte is 0xff, the value then in the eight bytes that follow).
fn varlen(buf: &mut &[u8]) -> Option<u64> {
    let first = *buf.first()?;
    let len = (first.trailing_ones() as usize) + 1;
    let bytes = buf.get(..len)?;
    let value = if len == 9 {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes.get(1..9)?);
        u64::from_le_bytes(le)
    } else {
        let mut le = [0u8; 8];
        le.get_mut(..len)?.copy_from_slice(bytes);
        u64::from_le_bytes(le) >> len
    };
    *buf = buf.get(len..)?;
    Some(value)
}

/// A signed variable-length integer (zig-zag).
fn varlen_signed(buf: &mut &[u8]) -> Option<i64> {
    let u = varlen(buf)?;
    let magnitude = i64::try_from(u >> 1).ok()?;
    Some(if u & 1 == 1 {
        -magnitude - 1
    } else {
        magnitude
    })
}

/// Decodes the body of a tagged GTID event; None when it is not one this
/// decoder understands.
pub fn decode(data: &[u8]) -> Option<TaggedGtid> {
    let (&version, rest) = data.split_first()?;
    if version != 2 {
        return None;
    }
    let mut buf = rest;
    let start = buf.len() + 1;
    let size = usize::try_from(varlen(&mut buf)?).ok()?;
    let last_non_ignorable = varlen(&mut buf)?;
    let consumed = start - buf.len();
    let fields_len = size.checked_sub(consumed)?;
    let mut f = buf.get(..fields_len)?;
    let (mut uuid, mut tag, mut gno, mut commit_us) = (None, None, None, 0u64);
    while !f.is_empty() {
        match varlen(&mut f)? {
            // gtid_flags, transaction_length, server versions, ticket
            0 | 8 | 9 | 10 | 11 => {
                varlen(&mut f)?;
            }
            1 => {
                let mut u = [0u8; 16];
                for b in &mut u {
                    *b = u8::try_from(varlen(&mut f)?).ok()?;
                }
                uuid = Some(u);
            }
            2 => gno = Some(u64::try_from(varlen_signed(&mut f)?).ok()?),
            3 => {
                let len = usize::try_from(varlen(&mut f)?).ok()?;
                let s = std::str::from_utf8(f.get(..len)?).ok()?;
                tag = Some(s.to_string());
                f = f.get(len..)?;
            }
            4 | 5 => {
                varlen_signed(&mut f)?;
            }
            6 => commit_us = varlen(&mut f)?,
            7 => {
                varlen(&mut f)?;
            }
            id if id <= last_non_ignorable => return None,
            // an ignorable field of unknown size: what we need came first
            _ => break,
        }
    }
    Some(TaggedGtid {
        uuid: uuid?,
        tag: tag?,
        gno: gno?,
        commit_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(out: &mut Vec<u8>, v: u64) {
        // the encoder's inverse, for small values only (< 2^14)
        if v < 128 {
            out.push((v << 1) as u8);
        } else {
            let x = (v << 2) | 0b01;
            out.extend_from_slice(&(x as u16).to_le_bytes());
        }
    }

    #[test]
    fn varlen_integers() {
        let mut b: &[u8] = &[0x02, 0x05, 0x10];
        assert_eq!(varlen(&mut b), Some(1));
        // 0x05 = 0b101: two bytes, value (0x1005 >> 2)
        assert_eq!(varlen(&mut b), Some(0x1005 >> 2));
        let nine = [0xff, 1, 0, 0, 0, 0, 0, 0, 0x80];
        let mut b: &[u8] = &nine;
        assert_eq!(varlen(&mut b), Some(0x8000_0000_0000_0001));
        assert!(b.is_empty());
        let mut short: &[u8] = &[0x01];
        assert_eq!(varlen(&mut short), None);
    }

    #[test]
    fn decodes_a_tagged_event() {
        let uuid: [u8; 16] = core::array::from_fn(|i| (i as u8) * 16 + 1);
        let mut fields = Vec::new();
        put(&mut fields, 0);
        put(&mut fields, 0);
        put(&mut fields, 1);
        for b in uuid {
            put(&mut fields, u64::from(b));
        }
        put(&mut fields, 2);
        put(&mut fields, 7 << 1); // zig-zag 7
        put(&mut fields, 3);
        put(&mut fields, 3);
        fields.extend_from_slice(b"abc");
        put(&mut fields, 6);
        put(&mut fields, 1000);
        let mut body = vec![2u8];
        // size counts the version byte, itself and the last-field id
        let size = 1 + 1 + 1 + fields.len() as u64;
        put(&mut body, size);
        put(&mut body, 3);
        body.extend_from_slice(&fields);
        body.extend_from_slice(&[9, 9, 9, 9]); // checksum or padding after
        let g = decode(&body).unwrap();
        assert_eq!(g.uuid, uuid);
        assert_eq!(g.tag, "abc");
        assert_eq!(g.gno, 7);
        assert_eq!(g.commit_us, 1000);
        assert!(decode(&body[..10]).is_none());
    }
}
