//! Text parsers for GTID sets (`@@gtid_executed`, `SESSION_TRACK_GTIDS`)
//! and single GTIDs.
//!
//! The grammar follows MySQL's `Gtid_set::add_gtid_text`:
//!
//! ```text
//! set      := ws (entry? ws ',' ws)* entry? ws
//! entry    := uuid ws (':' ws (tag | interval) ws)*
//! interval := N ws ('-' ws M)?          1 <= N <= M <= MAX_GNO
//! tag      := [A-Za-z_][A-Za-z0-9_]{0,31}   (stored lowercase)
//! ```
//!
//! A tag applies to the intervals that follow it inside the same entry.
//! Like MySQL, empty entries (`,,`), a UUID without intervals and a tag
//! without intervals are accepted and contribute nothing. Unlike MySQL,
//! which silently drops them, reversed intervals (`5-3`) are an error.
//!
//! Under [`Limits`] the text length is checked before anything else and
//! each UUID, tag and interval is counted before it is stored, so hostile
//! text is refused having allocated at most the bounded set itself.

use crate::error::GtidError;
use crate::ids::{parse_uuid, Gtid, Tag, Tsid, Uuid};
use crate::limits::Limits;
use crate::set::{GtidSet, Interval};

/// Largest transaction number MySQL accepts (`GNO_END - 1`, i.e.
/// `2^63 - 2`): MySQL stores interval ends exclusively in a signed 64-bit
/// integer.
pub const MAX_GNO: u64 = i64::MAX as u64 - 1;

/// How many characters of offending input an error message keeps.
const CLIP_CHARS: usize = 48;

/// Shortens `s` for an error message.
pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(CLIP_CHARS) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Checks that `gno` is a valid transaction number.
pub(crate) fn check_gno(gno: u64) -> Result<(), GtidError> {
    if gno == 0 {
        Err(GtidError::ZeroGno {
            offending: "0".into(),
        })
    } else if gno > MAX_GNO {
        Err(GtidError::GnoOutOfRange {
            offending: gno.to_string(),
        })
    } else {
        Ok(())
    }
}

/// MySQL's `my_isspace` for ASCII: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_tag_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_tag_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Cursor over the input. `pos` only ever moves past ASCII bytes or up to
/// an ASCII delimiter, so it always sits on a char boundary.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
    /// Start of the current entry, for error context.
    entry: usize,
    what: &'static str,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str, what: &'static str) -> Self {
        Parser {
            s,
            pos: 0,
            entry: 0,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Advances while `pred` holds and returns the consumed text.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A syntax error showing the input around the cursor: back to the
    /// start of the current entry (at most ~40 bytes) and on to the next
    /// comma (at most ~24 bytes).
    fn syntax(&self, reason: &'static str) -> GtidError {
        let s = self.s;
        let mut from = self.entry.max(self.pos.saturating_sub(40));
        while !s.is_char_boundary(from) {
            from += 1;
        }
        let mut to = (self.pos + 24).min(s.len());
        if let Some(comma) = s[self.pos..].find(',') {
            to = to.min(self.pos + comma);
        }
        while !s.is_char_boundary(to) {
            to += 1;
        }
        let prefix = if from > self.entry { "..." } else { "" };
        let suffix = if to < s.len() && s.as_bytes()[to] != b',' {
            "..."
        } else {
            ""
        };
        GtidError::Syntax {
            what: self.what,
            offending: format!("{prefix}{}{suffix}", &s[from..to]),
            reason,
        }
    }

    fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), GtidError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(reason))
        }
    }

    fn uuid(&mut self) -> Result<Uuid, GtidError> {
        let token = self.take_while(|c| c != b':' && c != b',' && !is_ws(c));
        if token.is_empty() {
            return Err(self.syntax("expected a UUID"));
        }
        parse_uuid(token).ok_or_else(|| GtidError::BadUuid {
            offending: clip(token),
        })
    }

    fn tag(&mut self) -> Result<Tag, GtidError> {
        Tag::new(self.take_while(is_tag_char))
    }

    fn number(&mut self, reason: &'static str) -> Result<u64, GtidError> {
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.syntax(reason));
        }
        let value = digits.bytes().try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        match value {
            Some(0) => Err(GtidError::ZeroGno {
                offending: digits.into(),
            }),
            Some(n) if n <= MAX_GNO => Ok(n),
            _ => Err(GtidError::GnoOutOfRange {
                offending: clip(digits),
            }),
        }
    }

    fn interval(&mut self) -> Result<Interval, GtidError> {
        let start = self.number("expected a transaction number")?;
        self.skip_ws();
        if self.peek() != Some(b'-') {
            return Ok(Interval { start, end: start });
        }
        self.pos += 1;
        self.skip_ws();
        let end = self.number("interval end missing")?;
        if end < start {
            return Err(GtidError::ReversedInterval {
                offending: format!("{start}-{end}"),
            });
        }
        Ok(Interval { start, end })
    }
}

