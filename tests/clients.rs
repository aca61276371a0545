//! Real clients through causeway against real MySQL: the `mysql` CLI (its
//! output must be byte-identical to a direct run), a PyMySQL round trip
//! (tests/py/roundtrip.py, output compared with a direct run), and a raw
//! protocol client that pipelines several commands (and a 17 MB one) in a
//! single write and checks every reply arrives, in order, and right.

#[path = "support/mod.rs"]
mod support;

use causeway::backend::BackendConn;
use causeway::protocol::messages::{read_lenenc, read_lenenc_str};
use mysql_async::prelude::*;
use mysql_common::constants::CapabilityFlags;
use std::time::Duration;
use support::raw::{cmd, RawLogin};

/// Output of one client process.
#[derive(Debug, PartialEq)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(mut cmd: tokio::process::Command) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("client process timed out")
        .expect("starting client process");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `mysql` CLI as app against `port`, running `sql` with `extra` flags.
async fn mysql_cli(port: u16, extra: &[&str], sql: &str) -> Run {
    let mut cmd = support::topology().dist().mysql_client_tokio_command();
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("-h127.0.0.1")
        .arg(format!("-P{port}"))
        .arg("-uapp")
        .arg("-papppw")
        .arg("--default-character-set=utf8mb4")
        .args(extra)
        .arg("-e")
        .arg(sql);
    run(cmd).await
}

/// Replaces `(0.01 sec)` timings (which legitimately differ) by `(T sec)`.
fn strip_timings(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(end) = rest.find(" sec)") {
        match rest[..end].rfind('(') {
            Some(open)
                if rest[open + 1..end]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.') =>
            {
                out.push_str(&rest[..open]);
                out.push_str("(T sec)");
            }
            _ => out.push_str(&rest[..end + 5]),
        }
        rest = &rest[end + 5..];
    }
    out.push_str(rest);
    out
}

/// A script that (re)creates schema `db` and ends with an error; run once
/// directly and once through causeway, so auto-increment ids match.
fn cli_script(db: &str) -> String {
    format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; USE {db};
CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50), amount DECIMAL(10,2),
  created DATE, note TEXT, raw VARBINARY(8)) CHARACTER SET utf8mb4;
INSERT INTO t (name, amount, created, note, raw) VALUES
  ('alice', 10.50, '2024-01-01', NULL, x'00ff'),
  ('bob', -3.25, '2024-02-29', 'tab\\there', NULL),
  ('çé 🦀', 0, NULL, 'multi\\nline', x'41');
SELECT ROW_COUNT(), LAST_INSERT_ID();
SELECT * FROM t ORDER BY id;
UPDATE t SET amount = amount * 2 WHERE id > 1;
SELECT ROW_COUNT();
SELECT DATABASE(), CURRENT_USER(), @@autocommit, @@session.sql_mode;
SELECT 1/0;
INSERT INTO t (name) VALUES (REPEAT('x', 40));
SHOW COLUMNS FROM t;
SELECT created IS NULL AS no_date, COUNT(*), SUM(amount) FROM t GROUP BY no_date ORDER BY no_date;
SELECT * FROM missing_table;
SELECT 'not reached';"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cli_output_is_byte_identical_to_a_direct_run() {
    let proxy = support::start_proxy().await;
    let primary = support::topology().primary().port();
    let db = support::unique_db("cli");
    let script = cli_script(&db);

    for flags in [
        &["--batch", "--show-warnings"][..],
        &["--batch", "--show-warnings", "-vvv"][..],
        &["--table", "--show-warnings", "--column-type-info"][..],
    ] {
        // the schema exists before each run, so both DROPs behave the same
        let mut c = support::direct_conn().await;
        c.query_drop(format!("CREATE DATABASE IF NOT EXISTS {db}"))
            .await
            .unwrap();
        let direct = mysql_cli(primary, flags, &script).await;
        c.query_drop(format!("CREATE DATABASE IF NOT EXISTS {db}"))
            .await
            .unwrap();
        let proxied = mysql_cli(proxy.port(), flags, &script).await;
        assert_eq!(direct.code, Some(1), "direct run {flags:?}: {direct:?}");
        assert!(
            direct.stderr.contains(&format!(
                "ERROR 1146 (42S02) at line 17: Table '{db}.missing_table' doesn't exist"
            )),
            "direct stderr {flags:?}: {}",
            direct.stderr
        );
        assert!(
            direct.stdout.contains("Division by 0") && direct.stdout.contains("çé 🦀"),
            "direct stdout {flags:?}: {}",
            direct.stdout
        );
        assert!(!direct.stdout.contains("not reached"));
        let direct = Run {
            stdout: strip_timings(&direct.stdout),
            ..direct
        };
        let proxied = Run {
            stdout: strip_timings(&proxied.stdout),
            ..proxied
        };
        assert_eq!(
            proxied.code, direct.code,
            "exit code differs for {flags:?}: {proxied:?}"
        );
        assert_eq!(
            proxied.stderr, direct.stderr,
            "stderr differs for {flags:?}"
        );
        assert_eq!(
            proxied.stdout, direct.stdout,
            "stdout differs for {flags:?}"
        );
    }
    let mut c = support::direct_conn().await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// Runs tests/py/roundtrip.py against `port` in schema `db`.
