//! The error type returned by every parser in this crate.
//!
//! Each variant carries the offending piece of input (clipped to a readable
//! length), available through [`GtidError::offending`], and its message
//! names that piece so a log line alone says what was wrong.

use crate::limits::Limits;

/// Why a GTID, tag, UUID or GTID set could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GtidError {
    /// Structural problem; `offending` is the input from the point where
    /// parsing stopped.
    #[error("invalid {what} near '{offending}': {reason}")]
    Syntax {
        /// What was being parsed: `"GTID set"` or `"GTID"`.
        what: &'static str,
        /// Input from the failure point on (clipped).
        offending: String,
        /// What was expected there.
        reason: &'static str,
    },
    /// A UUID that is not `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    #[error("bad UUID '{offending}'")]
    BadUuid {
        /// The text read as a UUID (clipped).
        offending: String,
    },
    /// A tag that is not `[a-z_][a-z0-9_]{{0,31}}`.
    #[error("bad tag '{offending}': {reason}")]
    BadTag {
        /// The tag text (clipped).
        offending: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An interval `N-M` with `M < N`.
    #[error("interval {offending} is reversed")]
    ReversedInterval {
        /// The interval as written, e.g. `5-3`.
        offending: String,
    },
    /// A transaction number of 0.
    #[error("{offending} is not a valid transaction number")]
    ZeroGno {
        /// The number as written (e.g. `0` or `000`).
        offending: String,
    },
    /// A transaction number above [`crate::MAX_GNO`].
    #[error("transaction number {offending} is out of range (maximum {max})", max = crate::MAX_GNO)]
    GnoOutOfRange {
        /// The number as written (clipped).
        offending: String,
    },
    /// The text exceeds one of the [`Limits`] it was parsed under.
    #[error(
        "GTID set '{offending}' is too large: more than {limit} {what} (a token may have {limits})"
    )]
    TooLarge {
        /// The start of the text (clipped).
        offending: String,
        /// Which bound: `"bytes"`, `"UUIDs/tags"` or `"intervals"`.
        what: &'static str,
        /// That bound's value.
        limit: usize,
        /// All the bounds in force.
        limits: Limits,
    },
}

impl GtidError {
    /// The piece of input the error is about.
    pub fn offending(&self) -> &str {
        match self {
            GtidError::Syntax { offending, .. }
            | GtidError::BadUuid { offending }
            | GtidError::BadTag { offending, .. }
            | GtidError::ReversedInterval { offending }
            | GtidError::ZeroGno { offending }
            | GtidError::GnoOutOfRange { offending }
            | GtidError::TooLarge { offending, .. } => offending,
        }
    }
}
