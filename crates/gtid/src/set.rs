//! [`GtidSet`]: a set of GTIDs in canonical form, with union, difference
//! and subset tests.
//!
//! Representation: a `Vec` of `(Tsid, Vec<Interval>)` sorted by source
//! (UUID, then untagged before tags, tags ascending); each interval list is
//! sorted, non-empty, and its inclusive intervals neither overlap nor touch
//! (`1-3` and `4-5` are stored as `1-5`). Because the form is canonical,
//! derived equality and hashing are set equality and set hashing.
//!
//! Complexity: [`GtidSet::contains`] walks the other set's sources with a
//! binary search in this set's sources and each of the other's intervals
//! with a binary search in the matching list, so it is `O(m log n)`;
//! [`GtidSet::union`] is a linear merge (or a few binary-search inserts when
//! the other side is small).

use std::str::FromStr;

use crate::error::GtidError;
use crate::ids::{Gtid, Tag, Tsid, Uuid};
use crate::limits::Limits;
use crate::parse::{self, check_gno};

/// An inclusive range of transaction numbers, `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First transaction number (>= 1).
    pub start: u64,
    /// Last transaction number (>= `start`, <= [`crate::MAX_GNO`]).
    pub end: u64,
}

impl Interval {
    /// Number of transactions in the interval.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: an interval holds at least one transaction.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A set of GTIDs, canonical (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GtidSet {
    entries: Vec<(Tsid, Vec<Interval>)>,
}

/// Appends `iv` to a canonical list whose last start is `<= iv.start`,
/// merging it into the last interval when they overlap or touch.
fn push_merge(ivs: &mut Vec<Interval>, iv: Interval) {
    match ivs.last_mut() {
        // `last.end <= MAX_GNO < u64::MAX`, so `+ 1` cannot overflow.
        Some(last) if iv.start <= last.end + 1 => last.end = last.end.max(iv.end),
        _ => ivs.push(iv),
    }
}

/// Inserts one interval into a canonical list, keeping it canonical.
fn insert_interval(ivs: &mut Vec<Interval>, iv: Interval) {
    // First interval that overlaps or touches `iv` (or lies after it).
    let i = ivs.partition_point(|x| x.end + 1 < iv.start);
    // One past the last interval that overlaps or touches `iv`.
    let j = i + ivs[i..].partition_point(|x| x.start <= iv.end + 1);
    if i == j {
        ivs.insert(i, iv);
    } else {
        let merged = Interval {
            start: iv.start.min(ivs[i].start),
            end: iv.end.max(ivs[j - 1].end),
        };
        ivs[i] = merged;
        ivs.drain(i + 1..j);
    }
}

/// Makes `a` the union of `a` and `b` (both canonical).
fn union_intervals(a: &mut Vec<Interval>, b: &[Interval]) {
    match (a.last(), b.first()) {
        (_, None) => {}
        (None, Some(_)) => a.extend_from_slice(b),
        // Common case: the other side only extends this one.
        (Some(last), Some(first)) if first.start >= last.start => {
            for &iv in b {
                push_merge(a, iv);
            }
        }
        _ if b.len() <= 4 => {
            for &iv in b {
                insert_interval(a, iv);
            }
        }
        _ => {
            let mut out = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                let take_a = j == b.len() || (i < a.len() && a[i].start <= b[j].start);
                if take_a {
                    push_merge(&mut out, a[i]);
                    i += 1;
                } else {
                    push_merge(&mut out, b[j]);
                    j += 1;
                }
            }
            *a = out;
        }
    }
}

/// Index of the first interval whose end is `>= gno` (or `ivs.len()`),
/// found by exponential then binary search from the front: `O(log d)` for
/// an answer at distance `d`, so walking two similar lists is linear.
fn gallop_end(ivs: &[Interval], gno: u64) -> usize {
    let mut bound = 1;
    while bound < ivs.len() && ivs[bound].end < gno {
        bound *= 2;
    }
    // The answer lies in `bound / 2 ..= bound`.
    let lo = bound / 2;
    let hi = (bound + 1).min(ivs.len());
    lo + ivs[lo..hi].partition_point(|x| x.end < gno)
}