async fn roundtrip_py(port: u16, db: &str) -> Run {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/roundtrip.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(script)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg("app")
        .arg("apppw")
        .arg(db);
    let r = run(cmd).await;
    assert!(
        !r.stderr.contains("PYMYSQL_MISSING"),
        "PyMySQL is required for this test: `python3 -m pip install pymysql` (integration/test.sh installs it)"
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_round_trip_matches_a_direct_run() {
    let proxy = support::start_proxy().await;
    let primary = support::topology().primary().port();
    let direct_db = support::unique_db("py_direct");
    let proxied_db = support::unique_db("py_proxied");
    let mut c = support::direct_conn().await;
    for db in [&direct_db, &proxied_db] {
        c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    }

    // the version announced by a fresh proxy is covered by
    // `a_fresh_proxy_announces_the_primary_version`; let this one learn it
    let mut warm = proxy.conn().await;
    warm.query_drop("DO 1").await.unwrap();
    warm.disconnect().await.unwrap();

    let direct = roundtrip_py(primary, &direct_db).await;
    assert_eq!(direct.code, Some(0), "direct run failed: {}", direct.stderr);
    let proxied = roundtrip_py(proxy.port(), &proxied_db).await;
    assert_eq!(
        proxied.code,
        Some(0),
        "run through causeway failed: {}\n{}",
        proxied.stderr,
        proxied.stdout
    );

    let (dv, dout) = direct.stdout.split_once('\n').expect("version line");
    let (pv, pout) = proxied.stdout.split_once('\n').expect("version line");
    assert_eq!(
        pv,
        format!("{dv}-causeway"),
        "causeway announces the primary's version"
    );
    assert!(dout.ends_with("done\n"), "direct output: {dout}");
    assert!(dout.contains("1048576 bytes"), "1 MB blob row: {dout}");
    assert!(dout.contains("error ProgrammingError: (1146,"), "{dout}");
    // the schema name appears in outputs (DATABASE(), errors); align it
    let pout = pout.replace(&proxied_db, &direct_db);
    for (i, (d, p)) in dout.lines().zip(pout.lines()).enumerate() {
        assert_eq!(p, d, "line {} differs (direct vs causeway)", i + 2);
    }
    assert_eq!(pout.lines().count(), dout.lines().count());

    for db in [&direct_db, &proxied_db] {
        c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
    }
}

/// The greeting of the very first client of a new proxy must carry the
/// primary's version (clients pick features and SQL dialect by it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_fresh_proxy_announces_the_primary_version() {
    let mut direct = support::direct_conn().await;
    let version: String = direct
        .query_first("SELECT @@version")
        .await
        .unwrap()
        .unwrap();
    let proxy = support::start_proxy().await;
    let conn = raw_conn(&proxy, CapabilityFlags::CLIENT_DEPRECATE_EOF).await;
    assert_eq!(
        conn.version,
        format!("{version}-causeway"),
        "greeting of a fresh proxy"
    );
}

/// One reply read from a raw connection.
#[derive(Debug, PartialEq)]
enum Reply {
    /// OK packet: affected rows.
    Ok(u64),
    /// ERR packet: code and message.
    Err(u16, String),
    /// A text result set: column names and rows (None for NULL).
    Rows(Vec<String>, Vec<Vec<Option<Vec<u8>>>>),
}

/// Reads one whole reply (OK, ERR or a text result set).
async fn read_reply(conn: &mut BackendConn) -> Reply {
    let deprecate_eof = conn.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    let first = conn.io.read_packet().await.expect("reply");
    let p = &first.payload[..];
    match p[0] {
        0x00 => Reply::Ok(read_lenenc(&p[1..]).expect("affected rows").0),
        0xFF => {
            let code = u16::from_le_bytes([p[1], p[2]]);
            // '#', 5-byte SQLSTATE, message
            Reply::Err(code, String::from_utf8_lossy(&p[9..]).into_owned())
        }
        _ => {
            let (ncols, _) = read_lenenc(p).expect("column count");
            let mut names = Vec::new();
            for _ in 0..ncols {
                let def = conn.io.read_packet().await.expect("column definition");
                // catalog, schema, table, org_table, name
                let mut at = 0;
                let mut fields = Vec::new();
                for _ in 0..5 {
                    let (s, n) = read_lenenc_str(&def.payload[at..]).expect("column field");
                    fields.push(String::from_utf8_lossy(s).into_owned());
                    at += n;
                }
                assert_eq!(fields[0], "def", "catalog of a column definition");
                names.push(fields.pop().unwrap());
            }
            if !deprecate_eof {
                let eof = conn.io.read_packet().await.expect("EOF after columns");
                assert!(eof.payload[0] == 0xFE && eof.payload.len() < 9, "EOF");
            }
            let mut rows = Vec::new();
            loop {
                let r = conn.io.read_packet().await.expect("row or terminator");
                let limit = if deprecate_eof { 0xFF_FFFF } else { 9 };
                if r.payload[0] == 0xFE && r.payload.len() < limit {
                    break;
                }
                assert_ne!(r.payload[0], 0xFF, "error inside a result set");
                let mut at = 0;
                let mut row = Vec::new();
                for _ in 0..ncols {
                    if r.payload[at] == 0xFB {
                        row.push(None);
                        at += 1;
                    } else {
                        let (s, n) = read_lenenc_str(&r.payload[at..]).expect("row value");
                        row.push(Some(s.to_vec()));
                        at += n;
                    }
                }
                assert_eq!(at, r.payload.len(), "row fully consumed");
                rows.push(row);
            }
            Reply::Rows(names, rows)
        }
    }
}

/// A raw protocol connection to the proxy as app.
async fn raw_conn(proxy: &support::TestProxy, caps: CapabilityFlags) -> BackendConn {
    RawLogin {
        caps,
        ..RawLogin::app(proxy.addr.to_string())
    }
    .connect()
    .await
}

fn row(vals: &[&str]) -> Vec<Option<Vec<u8>>> {
    vals.iter().map(|v| Some(v.as_bytes().to_vec())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_get_their_replies_in_order() {
    let proxy = support::start_proxy().await;
    let db = support::unique_db("pipe");
    let mut c = support::direct_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();

    for caps in [
        CapabilityFlags::CLIENT_DEPRECATE_EOF,
        CapabilityFlags::empty(),
    ] {
        let mut conn = raw_conn(&proxy, caps).await;
        assert_eq!(
            conn.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF),
            !caps.is_empty()
        );
        let cmds: Vec<Vec<u8>> = vec![
            cmd(0x03, b"SET @a = 1"),
            cmd(0x0E, b""),
            cmd(0x03, b"DO 1"),
            cmd(0x03, b"SELECT * FROM no_such_table"),
            cmd(0x02, db.as_bytes()),
            cmd(0x03, b"SELECT 7"),
            cmd(
                0x03,
                b"CREATE TABLE IF NOT EXISTS p (id INT PRIMARY KEY, v TEXT)",
            ),
            cmd(0x03, b"REPLACE INTO p VALUES (1, 'one'), (2, NULL)"),
            cmd(0x0E, b""),
            cmd(0x03, b"SELECT @a, DATABASE(), v FROM p ORDER BY id"),
            cmd(0x02, b"no_such_schema_anywhere"),
            cmd(0x03, b"SELECT DATABASE()"),
        ];
        for p in &cmds {
            let mut seq = 0;
            conn.io.queue(&mut seq, p);
        }
        conn.io.flush().await.expect("one write of all commands");

        assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "SET");
        assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "PING");
        assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "DO 1");
        assert_eq!(
            read_reply(&mut conn).await,
            Reply::Err(1046, "No database selected".into()),
            "a table without a schema"
        );
        assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "INIT_DB");
        assert_eq!(
            read_reply(&mut conn).await,
            Reply::Rows(vec!["7".into()], vec![row(&["7"])]),
            "SELECT 7"
        );
        assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "CREATE TABLE");
        let replaced = read_reply(&mut conn).await;
        assert!(
            matches!(replaced, Reply::Ok(2) | Reply::Ok(4)),
            "REPLACE: {replaced:?}"
        );
        assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "PING");
        assert_eq!(
            read_reply(&mut conn).await,
            Reply::Rows(
                vec!["@a".into(), "DATABASE()".into(), "v".into()],
                vec![
                    row(&["1", &db, "one"]),
                    vec![Some(b"1".to_vec()), Some(db.as_bytes().to_vec()), None],
                ]
            ),
            "SELECT @a, DATABASE(), v"
        );
        match read_reply(&mut conn).await {
            Reply::Err(1049, m) => assert!(m.contains("no_such_schema_anywhere"), "{m}"),
            other => panic!("expected error 1049, got {other:?}"),
        }
        assert_eq!(
            read_reply(&mut conn).await,
            Reply::Rows(vec!["DATABASE()".into()], vec![row(&[&db])]),
            "a failed INIT_DB keeps the schema"
        );
        assert!(
            conn.io.rbuf.is_empty(),
            "no stray bytes after the last reply"
        );

        // COM_QUIT pipelined after a query: the reply, then the close
        let mut seq = 0;
        conn.io.queue(&mut seq, &cmd(0x03, b"SELECT 'last'"));
        let mut seq = 0;
        conn.io.queue(&mut seq, &cmd(0x01, b""));
        conn.io.flush().await.unwrap();
        assert_eq!(
            read_reply(&mut conn).await,
            Reply::Rows(vec!["last".into()], vec![row(&["last"])])
        );
        assert!(
            conn.io.read_packet().await.is_err(),
            "the proxy closes after COM_QUIT"
        );
    }
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_17_mb_query_pipelined_behind_a_ping() {
    let proxy = support::start_proxy().await;
    let db = support::unique_db("pipebig");
    let mut c = support::direct_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!(
        "CREATE TABLE {db}.big (id INT PRIMARY KEY, v LONGTEXT)"
    ))
    .await
    .unwrap();

    let mut conn = raw_conn(&proxy, CapabilityFlags::CLIENT_DEPRECATE_EOF).await;
    let unit = "0123456789abcdef";
    let reps = 17 * 1024 * 1024 / unit.len() + 3;
    let long = unit.repeat(reps);
    let insert = format!("INSERT INTO {db}.big VALUES (1, '{long}')");
    assert!(insert.len() + 1 > 0xFF_FFFF, "spans two protocol packets");

    let mut seq = 0;
    conn.io.queue(&mut seq, &cmd(0x0E, b""));
    let mut seq = 0;
    conn.io.queue(&mut seq, &cmd(0x03, insert.as_bytes()));
    assert_eq!(seq, 2, "the INSERT is framed as two packets");
    let mut seq = 0;
    conn.io.queue(
        &mut seq,
        &cmd(
            0x03,
            format!("SELECT LENGTH(v), v = REPEAT('{unit}', {reps}), RIGHT(v, 5) FROM {db}.big")
                .as_bytes(),
        ),
    );
    let mut seq = 0;
    conn.io.queue(&mut seq, &cmd(0x0E, b""));
    conn.io.flush().await.expect("one write");

    assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "PING");
    assert_eq!(read_reply(&mut conn).await, Reply::Ok(1), "17 MB INSERT");
    assert_eq!(
        read_reply(&mut conn).await,
        Reply::Rows(
            vec![
                "LENGTH(v)".into(),
                format!("v = REPEAT('{unit}', {reps})"),
                "RIGHT(v, 5)".into()
            ],
            vec![row(&[&long.len().to_string(), "1", "bcdef"])]
        )
    );
    assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "PING");

    // and the 17 MB value comes back through the relay intact
    let mut seq = 0;
    conn.io.queue(
        &mut seq,
        &cmd(0x03, format!("SELECT v FROM {db}.big").as_bytes()),
    );
    conn.io.queue(&mut 0, &cmd(0x0E, b""));
    conn.io.flush().await.unwrap();
    match read_reply(&mut conn).await {
        Reply::Rows(_, rows) => {
            assert_eq!(rows.len(), 1);
            assert!(
                rows[0][0].as_deref() == Some(long.as_bytes()),
                "17 MB value intact"
            );
        }
        other => panic!("expected rows, got {other:?}"),
    }
    assert_eq!(read_reply(&mut conn).await, Reply::Ok(0), "PING");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
