//! The shared level's wire format: how one cache entry is stored as a Redis
//! value, and the Redis key it is stored under.
//!
//! The key is `causeway:c1:` and the hex SHA-256 of the local key's bytes
//! (which hold the statement, user, capabilities, collation, schema and
//! replayed `SET`s). The value is a small header and the reply bytes:
//!
//! ```text
//! "CWC1"                      magic and version
//! u64  expires_at             unix milliseconds (the rule's TTL from the fill)
//! u32  len, local key bytes   compared byte for byte: no hash collision can mix answers
//! u32  len, valid_as_of       GTID set text: what the serving replica had executed before the read
//! u32  len, bound             GTID set text: what it had executed when the read ended
//! u16  n, n × (u16 len, table)  the `db.table` names the statement reads
//! ...  the reply packets exactly as relayed to the client that missed
//! ```
//!
//! Integers are little endian. A value that does not decode is a miss.

use causeway_gtid::GtidSet;
use sha2::{Digest, Sha256};

use super::key::Key;

const MAGIC: &[u8; 4] = b"CWC1";

/// Errors decoding a shared value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Not this format or version.
    #[error("not a causeway cache entry (bad magic)")]
    Magic,
    /// Ended before a field did.
    #[error("truncated entry")]
    Truncated,
    /// A field is not what it should be.
    #[error("bad field: {0}")]
    Field(&'static str),
}

/// One shared entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    /// Unix milliseconds after which it must not be served.
    pub expires_at_ms: u64,
    /// The local key's bytes.
    pub key: Vec<u8>,
    /// What the serving replica had executed before the read: the content
    /// reflects at least this.
    pub valid_as_of: GtidSet,
    /// What the serving replica had executed when the read ended: the
    /// content reflects at most this.
    pub bound: GtidSet,
    /// The `db.table` names read.
    pub tables: Vec<String>,
    /// The reply packets.
    pub bytes: Vec<u8>,
}

/// The Redis key of local key `key`.
pub fn redis_key(key: &Key) -> String {
    let digest = Sha256::digest(key.bytes());
    let mut out = String::with_capacity(12 + 64);
    out.push_str("causeway:c1:");
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_u32_field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes `e` (None when a field is too long for its length prefix).
pub fn encode(e: &SharedEntry) -> Option<Vec<u8>> {
    let valid = e.valid_as_of.to_string();
    let bound = e.bound.to_string();
    let tables: usize = e.tables.iter().map(|t| t.len() + 2).sum();
    let mut out =
        Vec::with_capacity(32 + e.key.len() + valid.len() + bound.len() + tables + e.bytes.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&e.expires_at_ms.to_le_bytes());
    for f in [e.key.as_slice(), valid.as_bytes(), bound.as_bytes()] {
        u32::try_from(f.len()).ok()?;
        put_u32_field(&mut out, f);
    }
    out.extend_from_slice(&u16::try_from(e.tables.len()).ok()?.to_le_bytes());
    for t in &e.tables {
        out.extend_from_slice(&u16::try_from(t.len()).ok()?.to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&e.bytes);
    Some(out)
}

/// A cursor over a value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<usize, WireError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, WireError> {
        let b = self.take(4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map_err(|_| WireError::Field("length"))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn text(&mut self, len: usize, what: &'static str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| WireError::Field(what))
    }
}

fn gtids(s: &str, what: &'static str) -> Result<GtidSet, WireError> {
    if s.is_empty() {
        return Ok(GtidSet::new());
    }
    GtidSet::parse(s).map_err(|_| WireError::Field(what))
}

/// Decodes a value.
pub fn decode(v: &[u8]) -> Result<SharedEntry, WireError> {
    let mut r = Reader(v);
    if r.take(4)? != MAGIC {
        return Err(WireError::Magic);
    }
    let expires_at_ms = r.u64()?;
    let n = r.u32()?;
    let key = r.take(n)?.to_vec();
    let n = r.u32()?;
    let valid_as_of = gtids(r.text(n, "valid_as_of")?, "valid_as_of")?;
    let n = r.u32()?;
    let bound = gtids(r.text(n, "bound")?, "bound")?;
    let count = r.u16()?;
    let mut tables = Vec::with_capacity(count);
    for _ in 0..count {
        let n = r.u16()?;
        tables.push(r.text(n, "table")?.to_string());
    }
    Ok(SharedEntry {
        expires_at_ms,
        key,
        valid_as_of,
        bound,
        tables,
        bytes: r.0.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn sample() -> SharedEntry {
        SharedEntry {
            expires_at_ms: 1_800_000_000_000,
            key: b"\x01key bytes".to_vec(),
            valid_as_of: GtidSet::parse(&format!("{U}:1-10")).unwrap(),
            bound: GtidSet::parse(&format!("{U}:1-12")).unwrap(),
            tables: vec!["shop.products".into(), "shop.q".into()],
            bytes: vec![1, 0, 0, 1, 0xfe, 7, 0, 0, 2, 0, 0, 0],
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        let v = encode(&e).unwrap();
        assert_eq!(decode(&v), Ok(e));
        let empty = SharedEntry {
            valid_as_of: GtidSet::new(),
            bound: GtidSet::new(),
            tables: vec![],
            bytes: vec![],
            ..sample()
        };
        assert_eq!(decode(&encode(&empty).unwrap()), Ok(empty));
    }

    #[test]
    fn damaged_values_are_refused() {
        let v = encode(&sample()).unwrap();
        assert_eq!(decode(b"XXXX"), Err(WireError::Magic));
        assert_eq!(decode(&v[..20]), Err(WireError::Truncated));
        let mut bad = v.clone();
        // the first byte of the valid_as_of text
        let at = 4 + 8 + 4 + sample().key.len() + 4;
        bad[at] = b'!';
        assert_eq!(decode(&bad), Err(WireError::Field("valid_as_of")));
    }

    #[test]
    fn redis_keys_differ_with_the_local_key() {
        let ctx = super::super::key::Context {
            caps: 0,
            collation: 255,
            backend_user: "app",
            db: None,
            sets: &[],
        };
        let other = super::super::key::Context {
            backend_user: "app2",
            ..ctx
        };
        let proto = super::super::key::Protocol::Text;
        let a = redis_key(&super::super::key::build(&ctx, proto, b"SELECT 1", &[]));
        let b = redis_key(&super::super::key::build(&other, proto, b"SELECT 1", &[]));
        assert_ne!(a, b);
        assert_eq!(a.len(), 12 + 64);
        assert!(a.starts_with("causeway:c1:"));
    }

    proptest! {
        #[test]
        fn any_prefix_of_a_value_fails_cleanly(cut in 0usize..80) {
            let v = encode(&sample()).unwrap();
            let cut = cut.min(v.len());
            // never panics; a full value decodes
            let r = decode(&v[..cut]);
            prop_assert!(r.is_err() || cut >= v.len() - sample().bytes.len());
        }
    }
}