/// True when every interval of `small` lies inside one interval of `big`
/// (both canonical).
fn intervals_contain(big: &[Interval], small: &[Interval]) -> bool {
    // Fast path for the very common single-interval case.
    if let ([b], [s]) = (big, small) {
        return b.start <= s.start && s.end <= b.end;
    }
    if let [s] = small {
        let i = big.partition_point(|b| b.end < s.start);
        return big
            .get(i)
            .is_some_and(|b| b.start <= s.start && s.end <= b.end);
    }
    let mut rest = big;
    for s in small {
        let i = gallop_end(rest, s.start);
        match rest.get(i) {
            Some(b) if b.start <= s.start && s.end <= b.end => rest = &rest[i..],
            _ => return false,
        }
    }
    true
}

/// The part of canonical `a` not in canonical `b`, canonical. Linear: both
/// lists are walked once (an interval of `b` spanning several of `a` is
/// looked at once per interval of `a` it touches).
fn subtract_intervals(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut j = 0;
    for iv in a {
        while b.get(j).is_some_and(|x| x.end < iv.start) {
            j += 1;
        }
        let mut start = iv.start;
        let mut k = j;
        loop {
            match b.get(k) {
                Some(x) if x.start <= iv.end => {
                    if x.start > start {
                        out.push(Interval {
                            start,
                            end: x.start - 1,
                        });
                    }
                    if x.end >= iv.end {
                        break;
                    }
                    // `x.end < iv.end <= MAX_GNO`: no overflow
                    start = start.max(x.end + 1);
                    k += 1;
                }
                _ => {
                    out.push(Interval { start, end: iv.end });
                    break;
                }
            }
        }
    }
    out
}

impl GtidSet {
    /// The empty set.
    pub fn new() -> GtidSet {
        GtidSet::default()
    }

    /// Parses MySQL's text form (`@@gtid_executed`, `GTID_SUBTRACT()`
    /// output, `SESSION_TRACK_GTIDS`). The empty string is the empty set.
    pub fn parse(s: &str) -> Result<GtidSet, GtidError> {
        parse::parse_set(s, &Limits::NONE)
    }

    /// Parses untrusted text (a client's token) under `limits`: text that
    /// is too long, names too many UUIDs/tags or holds too many intervals
    /// is refused with [`GtidError::TooLarge`] before it is stored.
    pub fn parse_limited(s: &str, limits: &Limits) -> Result<GtidSet, GtidError> {
        parse::parse_set(s, limits)
    }

    /// Builds a canonical set from `(source, interval)` items in any order.
    pub(crate) fn from_items(mut items: Vec<(Tsid, Interval)>) -> GtidSet {
        items.sort_unstable_by(|(ta, ia), (tb, ib)| ta.cmp(tb).then(ia.start.cmp(&ib.start)));
        let mut entries: Vec<(Tsid, Vec<Interval>)> = Vec::new();
        for (tsid, iv) in items {
            match entries.last_mut() {
                Some((t, ivs)) if *t == tsid => push_merge(ivs, iv),
                _ => entries.push((tsid, vec![iv])),
            }
        }
        GtidSet { entries }
    }

    /// True when the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of transactions in the set (can exceed `u64` in theory).
    pub fn count(&self) -> u128 {
        self.entries
            .iter()
            .flat_map(|(_, ivs)| ivs)
            .map(|iv| u128::from(iv.len()))
            .sum()
    }

    /// Number of distinct sources (UUID + tag pairs).
    pub fn num_sources(&self) -> usize {
        self.entries.len()
    }

