//! Size and complexity bounds for GTID sets that come from untrusted
//! text (a client's consistency token), checked by the parser *before* it
//! allocates anything for the offending part.
//!
//! Real tokens hold a handful of intervals; a hostile one (megabytes of
//! disjoint intervals) would otherwise cost memory here and CPU on every
//! server it is shown to.

/// Bounds on a GTID set's text and shape. [`Limits::TOKEN`] is what
/// causeway accepts from clients; [`Limits::NONE`] is for server output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Longest accepted text, in bytes.
    pub max_len: usize,
    /// Most UUID and tag mentions (each `uuid` entry and each `:tag`
    /// counts once, as written).
    pub max_sources: usize,
    /// Most intervals (`N` or `N-M`), in total, as written.
    pub max_intervals: usize,
}

impl Limits {
    /// The bounds of a client token: 64 KiB of text, 256 UUIDs/tags,
    /// 4096 intervals.
    pub const TOKEN: Limits = Limits {
        max_len: 64 * 1024,
        max_sources: 256,
        max_intervals: 4096,
    };

    /// No bounds (server-provided sets such as `@@gtid_executed`).
    pub const NONE: Limits = Limits {
        max_len: usize::MAX,
        max_sources: usize::MAX,
        max_intervals: usize::MAX,
    };
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at most {} bytes, {} UUIDs/tags and {} intervals",
            self.max_len, self.max_sources, self.max_intervals
        )
    }
}
