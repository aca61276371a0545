//! MariaDB GTID positions (`domain-server-seq`, comma separated, at most
//! one per domain) and the flavour-neutral token the rest of causeway uses.
//!
//! A MariaDB position is carried inside a [`GtidSet`] so that every
//! operation the proxy already does on tokens (union, containment,
//! difference, the monotonic floor, the cache's bounds) keeps its meaning:
//! domain `D` at sequence `S` becomes the source
//! `4d617269-6144-4200-0000-DDDDDDDDDDDD` ("MariaDB" in hex, then the
//! domain) with the interval `1-S`. Then
//! - containment is `MASTER_GTID_WAIT`'s rule: for every domain of the
//!   token, the server's seq is ≥ the token's (`1-S ⊆ 1-S'` iff `S ≤ S'`);
//! - union is the per-domain maximum (the merge after a write);
//! - `token − server` leaves exactly the domains the server lacks, each
//!   ending at the token's seq (what to wait for).
//!
//! The server id of a GTID does not take part in any of these (MariaDB's
//! own `MASTER_GTID_WAIT` ignores it), so it is not kept: a token prints as
//! `domain-0-seq`.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::GtidError;
use crate::ids::{Tag, Tsid, Uuid};
use crate::limits::Limits;
use crate::parse::MAX_GNO;
use crate::set::{GtidSet, Interval};

/// The server family a backend runs (how its GTIDs look).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Oracle MySQL: `uuid:interval` sets.
    #[default]
    Mysql,
    /// MariaDB: `domain-server-seq` positions.
    Mariadb,
}

impl Flavor {
    /// `mysql` or `mariadb`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Mysql => "MySQL",
            Flavor::Mariadb => "MariaDB",
        }
    }

    /// The flavour a server's version string names (`10.11.6-MariaDB-...`,
    /// also behind MariaDB's old `5.5.5-` prefix).
    pub fn from_version(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first 8 bytes of the UUID that carries a MariaDB domain: "MariaDB\0".
const PREFIX: [u8; 8] = *b"MariaDB\0";

/// What is parsed, for error messages.
const WHAT: &str = "MariaDB GTID position";

/// A MariaDB GTID position: per domain, the server id and seq of the last
/// GTID. At most one entry per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariadbPos {
    domains: BTreeMap<u32, (u32, u64)>,
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn syntax(offending: &str, reason: &'static str) -> GtidError {
    GtidError::Syntax {
        what: WHAT,
        offending: clip(offending),
        reason,
    }
}

fn number<T: std::str::FromStr>(s: &str, entry: &str) -> Result<T, GtidError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax(
            entry,
            "expected domain-server-seq (decimal numbers)",
        ));
    }
    s.parse().map_err(|_| {
        syntax(
            entry,
            "number out of range (domain and server id are 32-bit)",
        )
    })
}

impl MariadbPos {
    /// The empty position.
    pub fn new() -> MariadbPos {
        MariadbPos::default()
    }

    /// Parses server output (`@@gtid_binlog_pos`, `last_gtid`), unbounded.
    pub fn parse(s: &str) -> Result<MariadbPos, GtidError> {
        Self::parse_limited(s, &Limits::NONE)
    }

    /// Parses untrusted text under `limits`: the text length is checked
    /// first, then the number of domains (`max_sources`) as entries are
    /// read, so nothing is stored for an oversized token.
    pub fn parse_limited(s: &str, limits: &Limits) -> Result<MariadbPos, GtidError> {
        if s.len() > limits.max_len {
            return Err(too_large(s, "bytes", limits.max_len, limits));
        }
        let mut pos = MariadbPos::new();
        if s.trim().is_empty() {
            return Ok(pos);
        }
        for (i, entry) in s.split(',').enumerate() {
            if i >= limits.max_sources {
                return Err(too_large(s, "domains", limits.max_sources, limits));
            }
            let entry = entry.trim();
            let mut parts = entry.split('-');
            let (Some(d), Some(srv), Some(seq), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(syntax(entry, "expected domain-server-seq"));
            };
            let domain: u32 = number(d.trim(), entry)?;
            let server: u32 = number(srv.trim(), entry)?;
            let seq: u64 = number(seq.trim(), entry)?;
            if seq > MAX_GNO {
                return Err(GtidError::GnoOutOfRange {
                    offending: clip(entry),
                });
            }
            if pos.domains.insert(domain, (server, seq)).is_some() {
                return Err(syntax(entry, "more than one GTID for this domain"));
            }
        }
        Ok(pos)
    }

