//! CLIENT_QUERY_ATTRIBUTES: the attribute block that starts a COM_QUERY
//! payload when a client negotiated the capability.
//!
//! After the command byte come the parameter count (lenenc), the parameter
//! set count (lenenc, always 1), and when the count is not 0 a NULL bitmap,
//! the new-params-bound flag (1), a type (2 bytes) and a name (lenenc) per
//! attribute, and the values of the non-NULL ones in the binary protocol;
//! the SQL text follows. causeway reads the block only to find where the
//! SQL starts (the block is forwarded as it is to backend links that
//! negotiated the capability too); [`EMPTY_PREFIX`] is what causeway's own
//! queries carry on such links.

use super::messages::{read_lenenc, read_lenenc_str};
use super::ErrPacket;

/// The attribute block of a query without attributes.
pub const EMPTY_PREFIX: [u8; 2] = [0x00, 0x01];

/// A COM_QUERY payload split at the end of its attribute block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split<'a> {
    /// The attribute block (empty when the capability is off).
    pub prefix: &'a [u8],
    /// How many attributes it holds.
    pub count: u64,
    /// The SQL text.
    pub sql: &'a [u8],
}

/// MySQL's error for a COM_QUERY whose attribute block does not parse
/// (ER_MALFORMED_PACKET, 1835 / HY000).
pub fn malformed() -> ErrPacket {
    ErrPacket::new(1835, "HY000", "Malformed communication packet.")
}

/// Splits the part of a COM_QUERY payload after its command byte. With
/// `attributes` off the whole of it is SQL. `None` when the block is
/// malformed; never panics, whatever the bytes.
pub fn split(body: &[u8], attributes: bool) -> Option<Split<'_>> {
    if !attributes {
        return Some(Split {
            prefix: &[],
            count: 0,
            sql: body,
        });
    }
    let mut r = Cursor(body);
    let count = r.lenenc()?;
    let _sets = r.lenenc()?;
    if count > 0 {
        // each attribute takes at least its 2-byte type: a bound that also
        // keeps the loops below short on hostile counts
        let n = usize::try_from(count)
            .ok()
            .filter(|&n| n <= body.len() / 2)?;
        let nulls = r.take(n.div_ceil(8))?;
        if r.take(1)? != [1] {
            return None;
        }
        let mut types = Vec::with_capacity(n);
        for _ in 0..n {
            let t = r.take(2)?;
            types.push(*t.first()?);
            r.lenenc_str()?;
        }
        for (i, t) in types.into_iter().enumerate() {
            let null = nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            if !null {
                r.value(t)?;
            }
        }
    }
    let used = body.len() - r.0.len();
    Some(Split {
        prefix: body.get(..used)?,
        count,
        sql: r.0,
    })
}

/// The SQL text of COM_QUERY `payload` (command byte included), or the
/// error to answer when its attribute block is malformed.
pub fn query_sql(payload: &[u8], attributes: bool) -> Result<Split<'_>, ErrPacket> {
    split(payload.get(1..).unwrap_or_default(), attributes).ok_or_else(malformed)
}

/// `payload` (a COM_QUERY of a client with attributes) for a backend link
/// without the capability: the block is dropped when it holds no
/// attribute; `None` when it holds some (they cannot be passed on).
pub fn without_attributes(payload: &[u8]) -> Option<Vec<u8>> {
    let s = split(payload.get(1..)?, true)?;
    if s.count > 0 {
        return None;
    }
    let mut out = Vec::with_capacity(1 + s.sql.len());
    out.push(*payload.first()?);
    out.extend_from_slice(s.sql);
    Some(out)
}

