//! Identifiers inside a GTID: the server [`Uuid`], the optional [`Tag`]
//! (MySQL 8.3+), the pair of them ([`Tsid`]) and a single [`Gtid`].
//!
//! All types are small, `Copy` and compare the way MySQL sorts them when it
//! prints `@@gtid_executed`: UUIDs by their lowercase text (which is the
//! same as comparing the 16 raw bytes), then the untagged source before any
//! tag, tags in ascending lexicographic order.

use std::fmt;
use std::str::FromStr;

use crate::error::GtidError;
use crate::parse;

/// A server UUID, stored as its 16 raw bytes.
///
/// Parsed from the hyphenated 36-character form in either case; printed in
/// lowercase with hyphens, as MySQL prints it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits in any case).
    pub fn parse(s: &str) -> Result<Uuid, GtidError> {
        parse_uuid(s).ok_or_else(|| GtidError::BadUuid {
            offending: parse::clip(s),
        })
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// Byte offsets of the hyphens in the 36-character text form.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// Parses the hyphenated form, returning `None` on any deviation.
pub(crate) fn parse_uuid(s: &str) -> Option<Uuid> {
    let b = s.as_bytes();
    if b.len() != 36 || HYPHENS.iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !HYPHENS.contains(i))
        .map(|(_, &c)| hex_val(c));
    for byte in &mut out {
        let hi = nibbles.next()??;
        let lo = nibbles.next()??;
        *byte = (hi << 4) | lo;
    }
    Some(Uuid(out))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 36];
        let mut pos = 0;
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                buf[pos] = b'-';
                pos += 1;
            }
            buf[pos] = HEX[usize::from(byte >> 4)];
            buf[pos + 1] = HEX[usize::from(byte & 0xf)];
            pos += 2;
        }
        // The buffer only ever holds ASCII hex digits and hyphens.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

impl FromStr for Uuid {
    type Err = GtidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse(s)
    }
}

/// Maximum length of a GTID tag, in characters.
pub const MAX_TAG_LEN: usize = 32;

/// A GTID tag (`[a-z_][a-z0-9_]{0,31}`, stored lowercase), or the empty
/// "untagged" value.
///
/// Stored inline and zero-padded, so the derived byte-wise ordering is the
/// lexicographic ordering of the text with the untagged value first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tag([u8; MAX_TAG_LEN]);

impl Tag {
    /// The absence of a tag (plain `uuid:N` GTIDs).
    pub const UNTAGGED: Tag = Tag([0; MAX_TAG_LEN]);

    /// Validates and lowercases a tag. The empty string is rejected: use
    /// [`Tag::UNTAGGED`] for untagged GTIDs.
    pub fn new(s: &str) -> Result<Tag, GtidError> {
        let b = s.as_bytes();
        let bad = |reason: &'static str| GtidError::BadTag {
            offending: parse::clip(s),
            reason,
        };
        match b.first() {
            None => return Err(bad("tag is empty")),
            Some(c) if !(c.is_ascii_alphabetic() || *c == b'_') => {
                return Err(bad("tag must start with a letter or '_'"))
            }
            _ => {}
        }
        if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_') {
            return Err(bad("tag may only contain letters, digits and '_'"));
        }
        if b.len() > MAX_TAG_LEN {
            return Err(bad("tag is longer than 32 characters"));
        }
        let mut buf = [0u8; MAX_TAG_LEN];
        for (dst, src) in buf.iter_mut().zip(b) {
            *dst = src.to_ascii_lowercase();
        }
        Ok(Tag(buf))
    }

    /// True for [`Tag::UNTAGGED`].
    pub fn is_untagged(&self) -> bool {
        self.0[0] == 0
    }

    /// The tag text (lowercase); empty when untagged.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&c| c == 0).unwrap_or(MAX_TAG_LEN);
        // Only validated ASCII is ever stored.
        std::str::from_utf8(&self.0[..len]).unwrap_or_default()
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({:?})", self.as_str())
    }
}

impl FromStr for Tag {
    type Err = GtidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::new(s)
    }
}

/// A transaction source: UUID plus optional tag (MySQL's `Tsid`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tsid {
    /// The server UUID.
    pub uuid: Uuid,
    /// The tag, or [`Tag::UNTAGGED`].
    pub tag: Tag,
}

impl Tsid {
    /// Builds a source from its parts.
    pub fn new(uuid: Uuid, tag: Tag) -> Tsid {
        Tsid { uuid, tag }
    }
}

