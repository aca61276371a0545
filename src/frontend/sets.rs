//! The session's replay list of `SET` statements: which earlier entries a
//! new `SET` replaces, and the caps on the list.
//!
//! Every successful single-statement `SET` of session state is replayed on
//! each backend connection the session acquires later. A new statement
//! replaces the earlier entries whose variables it assigns again (as told by
//! [`causeway_classify::set_targets`]; only literal-only statements qualify)
//! when every entry after them is literal-only too, so that removing them
//! cannot change how a later entry evaluates. Beyond [`MAX_SETS`] entries or
//! [`MAX_SET_BYTES`] of text, a new replayable `SET` is refused before it
//! runs (1105 / HY000): never silently dropped.

use causeway_classify::set_targets;

use crate::protocol::ErrPacket;

/// Most `SET` statements a session's replay list holds.
pub const MAX_SETS: usize = 256;

/// Most bytes of `SET` text a session's replay list holds.
pub const MAX_SET_BYTES: usize = 256 * 1024;

/// Indices (ascending) of the entries of `list` that `sql` replaces.
pub fn replaced(list: &[String], sql: &str) -> Vec<usize> {
    let Some(new) = set_targets(sql) else {
        return Vec::new();
    };
    let targets: Vec<Option<Vec<String>>> = list.iter().map(|s| set_targets(s)).collect();
    // entries before the last non-literal one must stay (it may read them)
    let first_free = targets
        .iter()
        .rposition(Option::is_none)
        .map_or(0, |i| i + 1);
    targets
        .iter()
        .enumerate()
        .skip(first_free)
        .filter(|(_, t)| {
            t.as_ref()
                .is_some_and(|old| old.iter().all(|n| new.contains(n)))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Whether `sql` may join `list` (after the entries it replaces leave);
/// the error to send when it may not.
pub fn admit(list: &[String], sql: &str) -> Result<(), ErrPacket> {
    let gone = replaced(list, sql);
    let count = list.len() - gone.len() + 1;
    let bytes = list
        .iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(_, s)| s.len())
        .sum::<usize>()
        .saturating_add(sql.len());
    if count > MAX_SETS || bytes > MAX_SET_BYTES {
        return Err(ErrPacket::new(
            1105,
            "HY000",
            format!(
                "causeway: too many session SET statements to replay on new backend connections \
                 (limit: {MAX_SETS} statements, {MAX_SET_BYTES} bytes); this SET was not run. \
                 Set variables with literal values (a later SET of the same variables replaces \
                 an earlier one) or reconnect"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_later_set_of_the_same_variables_replaces() {
        let l = list(&[
            "SET sql_mode = 'ANSI'",
            "SET NAMES latin1",
            "SET time_zone = '+01:00', sql_mode = ''",
        ]);
        assert_eq!(replaced(&l, "SET sql_mode = 'TRADITIONAL'"), vec![0]);
        assert_eq!(
            replaced(&l, "SET sql_mode = '', time_zone = 'UTC'"),
            vec![0, 2]
        );
        assert_eq!(replaced(&l, "SET CHARACTER SET utf8mb4"), vec![1]);
        assert_eq!(
            replaced(&l, "SET sql_mode = CONCAT(@@sql_mode, 'x')"),
            Vec::<usize>::new()
        );
        assert_eq!(replaced(&l, "SET x = 1"), Vec::<usize>::new());
    }

    #[test]
    fn entries_a_later_expression_may_read_stay() {
        let l = list(&[
            "SET sql_mode = 'ANSI'",
            "SET @@session.y = @@sql_mode",
            "SET sql_mode = 'A'",
        ]);
        assert_eq!(replaced(&l, "SET sql_mode = 'B'"), vec![2]);
    }

    #[test]
    fn caps_refuse_before_running() {
        let mut l: Vec<String> = (0..MAX_SETS).map(|i| format!("SET v{i} = 1")).collect();
        assert!(admit(&l, "SET v0 = 2").is_ok(), "replacing keeps the count");
        let err = admit(&l, "SET w = 1").unwrap_err();
        assert_eq!((err.code, err.sqlstate()), (1105, "HY000"));
        assert!(err.message.contains("256 statements"), "{}", err.message);
        l.truncate(1);
        let big = format!("SET w = '{}'", "x".repeat(MAX_SET_BYTES));
        assert!(admit(&l, &big).is_err());
        assert!(admit(&l, "SET w = 'x'").is_ok());
    }
}