    /// True when no domain is named.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// `(domain, server, seq)` in domain order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, u64)> + '_ {
        self.domains.iter().map(|(d, (s, q))| (*d, *s, *q))
    }

    /// `MASTER_GTID_WAIT`'s rule: every domain of `token` is here with a
    /// seq at least the token's.
    pub fn contains(&self, token: &MariadbPos) -> bool {
        token
            .domains
            .iter()
            .all(|(d, (_, seq))| self.domains.get(d).is_some_and(|(_, have)| have >= seq))
    }

    /// Per-domain maximum (a new write's `last_gtid` into a session token).
    pub fn merge(&mut self, other: &MariadbPos) {
        for (d, (srv, seq)) in &other.domains {
            match self.domains.get_mut(d) {
                Some(e) if e.1 >= *seq => {}
                Some(e) => *e = (*srv, *seq),
                None => {
                    self.domains.insert(*d, (*srv, *seq));
                }
            }
        }
    }

    /// The entries of `self` that `has` does not contain (what a replica at
    /// `has` must still wait for).
    pub fn missing(&self, has: &MariadbPos) -> MariadbPos {
        let domains = self
            .domains
            .iter()
            .filter(|(d, (_, seq))| !has.domains.get(d).is_some_and(|(_, h)| h >= seq))
            .map(|(d, e)| (*d, *e))
            .collect();
        MariadbPos { domains }
    }

    /// The position as a [`GtidSet`] (see the module docs).
    pub fn to_gtid_set(&self) -> GtidSet {
        let mut set = GtidSet::new();
        for (d, (_, seq)) in &self.domains {
            if *seq > 0 {
                set.insert_raw(
                    domain_tsid(*d),
                    Interval {
                        start: 1,
                        end: *seq,
                    },
                );
            }
        }
        set
    }

    /// The position a [`GtidSet`] built by [`Self::to_gtid_set`] (or a union
    /// or difference of such sets) carries; `None` if the set holds any
    /// MySQL GTID. The empty set is the empty position.
    pub fn from_gtid_set(set: &GtidSet) -> Option<MariadbPos> {
        let mut pos = MariadbPos::new();
        for (tsid, ivs) in set.iter() {
            let d = domain_of(tsid)?;
            let seq = ivs.iter().map(|iv| iv.end).max().unwrap_or(0);
            pos.domains.insert(d, (0, seq));
        }
        Some(pos)
    }
}

fn too_large(s: &str, what: &'static str, limit: usize, limits: &Limits) -> GtidError {
    GtidError::TooLarge {
        offending: clip(s),
        what,
        limit,
        limits: *limits,
    }
}

fn domain_tsid(domain: u32) -> Tsid {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&PREFIX);
    b[12..].copy_from_slice(&domain.to_be_bytes());
    Tsid::new(Uuid(b), Tag::UNTAGGED)
}

fn domain_of(tsid: &Tsid) -> Option<u32> {
    let b = tsid.uuid.0;
    if b[..8] != PREFIX || b[8..12] != [0; 4] || !tsid.tag.is_untagged() {
        return None;
    }
    Some(u32::from_be_bytes([b[12], b[13], b[14], b[15]]))
}

impl fmt::Display for MariadbPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, (srv, seq))) in self.domains.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}-{srv}-{seq}")?;
        }
        Ok(())
    }
}

/// Whether `s` is written as a MariaDB position rather than a MySQL GTID
/// set: non-blank and without `:` (every MySQL GTID has one).
pub fn looks_mariadb(s: &str) -> bool {
    !s.trim().is_empty() && !s.contains(':')
}

/// Parses a client's token in either syntax under `limits`: a MySQL GTID
/// set, or a MariaDB position (then carried as in the module docs).
pub fn parse_token(s: &str, limits: &Limits) -> Result<GtidSet, GtidError> {
    if looks_mariadb(s) {
        return MariadbPos::parse_limited(s, limits).map(|p| p.to_gtid_set());
    }
    GtidSet::parse_limited(s, limits)
}

