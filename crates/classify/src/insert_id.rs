//! Statements that read connection state a pooled backend connection may
//! hold for another client: `LAST_INSERT_ID()` / `@@identity` /
//! `@@last_insert_id`, and `SQL_CALC_FOUND_ROWS` (whose `FOUND_ROWS()` the
//! next statement reads on the same connection). A plain case-insensitive
//! search of the text: a hit inside a string literal or a comment costs the
//! session one extra round trip or one held connection, never a wrong
//! answer, so no lexing is needed.

/// Whether `sql` may read `LAST_INSERT_ID()` (also `@@identity` and
/// `@@last_insert_id`).
pub fn reads_last_insert_id(sql: &[u8]) -> bool {
    contains_ci(sql, b"last_insert_id") || contains_ci(sql, b"identity")
}

/// Whether `sql` asks for `SQL_CALC_FOUND_ROWS`.
pub fn calcs_found_rows(sql: &[u8]) -> bool {
    contains_ci(sql, b"sql_calc_found_rows")
}

/// Case-insensitive (ASCII) search of lower-case `needle` in `hay`.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some(first) = needle.first() else {
        return true;
    };
    hay.windows(needle.len()).any(|w| {
        w.first().map(u8::to_ascii_lowercase) == Some(*first)
            && w.iter()
                .zip(needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_spelling() {
        for sql in [
            "SELECT LAST_INSERT_ID()",
            "select last_insert_id() as id",
            "INSERT INTO c (p) VALUES (Last_Insert_Id())",
            "SELECT @@identity",
            "SELECT @@session.last_insert_id",
            "UPDATE t SET id = LAST_INSERT_ID(id + 1)",
        ] {
            assert!(reads_last_insert_id(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "SELECT insert_id FROM t",
            "",
        ] {
            assert!(!reads_last_insert_id(sql.as_bytes()), "{sql}");
        }
        assert!(calcs_found_rows(
            b"SELECT sql_calc_found_rows * FROM t LIMIT 1"
        ));
        assert!(!calcs_found_rows(b"SELECT FOUND_ROWS()"));
        assert!(!reads_last_insert_id(&[0xff, 0xfe, b'i', b'd']));
    }
}
