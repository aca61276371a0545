//! causeway-gtid: MySQL GTID sets as `@@gtid_executed` prints them,
//! including MySQL 8.3+ tagged GTIDs. Pure logic, no I/O.
//!
//! ```
//! use causeway_gtid::GtidSet;
//!
//! let executed: GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:tag1:1-3,\n\
//!                          4e11fa47-71ca-11e1-9e33-c80aa9429562:7"
//!     .parse()
//!     .unwrap();
//! let token = GtidSet::parse("3E11FA47-71CA-11E1-9E33-C80AA9429562:2-4").unwrap();
//! assert!(executed.contains(&token));
//! assert_eq!(
//!     executed.to_string(),
//!     "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:tag1:1-3,\
//!      4e11fa47-71ca-11e1-9e33-c80aa9429562:7"
//! );
//! ```
//!
//! MariaDB positions (`domain-server-seq`) are parsed by [`MariadbPos`]
//! and carried inside a [`GtidSet`] ([`parse_token`], [`token_text`]; see
//! the `mariadb` module for the encoding and why containment is
//! `MASTER_GTID_WAIT`'s rule).
//!
//! Modules: [`ids`] (UUID, tag, source, single GTID), `parse` (text
//! parsers), `limits` ([`Limits`] for untrusted text), `set` ([`GtidSet`]
//! operations), `display` (canonical printing),
//! `error` ([`GtidError`]).

mod display;
mod error;
pub mod ids;
mod limits;
mod mariadb;
mod parse;
mod set;

pub use error::GtidError;
pub use ids::{Gtid, Tag, Tsid, Uuid, MAX_TAG_LEN};
pub use limits::Limits;
pub use mariadb::{looks_mariadb, parse_token, token_text, Flavor, MariadbPos};
pub use parse::MAX_GNO;
pub use set::{GtidSet, Interval};

/// Parses a single UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, any case).
pub fn parse_uuid(s: &str) -> Result<Uuid, GtidError> {
    Uuid::parse(s)
}
