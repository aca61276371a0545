//! The SQL of a causal wait, per backend flavour.
//!
//! - MySQL: `SELECT WAIT_FOR_EXECUTED_GTID_SET('<missing>', t)` (0: reached).
//! - MariaDB replica: `SELECT MASTER_GTID_WAIT('<missing domains>', t)`
//!   (0: reached, -1: timed out). It waits on `gtid_slave_pos`, which is
//!   what the monitor publishes for replicas, so "contained in the view"
//!   and "the wait returned 0" mean the same thing.
//! - MariaDB writer: `MASTER_GTID_WAIT` does not count a server's own
//!   writes (they are in `gtid_binlog_pos`, not `gtid_slave_pos`). The
//!   writer is checked against its `@@gtid_binlog_pos`, read by the same
//!   statement: `SELECT IF(<binlog pos contains every missing domain>, 0,
//!   MASTER_GTID_WAIT('<missing>', t))`. The wait half covers a freshly
//!   promoted writer still applying what it received as a replica.
//!
//! A token that holds MySQL GTIDs can never be reached on MariaDB: no SQL,
//! the wait is missed at once. (No error type: that case is `None`.)

use causeway_gtid::{Flavor, GtidSet, MariadbPos};
use std::fmt::Write;
use std::time::Duration;

/// The wait statement for `missing` on a `flavor` server (`writer`: the
/// server takes writes), or `None` when it can never be reached there.
pub(crate) fn wait_sql(
    flavor: Flavor,
    missing: &GtidSet,
    timeout: Duration,
    writer: bool,
) -> Option<String> {
    let t = timeout.as_secs_f64();
    match flavor {
        Flavor::Mysql => Some(format!(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('{missing}', {t:.3})"
        )),
        Flavor::Mariadb => {
            let pos = MariadbPos::from_gtid_set(missing)?;
            let wait = format!("MASTER_GTID_WAIT('{pos}', {t:.3})");
            if !writer {
                return Some(format!("SELECT {wait}"));
            }
            Some(format!("SELECT IF({}, 0, {wait})", binlog_contains(&pos)))
        }
    }
}

/// A SQL condition true when `@@GLOBAL.gtid_binlog_pos` holds every domain
/// of `pos` at a seq ≥ its own.
fn binlog_contains(pos: &MariadbPos) -> String {
    const P: &str = "CONCAT(',', REPLACE(@@GLOBAL.gtid_binlog_pos, ' ', ''))";
    let mut cond = String::from("1");
    for (d, _, seq) in pos.iter() {
        let _ = write!(
            cond,
            " AND LOCATE(',{d}-', {P}) > 0 AND CAST(SUBSTRING_INDEX(SUBSTRING_INDEX(\
             SUBSTRING_INDEX({P}, ',{d}-', -1), ',', 1), '-', -1) AS UNSIGNED) >= {seq}"
        );
    }
    cond
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_per_flavour() {
        let t = Duration::from_millis(1500);
        let m = MariadbPos::parse("0-1-7,2-1-3").unwrap().to_gtid_set();
        assert_eq!(
            wait_sql(Flavor::Mariadb, &m, t, false).as_deref(),
            Some("SELECT MASTER_GTID_WAIT('0-0-7,2-0-3', 1.500)")
        );
        let w = wait_sql(Flavor::Mariadb, &m, t, true).unwrap();
        assert!(w.starts_with("SELECT IF(1 AND LOCATE(',0-',"), "{w}");
        assert!(
            w.ends_with(">= 3, 0, MASTER_GTID_WAIT('0-0-7,2-0-3', 1.500))"),
            "{w}"
        );
        let mysql = GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:5").unwrap();
        assert_eq!(wait_sql(Flavor::Mariadb, &mysql, t, false), None);
        assert_eq!(
            wait_sql(Flavor::Mysql, &mysql, t, false).as_deref(),
            Some("SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:5', 1.500)")
        );
    }
}