/// Bounds-checked reads over the block.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn lenenc(&mut self) -> Option<u64> {
        let (v, used) = read_lenenc(self.0)?;
        self.take(used)?;
        Some(v)
    }

    fn lenenc_str(&mut self) -> Option<&'a [u8]> {
        let (s, used) = read_lenenc_str(self.0)?;
        self.take(used)?;
        Some(s)
    }

    /// Skips one binary-protocol value of MySQL type `t`.
    fn value(&mut self, t: u8) -> Option<()> {
        match t {
            // TINY
            1 => self.take(1).map(drop),
            // SHORT, YEAR
            2 | 13 => self.take(2).map(drop),
            // LONG, FLOAT, INT24
            3 | 4 | 9 => self.take(4).map(drop),
            // DOUBLE, LONGLONG
            5 | 8 => self.take(8).map(drop),
            // NULL
            6 => Some(()),
            // TIMESTAMP, DATE, TIME, DATETIME: a length byte, then that many
            7 | 10 | 11 | 12 => {
                let n = *self.take(1)?.first()?;
                self.take(usize::from(n)).map(drop)
            }
            // DECIMAL, VARCHAR, BIT, JSON, NEWDECIMAL, ENUM, SET, BLOBs,
            // VAR_STRING, STRING, GEOMETRY, VECTOR: length-encoded bytes
            0 | 15 | 16 | 242 | 245..=255 => self.lenenc_str().map(drop),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::put_lenenc_str;

    fn with_attrs(attrs: &[(&str, Option<&str>)], sql: &str) -> Vec<u8> {
        let mut p = vec![0x03, attrs.len() as u8, 1];
        if !attrs.is_empty() {
            let mut nulls = vec![0u8; attrs.len().div_ceil(8)];
            for (i, (_, v)) in attrs.iter().enumerate() {
                if v.is_none() {
                    nulls[i / 8] |= 1 << (i % 8);
                }
            }
            p.extend_from_slice(&nulls);
            p.push(1);
            for (name, _) in attrs {
                p.extend_from_slice(&[253, 0]);
                put_lenenc_str(&mut p, name.as_bytes());
            }
            for (_, v) in attrs {
                if let Some(v) = v {
                    put_lenenc_str(&mut p, v.as_bytes());
                }
            }
        }
        p.extend_from_slice(sql.as_bytes());
        p
    }

    #[test]
    fn splits_attributes_from_sql() {
        let p = with_attrs(&[("n1", Some("v1")), ("n2", None)], "SELECT 1");
        let s = query_sql(&p, true).unwrap();
        assert_eq!((s.count, s.sql), (2, &b"SELECT 1"[..]));
        assert_eq!(s.prefix.len(), p.len() - 1 - 8);
        // the empty block
        let s = query_sql(b"\x03\x00\x01SELECT 2", true).unwrap();
        assert_eq!(
            (s.prefix, s.count, s.sql),
            (&EMPTY_PREFIX[..], 0, &b"SELECT 2"[..])
        );
        // without the capability it is all SQL
        let s = query_sql(b"\x03\x00\x01SELECT 2", false).unwrap();
        assert_eq!(s.sql, b"\x00\x01SELECT 2");
        // fixed-size and dated values
        let mut p = vec![0x03, 3, 1, 0, 1];
        for (t, name) in [(8u8, "i"), (12, "d"), (1, "t")] {
            p.extend_from_slice(&[t, 0]);
            put_lenenc_str(&mut p, name.as_bytes());
        }
        p.extend_from_slice(&7i64.to_le_bytes());
        p.extend_from_slice(&[4, 0xE8, 0x07, 1, 2]);
        p.push(9);
        p.extend_from_slice(b"DO 1");
        assert_eq!(query_sql(&p, true).unwrap().sql, b"DO 1");
    }

    #[test]
    fn malformed_blocks_are_refused() {
        for bad in [
            &b"\x03"[..],
            b"\x03\x00",
            b"\x03\x01\x01",
            b"\x03\x01\x01\x00\x00\xfd\x00\x01n",
            b"\x03\x01\x01\x00\x01\xfd\x00\x01n\x05ab",
            b"\x03\x01\x01\x00\x01\x63\x00\x01nx",
            b"\x03\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        ] {
            let e = query_sql(bad, true).unwrap_err();
            assert_eq!((e.code, e.sqlstate()), (1835, "HY000"), "{bad:?}");
        }
    }

    #[test]
    fn stripping_keeps_sql_and_refuses_attributes() {
        assert_eq!(
            without_attributes(b"\x03\x00\x01SELECT 1").unwrap(),
            b"\x03SELECT 1"
        );
        let p = with_attrs(&[("n1", Some("v1"))], "SELECT 1");
        assert_eq!(without_attributes(&p), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Some(s) = split(&bytes, true) {
                proptest::prop_assert_eq!(s.prefix.len() + s.sql.len(), bytes.len());
            }
            let _ = without_attributes(&bytes);
        }

        #[test]
        fn built_blocks_split_back(
            attrs in proptest::collection::vec(("[a-z]{0,8}", proptest::option::of("[a-z ]{0,300}")), 0..12),
            sql in "[ -~]{0,40}",
        ) {
            let attrs: Vec<(&str, Option<&str>)> =
                attrs.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
            let p = with_attrs(&attrs, &sql);
            let s = query_sql(&p, true).unwrap();
            proptest::prop_assert_eq!(s.sql, sql.as_bytes());
            proptest::prop_assert_eq!(s.count, attrs.len() as u64);
        }
    }
}