    /// The sources and their canonical interval lists, in print order.
    pub fn iter(&self) -> impl Iterator<Item = (&Tsid, &[Interval])> + '_ {
        self.entries.iter().map(|(t, ivs)| (t, ivs.as_slice()))
    }

    /// The canonical intervals of one source (empty if absent).
    pub fn intervals(&self, tsid: &Tsid) -> &[Interval] {
        match self.entries.binary_search_by(|(t, _)| t.cmp(tsid)) {
            Ok(i) => &self.entries[i].1,
            Err(_) => &[],
        }
    }

    /// Adds the transactions `start..=end` of `tsid`.
    pub fn add_interval(&mut self, tsid: Tsid, start: u64, end: u64) -> Result<(), GtidError> {
        check_gno(start)?;
        check_gno(end)?;
        if end < start {
            return Err(GtidError::ReversedInterval {
                offending: format!("{start}-{end}"),
            });
        }
        self.insert(tsid, Interval { start, end });
        Ok(())
    }

    /// Adds an already validated interval (the MariaDB carrier).
    pub(crate) fn insert_raw(&mut self, tsid: Tsid, iv: Interval) {
        self.insert(tsid, iv);
    }

    /// Adds one transaction `uuid[:tag]:gno`.
    pub fn add(&mut self, uuid: Uuid, tag: Tag, gno: u64) -> Result<(), GtidError> {
        self.add_interval(Tsid::new(uuid, tag), gno, gno)
    }

    /// Adds one (already validated) transaction.
    pub fn add_gtid(&mut self, gtid: &Gtid) {
        self.insert(
            gtid.tsid(),
            Interval {
                start: gtid.gno(),
                end: gtid.gno(),
            },
        );
    }

    fn insert(&mut self, tsid: Tsid, iv: Interval) {
        match self.entries.binary_search_by(|(t, _)| t.cmp(&tsid)) {
            Ok(i) => insert_interval(&mut self.entries[i].1, iv),
            Err(i) => self.entries.insert(i, (tsid, vec![iv])),
        }
    }

    /// True when `gtid` is in the set.
    pub fn contains_gtid(&self, gtid: &Gtid) -> bool {
        let ivs = self.intervals(&gtid.tsid());
        let i = ivs.partition_point(|iv| iv.end < gtid.gno());
        ivs.get(i).is_some_and(|iv| iv.start <= gtid.gno())
    }

    /// True when `other` is a subset of `self` (`other ⊆ self`).
    pub fn contains(&self, other: &GtidSet) -> bool {
        if other.entries.len() > self.entries.len() {
            return false;
        }
        let mut rest = self.entries.as_slice();
        for (tsid, ivs) in &other.entries {
            let found = if rest.first().is_some_and(|(t, _)| t == tsid) {
                Ok(0)
            } else {
                rest.binary_search_by(|(t, _)| t.cmp(tsid))
            };
            match found {
                Ok(i) if intervals_contain(&rest[i].1, ivs) => rest = &rest[i + 1..],
                _ => return false,
            }
        }
        true
    }

    /// Makes `self` the union `self ∪ other`.
    pub fn union(&mut self, other: &GtidSet) {
        if self.entries.is_empty() {
            self.entries.clone_from(&other.entries);
            return;
        }
        let mut missing = Vec::new();
        let mut from = 0;
        for (tsid, ivs) in &other.entries {
            match self.entries[from..].binary_search_by(|(t, _)| t.cmp(tsid)) {
                Ok(i) => {
                    from += i;
                    union_intervals(&mut self.entries[from].1, ivs);
                    from += 1;
                }
                Err(i) => {
                    from += i;
                    missing.push((*tsid, ivs.clone()));
                }
            }
        }
        if !missing.is_empty() {
            self.entries.extend(missing);
            self.entries.sort_by_key(|(tsid, _)| *tsid);
        }
    }

    /// Returns `self \ other`: the transactions of `self` that `other`
    /// lacks, canonical (so its `Display` is the normalised form). Costs
    /// `O(n + m)` over the two sets' intervals.
    #[must_use]
    pub fn difference(&self, other: &GtidSet) -> GtidSet {
        let mut entries = Vec::new();
        for (tsid, ivs) in &self.entries {
            let rest = subtract_intervals(ivs, other.intervals(tsid));
            if !rest.is_empty() {
                entries.push((*tsid, rest));
            }
        }
        GtidSet { entries }
    }

    /// Number of intervals over all sources.
    pub fn num_intervals(&self) -> usize {
        self.entries.iter().map(|(_, ivs)| ivs.len()).sum()
    }

    /// Alias of [`GtidSet::union`].
    pub fn union_with(&mut self, other: &GtidSet) {
        self.union(other);
    }

    /// Returns `self ∪ other` without modifying either.
    #[must_use]
    pub fn unioned(&self, other: &GtidSet) -> GtidSet {
        let mut out = self.clone();
        out.union(other);
        out
    }
}