impl fmt::Display for Tsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tag.is_untagged() {
            write!(f, "{}", self.uuid)
        } else {
            write!(f, "{}:{}", self.uuid, self.tag)
        }
    }
}

impl fmt::Debug for Tsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tsid({self})")
    }
}

/// One transaction: `uuid:N` or `uuid:tag:N`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    tsid: Tsid,
    gno: u64,
}

impl Gtid {
    /// Builds a GTID, checking that `gno` is a valid transaction number
    /// (`1..=`[`crate::MAX_GNO`]).
    pub fn new(uuid: Uuid, tag: Tag, gno: u64) -> Result<Gtid, GtidError> {
        parse::check_gno(gno)?;
        Ok(Gtid {
            tsid: Tsid::new(uuid, tag),
            gno,
        })
    }

    /// Parses `uuid:N` or `uuid:tag:N` (whitespace around pieces allowed).
    pub fn parse(s: &str) -> Result<Gtid, GtidError> {
        parse::parse_gtid(s)
    }

    /// The source (UUID and tag).
    pub fn tsid(&self) -> Tsid {
        self.tsid
    }

    /// The server UUID.
    pub fn uuid(&self) -> Uuid {
        self.tsid.uuid
    }

    /// The tag ([`Tag::UNTAGGED`] for plain GTIDs).
    pub fn tag(&self) -> Tag {
        self.tsid.tag
    }

    /// The transaction number.
    pub fn gno(&self) -> u64 {
        self.gno
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tsid, self.gno)
    }
}

impl fmt::Debug for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gtid({self})")
    }
}

impl FromStr for Gtid {
    type Err = GtidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Gtid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn uuid_roundtrip_and_case() {
        let a = Uuid::parse(U).unwrap();
        let b = Uuid::parse(&U.to_uppercase()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), U);
        assert_eq!(a.0[0], 0x3e);
        assert_eq!(a.0[15], 0x62);
    }

    #[test]
    fn uuid_rejects() {
        for bad in [
            "",
            "abc",
            "3e11fa4771ca11e19e33c80aa9429562",
            "3e11fa47-71ca-11e1-9e33-c80aa942956g",
            "3e11fa47-71ca-11e1-9e33c-80aa9429562",
            "3e11fa47-71ca-11e1-9e33-c80aa94295621",
        ] {
            let e = Uuid::parse(bad).unwrap_err();
            assert_eq!(e.offending(), bad);
            assert!(e.to_string().contains("bad UUID"), "{e}");
        }
    }

    #[test]
    fn uuid_order_matches_text_order() {
        let a = Uuid::parse("0e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
        let b = Uuid::parse("ae11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn tags() {
        assert_eq!(Tag::new("Tag_1").unwrap().as_str(), "tag_1");
        assert_eq!(Tag::new("_").unwrap().as_str(), "_");
        let long = "a".repeat(32);
        assert_eq!(Tag::new(&long).unwrap().as_str(), long);
        assert!(Tag::new(&"a".repeat(33)).is_err());
        assert!(Tag::new("1abc").is_err());
        assert!(Tag::new("a-b").is_err());
        assert!(Tag::new("").is_err());
        assert!(Tag::new("é").is_err());
        assert!(Tag::UNTAGGED < Tag::new("a").unwrap());
        assert!(Tag::new("a").unwrap() < Tag::new("a_").unwrap());
        assert!(Tag::new("a_").unwrap() < Tag::new("ab").unwrap());
        assert!(Tag::new("Z").unwrap() > Tag::new("a").unwrap());
        assert!(Tag::UNTAGGED.is_untagged());
        assert_eq!(Tag::UNTAGGED.as_str(), "");
    }

    #[test]
    fn gtid_parse() {
        let g = Gtid::parse(&format!("{U}:5")).unwrap();
        assert_eq!(g.gno(), 5);
        assert!(g.tag().is_untagged());
        assert_eq!(g.to_string(), format!("{U}:5"));
        let g: Gtid = format!(" {} : Tag : 7 ", U.to_uppercase()).parse().unwrap();
        assert_eq!(g.tag().as_str(), "tag");
        assert_eq!(g.to_string(), format!("{U}:tag:7"));
        for bad in [
            "",
            U,
            &format!("{U}:0"),
            &format!("{U}:1-2"),
            &format!("{U}:t"),
        ] {
            assert!(Gtid::parse(bad).is_err(), "{bad}");
        }
        assert!(Gtid::new(g.uuid(), Tag::UNTAGGED, 0).is_err());
    }
}