/// Counts UUID/tag mentions and intervals against [`Limits`].
struct Budget<'a> {
    limits: &'a Limits,
    text: &'a str,
    sources: usize,
    intervals: usize,
}

impl Budget<'_> {
    fn too_large(&self, what: &'static str, limit: usize) -> GtidError {
        GtidError::TooLarge {
            offending: clip(self.text),
            what,
            limit,
            limits: *self.limits,
        }
    }

    fn source(&mut self) -> Result<(), GtidError> {
        self.sources = self.sources.saturating_add(1);
        if self.sources > self.limits.max_sources {
            return Err(self.too_large("UUIDs/tags", self.limits.max_sources));
        }
        Ok(())
    }

    fn interval(&mut self) -> Result<(), GtidError> {
        self.intervals = self.intervals.saturating_add(1);
        if self.intervals > self.limits.max_intervals {
            return Err(self.too_large("intervals", self.limits.max_intervals));
        }
        Ok(())
    }
}

/// Parses a GTID set in MySQL's text form into `(source, interval)` items,
/// in input order, refusing text beyond `limits` before storing it.
pub(crate) fn parse_items(s: &str, limits: &Limits) -> Result<Vec<(Tsid, Interval)>, GtidError> {
    let mut budget = Budget {
        limits,
        text: s,
        sources: 0,
        intervals: 0,
    };
    if s.len() > limits.max_len {
        return Err(budget.too_large("bytes", limits.max_len));
    }
    let mut p = Parser::new(s, "GTID set");
    // grows with what was validated, never with what the text claims
    let mut items = Vec::new();
    loop {
        p.skip_ws();
        while p.peek() == Some(b',') {
            p.pos += 1;
            p.skip_ws();
        }
        if p.peek().is_none() {
            return Ok(items);
        }
        p.entry = p.pos;
        budget.source()?;
        let mut tsid = Tsid::new(p.uuid()?, Tag::UNTAGGED);
        p.skip_ws();
        while p.peek() == Some(b':') {
            p.pos += 1;
            p.skip_ws();
            match p.peek() {
                Some(c) if c.is_ascii_digit() => {
                    budget.interval()?;
                    items.push((tsid, p.interval()?));
                }
                Some(c) if is_tag_start(c) => {
                    budget.source()?;
                    tsid.tag = p.tag()?;
                }
                _ => return Err(p.syntax("expected a tag or a transaction number after ':'")),
            }
            p.skip_ws();
        }
        if !matches!(p.peek(), None | Some(b',')) {
            return Err(p.syntax("expected ',' or ':'"));
        }
    }
}

/// Parses a GTID set; see the module docs for the grammar.
pub(crate) fn parse_set(s: &str, limits: &Limits) -> Result<GtidSet, GtidError> {
    Ok(GtidSet::from_items(parse_items(s, limits)?))
}

/// Parses a single `uuid:N` or `uuid:tag:N`.
pub(crate) fn parse_gtid(s: &str) -> Result<Gtid, GtidError> {
    let mut p = Parser::new(s, "GTID");
    p.skip_ws();
    p.entry = p.pos;
    let uuid = p.uuid()?;
    p.skip_ws();
    p.expect(b':', "expected ':' after the UUID")?;
    p.skip_ws();
    let mut tag = Tag::UNTAGGED;
    if p.peek().is_some_and(is_tag_start) {
        tag = p.tag()?;
        p.skip_ws();
        p.expect(b':', "expected ':' after the tag")?;
        p.skip_ws();
    }
    let gno = p.number("expected a transaction number")?;
    p.skip_ws();
    if p.peek().is_some() {
        return Err(p.syntax("expected the end of the GTID"));
    }
    Gtid::new(uuid, tag, gno)
}