impl FromStr for GtidSet {
    type Err = GtidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GtidSet::parse(s)
    }
}

impl Extend<Gtid> for GtidSet {
    fn extend<I: IntoIterator<Item = Gtid>>(&mut self, iter: I) {
        for g in iter {
            self.add_gtid(&g);
        }
    }
}

impl FromIterator<Gtid> for GtidSet {
    fn from_iter<I: IntoIterator<Item = Gtid>>(iter: I) -> Self {
        let items = iter
            .into_iter()
            .map(|g| {
                let iv = Interval {
                    start: g.gno(),
                    end: g.gno(),
                };
                (g.tsid(), iv)
            })
            .collect();
        GtidSet::from_items(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: u64, end: u64) -> Interval {
        Interval { start, end }
    }

    #[test]
    fn insert_interval_cases() {
        let mut v = vec![iv(1, 3), iv(10, 12), iv(20, 20)];
        insert_interval(&mut v, iv(5, 5));
        assert_eq!(v, [iv(1, 3), iv(5, 5), iv(10, 12), iv(20, 20)]);
        insert_interval(&mut v, iv(4, 4));
        assert_eq!(v, [iv(1, 5), iv(10, 12), iv(20, 20)]);
        insert_interval(&mut v, iv(6, 19));
        assert_eq!(v, [iv(1, 20)]);
        insert_interval(&mut v, iv(22, 22));
        insert_interval(&mut v, iv(21, 21));
        assert_eq!(v, [iv(1, 22)]);
        let mut e = Vec::new();
        insert_interval(&mut e, iv(3, 3));
        assert_eq!(e, [iv(3, 3)]);
    }

    #[test]
    fn union_intervals_general_merge() {
        let mut a: Vec<_> = (0..10).map(|k| iv(k * 10 + 1, k * 10 + 3)).collect();
        let b: Vec<_> = (0..10).map(|k| iv(k * 10 + 4, k * 10 + 9)).collect();
        union_intervals(&mut a, &b);
        assert_eq!(
            a,
            (0..10)
                .map(|k| iv(k * 10 + 1, k * 10 + 9))
                .collect::<Vec<_>>()
        );
        let c: Vec<_> = (0..10).map(|k| iv(k * 10 + 10, k * 10 + 10)).collect();
        union_intervals(&mut a, &c);
        assert_eq!(a, [iv(1, 100)]);
    }

    #[test]
    fn gallop_matches_partition_point() {
        let v: Vec<_> = (0..37).map(|k| iv(k * 4 + 1, k * 4 + 2)).collect();
        for n in 0..=v.len() {
            for gno in 0..160 {
                let want = v[..n].partition_point(|x| x.end < gno);
                assert_eq!(gallop_end(&v[..n], gno), want, "n={n} gno={gno}");
            }
        }
    }

    #[test]
    fn subtract_intervals_cases() {
        let a = [iv(1, 10), iv(20, 30)];
        assert_eq!(subtract_intervals(&a, &[]), a);
        assert_eq!(subtract_intervals(&a, &[iv(1, 30)]), []);
        assert_eq!(
            subtract_intervals(&a, &[iv(3, 4), iv(8, 22), iv(30, 40)]),
            [iv(1, 2), iv(5, 7), iv(23, 29)]
        );
        assert_eq!(subtract_intervals(&a, &[iv(11, 19)]), a);
        assert_eq!(subtract_intervals(&[], &a), []);
        assert_eq!(subtract_intervals(&[iv(5, 5)], &[iv(5, 5)]), []);
    }

    #[test]
    fn intervals_contain_cases() {
        let big = [iv(1, 5), iv(10, 20), iv(30, 30)];
        assert!(intervals_contain(&big, &[iv(2, 3), iv(10, 20), iv(30, 30)]));
        assert!(!intervals_contain(&big, &[iv(5, 10)]));
        assert!(!intervals_contain(&big, &[iv(31, 31)]));
        assert!(!intervals_contain(&big, &[iv(6, 6)]));
        assert!(intervals_contain(&big, &[]));
        assert!(!intervals_contain(&[], &[iv(1, 1)]));
    }
}