/// A token's text for the client: a MariaDB position when the set carries
/// only MariaDB domains, else MySQL's form.
pub fn token_text(set: &GtidSet) -> String {
    if set.is_empty() {
        return String::new();
    }
    match MariadbPos::from_gtid_set(set) {
        Some(p) => p.to_string(),
        None => set.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &str) -> MariadbPos {
        MariadbPos::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints() {
        let p = pos(" 0-1-5, 2-3-9 ");
        assert_eq!(p.to_string(), "0-1-5,2-3-9");
        assert_eq!(pos("").to_string(), "");
        assert!(
            MariadbPos::parse("0-1-5,0-2-6").is_err(),
            "two GTIDs in one domain"
        );
        for bad in ["0-1", "0-1-2-3", "a-1-2", "0--2", "4294967296-1-1", "0-1-x"] {
            assert!(MariadbPos::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            MariadbPos::parse("0-1-9223372036854775807"),
            Err(GtidError::GnoOutOfRange { .. })
        ));
    }

    #[test]
    fn containment_is_master_gtid_wait_rule() {
        let server = pos("0-1-10,1-1-3");
        assert!(server.contains(&pos("0-2-10")), "server id plays no part");
        assert!(server.contains(&pos("0-1-4,1-1-3")));
        assert!(!server.contains(&pos("0-1-11")));
        assert!(!server.contains(&pos("5-1-1")), "a domain the server lacks");
        assert!(server.contains(&pos("")));
        // the same through the GtidSet carrier
        let s = server.to_gtid_set();
        assert!(s.contains(&pos("0-2-10").to_gtid_set()));
        assert!(!s.contains(&pos("0-1-11").to_gtid_set()));
        assert!(!s.contains(&pos("5-1-1").to_gtid_set()));
    }

    #[test]
    fn merge_and_missing() {
        let mut t = pos("0-1-5,1-1-7");
        t.merge(&pos("0-1-9,2-1-1"));
        assert_eq!(t.to_string(), "0-1-9,1-1-7,2-1-1");
        t.merge(&pos("0-1-3"));
        assert_eq!(t.to_string(), "0-1-9,1-1-7,2-1-1", "never goes back");
        let m = t.missing(&pos("0-1-9,1-1-2"));
        assert_eq!(m.to_string(), "1-1-7,2-1-1", "only the missing domains");
        // the carrier: union is the max, difference the missing domains
        let mut a = pos("0-1-5").to_gtid_set();
        a.union(&pos("0-1-9,3-1-2").to_gtid_set());
        assert_eq!(token_text(&a), "0-0-9,3-0-2");
        let miss = a.difference(&pos("0-1-7,3-1-2").to_gtid_set());
        assert_eq!(token_text(&miss), "0-0-9");
    }

    #[test]
    fn tokens_in_either_syntax() {
        let t = parse_token("0-1-5", &Limits::TOKEN).unwrap();
        assert_eq!(token_text(&t), "0-0-5");
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5";
        let m = parse_token(u, &Limits::TOKEN).unwrap();
        assert_eq!(token_text(&m), u);
        assert_eq!(token_text(&GtidSet::new()), "");
        assert!(parse_token("", &Limits::TOKEN).unwrap().is_empty());
        assert_eq!(MariadbPos::from_gtid_set(&m), None);
    }

    #[test]
    fn bounded_like_mysql_sets() {
        let big = "0-1-1,".repeat(200_000);
        let t0 = std::time::Instant::now();
        let e = parse_token(&big, &Limits::TOKEN).unwrap_err();
        assert!(
            matches!(e, GtidError::TooLarge { what: "bytes", .. }),
            "{e}"
        );
        assert!(t0.elapsed() < std::time::Duration::from_millis(50));
        let many: Vec<String> = (0..300).map(|d| format!("{d}-1-1")).collect();
        let e = parse_token(&many.join(","), &Limits::TOKEN).unwrap_err();
        assert!(
            matches!(
                e,
                GtidError::TooLarge {
                    what: "domains",
                    ..
                }
            ),
            "{e}"
        );
        assert!(parse_token(&many[..256].join(","), &Limits::TOKEN).is_ok());
    }
}
