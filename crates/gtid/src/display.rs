//! MySQL's canonical text form of a [`GtidSet`] and an [`Interval`].
//!
//! `{}` prints `uuid:1-5:7:tag_a:1-3,uuid2:4` — one entry per UUID, its
//! untagged intervals first, then each tag followed by its intervals,
//! entries separated by `,`, exactly `REPLACE(@@gtid_executed, '\n', '')`.
//! The alternate form `{:#}` separates entries with `,\n` like the server.

use std::fmt;

use crate::set::{GtidSet, Interval};

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = if f.alternate() { ",\n" } else { "," };
        let mut prev_uuid = None;
        for (tsid, ivs) in self.iter() {
            if prev_uuid != Some(tsid.uuid) {
                if prev_uuid.is_some() {
                    f.write_str(separator)?;
                }
                write!(f, "{}", tsid.uuid)?;
                prev_uuid = Some(tsid.uuid);
            }
            if !tsid.tag.is_untagged() {
                write!(f, ":{}", tsid.tag)?;
            }
            for iv in ivs {
                write!(f, ":{iv}")?;
            }
        }
        Ok(())
    }
}
