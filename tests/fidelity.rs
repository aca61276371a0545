//! Proxy-core fidelity against real MySQL: the same statements sent directly
//! to the primary and through causeway must give the client exactly the
//! same column definitions, values, counters and errors.

#[path = "support/mod.rs"]
mod support;

use mysql_async::prelude::*;
use mysql_async::Value;
use support::dump::{self, Reply};

/// Runs `sql` on both connections (text protocol) and checks they agree.
async fn same_text(
    direct: &mut mysql_async::Conn,
    proxied: &mut mysql_async::Conn,
    sql: &str,
) -> Reply {
    let a = dump::text(direct, sql).await;
    let b = dump::text(proxied, sql).await;
    assert_eq!(a, b, "text protocol differs for: {sql}");
    b
}

async fn same_binary(
    direct: &mut mysql_async::Conn,
    proxied: &mut mysql_async::Conn,
    sql: &str,
    params: Vec<Value>,
) -> Reply {
    let a = dump::binary(direct, sql, params.clone()).await;
    let b = dump::binary(proxied, sql, params).await;
    assert_eq!(a, b, "binary protocol differs for: {sql}");
    b
}

const ALL_TYPES: &str = "CREATE TABLE all_types (
  id INT PRIMARY KEY AUTO_INCREMENT,
  c_tinyint TINYINT, c_utinyint TINYINT UNSIGNED, c_smallint SMALLINT,
  c_mediumint MEDIUMINT, c_int INT UNSIGNED, c_bigint BIGINT, c_ubigint BIGINT UNSIGNED,
  c_decimal DECIMAL(30,10), c_float FLOAT, c_double DOUBLE, c_bit BIT(10), c_bool BOOL,
  c_date DATE, c_datetime DATETIME(6), c_timestamp TIMESTAMP(3) NULL, c_time TIME(6), c_year YEAR,
  c_char CHAR(10), c_varchar VARCHAR(100), c_binary BINARY(4), c_varbinary VARBINARY(10),
  c_tinyblob TINYBLOB, c_blob BLOB, c_mediumblob MEDIUMBLOB, c_longblob LONGBLOB,
  c_tinytext TINYTEXT, c_text TEXT, c_mediumtext MEDIUMTEXT, c_longtext LONGTEXT,
  c_enum ENUM('a','b','c'), c_set SET('x','y','z'), c_json JSON, c_geom GEOMETRY,
  c_latin1 VARCHAR(20) CHARACTER SET latin1, c_bin VARCHAR(20) COLLATE utf8mb4_bin
)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_type_null_zero_dates_and_a_20mb_blob() {
    let db = support::unique_db("types");
    let proxy = support::start_proxy().await;
    let mut direct = support::direct_conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    direct.query_drop(format!("USE {db}")).await.unwrap();
    direct.query_drop(ALL_TYPES).await.unwrap();
    direct
        .query_drop("SET SESSION sql_mode = ''")
        .await
        .unwrap();
    direct
        .query_drop(
            "INSERT INTO all_types VALUES (NULL, -128, 255, -32768, 8388607, 4294967295,
             -9223372036854775808, 18446744073709551615, -12345678901234567890.0123456789,
             3.25, -2.5e-300, b'1010101010', TRUE, '2024-02-29', '2024-02-29 23:59:59.123456',
             '2038-01-19 03:14:07.999', '-838:59:59.000000', 2155, 'chär', 'héllo 🦀 wörld',
             x'00ff00ff', x'cafe', x'01', x'0203', x'0405', x'0607', 'tiny', 'text', 'medium',
             'long', 'b', 'x,z', '{\"a\": [1, 2.5, null, \"ü\"]}', ST_GeomFromText('POINT(1 2)'),
             'latin1 é', 'BinCase')",
        )
        .await
        .unwrap();
    // a row of NULLs and a row of zero dates (sql_mode = '')
    direct
        .query_drop("INSERT INTO all_types (id) VALUES (NULL)")
        .await
        .unwrap();
    direct
        .query_drop(
            "INSERT INTO all_types (c_date, c_datetime, c_timestamp, c_time, c_year) \
             VALUES ('0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '00:00:00', 0000)",
        )
        .await
        .unwrap();
    // 20 MiB + 1: a row larger than one 16 MiB protocol packet, both ways
    let blob: Vec<u8> = (0..20 * 1024 * 1024 + 1).map(|i| (i % 251) as u8).collect();
    support::sync_replicas().await;
    let mut proxied = proxy.conn().await;
    proxied.query_drop(format!("USE {db}")).await.unwrap();
    proxied
        .exec_drop(
            "INSERT INTO all_types (c_longblob) VALUES (?)",
            (blob.clone(),),
        )
        .await
        .unwrap();

    let q = "SELECT * FROM all_types ORDER BY id";
    let text = same_text(&mut direct, &mut proxied, q).await.unwrap();
    assert_eq!(text[0].rows.len(), 4);
    assert_eq!(text[0].columns.len(), 36);
    assert_eq!(text[0].rows[1][1], Value::NULL, "NULLs survive");
    assert_eq!(
        text[0].rows[3][25],
        Value::Bytes(blob.clone()),
        "20 MB BLOB intact"
    );
    assert_eq!(
        text[0].rows[0][19],
        Value::Bytes("héllo 🦀 wörld".as_bytes().to_vec()),
        "utf8mb4 intact"
    );
    let bin = same_binary(&mut direct, &mut proxied, q, vec![])
        .await
        .unwrap();
    assert_eq!(bin[0].rows[3][25], Value::Bytes(blob));
    assert!(matches!(
        bin[0].rows[0][14],
        Value::Date(2024, 2, 29, 23, 59, 59, 123456)
    ));
    assert_eq!(bin[0].columns, text[0].columns);
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affected_rows_insert_ids_warnings_and_info() {
    let db = support::unique_db("counters");
    let proxy = support::start_proxy().await;
    let mut direct = support::direct_conn().await;
    let mut proxied = proxy.conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    for c in [&mut direct, &mut proxied] {
        c.query_drop(format!("USE {db}")).await.unwrap();
    }
    direct
        .query_drop("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v TINYINT)")
        .await
        .unwrap();
    support::sync_replicas().await;
    let sql = "INSERT INTO t (v) VALUES (1), (2), (3)";
    let a = dump::text(&mut direct, sql).await.unwrap();
    let ins = dump::text(&mut proxied, sql).await.unwrap();
    // the two runs inserted different ids; everything else is the same
    assert_eq!(a[0].last_insert_id, Some(1));
    assert_eq!(ins[0].last_insert_id, Some(4));
    assert_eq!(
        (&a[0].info, a[0].affected_rows),
        (&ins[0].info, ins[0].affected_rows)
    );
    assert_eq!(ins[0].affected_rows, 3);
    assert_eq!(ins[0].info, "Records: 3  Duplicates: 0  Warnings: 0");
    proxied
        .query_drop("SET SESSION sql_mode = ''")
        .await
        .unwrap();
    let upd = dump::text(&mut proxied, "UPDATE t SET v = 300 WHERE id > 0")
        .await
        .unwrap();
    assert_eq!(upd[0].affected_rows, 6);
    assert!(upd[0].warnings > 0, "out-of-range warnings are reported");
    assert!(upd[0].info.starts_with("Rows matched: 6  Changed: 6"));
    let w = dump::text(&mut proxied, "SHOW WARNINGS").await.unwrap();
    assert_eq!(w[0].rows.len(), 6, "the session sees its own warnings");
    let w = dump::text(&mut direct, "SHOW WARNINGS").await.unwrap();
    assert_eq!(w[0].rows.len(), 0, "and no other session's");
    let w = same_text(&mut direct, &mut proxied, "SELECT CAST('12abc' AS SIGNED)")
        .await
        .unwrap();
    assert_eq!(w[0].warnings, 1, "warnings of a result set are reported");
    let w = same_text(&mut direct, &mut proxied, "SHOW WARNINGS")
        .await
        .unwrap();
    assert_eq!(w[0].rows[0][1], Value::Bytes(b"1292".to_vec()));
    let r = dump::text(&mut proxied, "INSERT INTO t (v) VALUES (9)")
        .await
        .unwrap();
    let id = r[0].last_insert_id.expect("insert id");
    let li = dump::text(&mut proxied, "SELECT LAST_INSERT_ID()")
        .await
        .unwrap();
    assert_eq!(li[0].rows[0][0], Value::Bytes(id.to_string().into_bytes()));
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_results_from_call_and_multi_statements() {
    let db = support::unique_db("multi");
    let proxy = support::start_proxy().await;
    let mut direct = support::direct_conn().await;
    let mut proxied = proxy.conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    for c in [&mut direct, &mut proxied] {
        c.query_drop(format!("USE {db}")).await.unwrap();
    }
    direct
        .query_drop(
            "CREATE PROCEDURE two_sets(IN n INT) BEGIN \
             SELECT n AS a, 'x' AS b; SELECT n * 2 AS c UNION ALL SELECT n * 3; END",
        )
        .await
        .unwrap();
    support::sync_replicas().await;
    let r = same_text(&mut direct, &mut proxied, "CALL two_sets(7)")
        .await
        .unwrap();
    assert_eq!(
        r.len(),
        2,
        "two result sets (the CALL's own OK ends the last)"
    );
    assert_eq!(
        r[1].rows,
        vec![
            vec![Value::Bytes(b"14".to_vec())],
            vec![Value::Bytes(b"21".to_vec())]
        ]
    );
    let r = same_binary(
        &mut direct,
        &mut proxied,
        "CALL two_sets(?)",
        vec![Value::Int(5)],
    )
    .await
    .unwrap();
    assert_eq!(r[0].rows[0][0], Value::Int(5));
    let r = same_text(
        &mut direct,
        &mut proxied,
        "SELECT 1; SELECT 'two', NULL; DO 3",
    )
    .await
    .unwrap();
    assert_eq!(
        r.len(),
        2,
        "mysql_async folds the trailing DO's OK into the last set"
    );
    assert_eq!(
        r[1].rows,
        vec![vec![Value::Bytes(b"two".to_vec()), Value::NULL]]
    );
    // an error in the middle ends the reply with that error
    // (mysql_async reports it lazily; both sides must behave the same)
    let first = same_text(
        &mut direct,
        &mut proxied,
        "SELECT 1; SELECT * FROM no_such_table; SELECT 3",
    )
    .await;
    if first.is_ok() {
        let pending = same_text(&mut direct, &mut proxied, "SELECT 0").await;
        assert_eq!(pending.unwrap_err().0, 1146, "the error reaches the client");
    }
    // and the connection is still usable
    let r = same_text(&mut direct, &mut proxied, "SELECT 42")
        .await
        .unwrap();
    assert_eq!(r[0].rows[0][0], Value::Bytes(b"42".to_vec()));
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_with_every_parameter_type() {
    let proxy = support::start_proxy().await;
    let mut direct = support::direct_conn().await;
    let mut proxied = proxy.conn().await;
    let params = vec![
        Value::NULL,
        Value::Int(-42),
        Value::UInt(u64::MAX),
        Value::Float(1.5),
        Value::Double(-1e300),
        Value::Bytes("ünïcødé 🦀".as_bytes().to_vec()),
        Value::Bytes(vec![0, 1, 2, 255]),
        Value::Date(2024, 2, 29, 13, 14, 15, 999_999),
        Value::Date(2024, 1, 2, 0, 0, 0, 0),
        Value::Time(true, 1, 2, 3, 4, 5),
        Value::Int(0),
    ];
    let sql = "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";
    let r = same_binary(&mut direct, &mut proxied, sql, params.clone())
        .await
        .unwrap();
    assert_eq!(r[0].rows.len(), 1);
    assert_eq!(r[0].rows[0][0], Value::NULL);
    assert_eq!(r[0].rows[0][1], Value::Int(-42));
    assert_eq!(
        r[0].rows[0][5],
        Value::Bytes("ünïcødé 🦀".as_bytes().to_vec())
    );
    // the same statement executed again (cached by the client) still works
    let r2 = same_binary(&mut direct, &mut proxied, sql, params)
        .await
        .unwrap();
    assert_eq!(r, r2);
    // a bad prepare is the server's error
    let e = same_binary(&mut direct, &mut proxied, "SELEC ?", vec![Value::Int(1)]).await;
    assert_eq!(e.unwrap_err().0, 1064);
    // statements are closed and re-prepared without leaking ids
    for i in 0..50 {
        let stmt = proxied.prep(format!("SELECT {i} + ?")).await.unwrap();
        let v: Option<i64> = proxied.exec_first(&stmt, (1,)).await.unwrap();
        assert_eq!(v, Some(i + 1));
        proxied.close(stmt).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_pass_through_with_code_state_and_message() {
    let db = support::unique_db("errs");
    let proxy = support::start_proxy().await;
    let mut direct = support::direct_conn().await;
    let mut proxied = proxy.conn().await;
    direct
        .query_drop(format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    for c in [&mut direct, &mut proxied] {
        c.query_drop(format!("USE {db}")).await.unwrap();
    }
    direct
        .query_drop("CREATE TABLE u (id INT PRIMARY KEY)")
        .await
        .unwrap();
    direct.query_drop("INSERT INTO u VALUES (1)").await.unwrap();
    support::sync_replicas().await;
    let cases = [
        ("INSERT INTO u VALUES (1)", 1062, "23000"),
        ("SELEKT 1", 1064, "42000"),
        ("SELECT * FROM missing_table", 1146, "42S02"),
        ("SELECT JSON_EXTRACT('{', '$')", 3141, "22032"),
    ];
    for (sql, code, state) in cases {
        let e = same_text(&mut direct, &mut proxied, sql).await.unwrap_err();
        assert_eq!((e.0, e.1.as_str()), (code, state), "{sql}: {}", e.2);
        let e = dump::binary(&mut proxied, sql, ()).await;
        assert_eq!(e.unwrap_err().0, code, "{sql} prepared");
    }
    let ok = same_text(&mut direct, &mut proxied, "SELECT COUNT(*) FROM u")
        .await
        .unwrap();
    assert_eq!(ok[0].rows[0][0], Value::Bytes(b"1".to_vec()));
    direct
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
}
