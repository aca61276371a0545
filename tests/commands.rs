//! Less common commands through causeway, at the protocol level against a
//! real server: COM_STATISTICS, COM_FIELD_LIST, COM_RESET_CONNECTION,
//! COM_SET_OPTION, an unknown command (error 1047), and an unknown
//! statement id (error 1243). The connection survives each.

#[path = "support/mod.rs"]
mod support;

use causeway::backend::BackendConn;
use mysql_async::prelude::*;
use mysql_common::constants::CapabilityFlags;
use std::time::Duration;
use support::raw::{command, RawLogin};

async fn raw(proxy: &support::TestProxy, db: &str, deprecate_eof: bool) -> BackendConn {
    let caps = if deprecate_eof {
        CapabilityFlags::CLIENT_DEPRECATE_EOF
    } else {
        CapabilityFlags::empty()
    };
    RawLogin {
        caps,
        db: Some(db),
        limit: Duration::from_secs(5),
        ..RawLogin::app(proxy.addr.to_string())
    }
    .connect()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_field_list_reset_set_option_and_unknown_commands() {
    let db = support::unique_db("cmds");
    let proxy = support::start_proxy().await;
    let mut d = support::direct_conn().await;
    d.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    d.query_drop(format!("CREATE TABLE {db}.t (a INT, b VARCHAR(5))"))
        .await
        .unwrap();
    for deprecate_eof in [false, true] {
        let mut c = raw(&proxy, &db, deprecate_eof).await;
        let stats = command(&mut c, &[0x09]).await;
        assert!(
            String::from_utf8_lossy(&stats).starts_with("Uptime:"),
            "COM_STATISTICS"
        );

        let mut fl = vec![0x04];
        fl.extend_from_slice(b"t\0");
        let mut seq = 0;
        c.io.send(&mut seq, &fl).await.unwrap();
        let mut names = Vec::new();
        loop {
            let p = c.io.read_packet().await.unwrap().payload;
            if p[0] == 0xFE && p.len() < 0xFF_FFFF {
                break;
            }
            assert_ne!(p[0], 0xFF, "FIELD_LIST failed");
            // def, schema, table, org_table, name
            let mut rest = &p[..];
            let mut strs = Vec::new();
            for _ in 0..5 {
                let (s, n) = causeway::protocol::messages::read_lenenc_str(rest).unwrap();
                strs.push(String::from_utf8_lossy(s).into_owned());
                rest = &rest[n..];
            }
            names.push(strs[4].clone());
        }
        assert_eq!(names, ["a", "b"], "COM_FIELD_LIST");

        // SET @x pins; COM_RESET_CONNECTION forgets it (checked in
        // reset_connection_forgets_session_state)
        let ok = command(&mut c, b"\x03SET @x = 5").await;
        assert_eq!(ok[0], 0x00);
        let ok = command(&mut c, &[0x1F]).await;
        assert_eq!(ok[0], 0x00, "COM_RESET_CONNECTION");
        // COM_SET_OPTION multi-statements off: server's own reply shape
        let r = command(&mut c, &[0x1B, 1, 0]).await;
        assert!(r[0] == 0xFE || r[0] == 0x00, "COM_SET_OPTION reply {:?}", r);
        let err = command(&mut c, &[0x0F]).await; // COM_TIME
        assert_eq!(err[0], 0xFF);
        assert_eq!(u16::from_le_bytes([err[1], err[2]]), 1047);
        let mut exec = vec![0x17];
        exec.extend_from_slice(&999u32.to_le_bytes());
        exec.extend_from_slice(&[0, 1, 0, 0, 0]);
        let err = command(&mut c, &exec).await;
        assert_eq!(u16::from_le_bytes([err[1], err[2]]), 1243);
        // still alive
        let ok = command(&mut c, &[0x0E]).await;
        assert_eq!(ok[0], 0x00, "PING after errors");
    }
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// The first column of the first row of `sql`'s reply through `c`
/// (None for NULL), or the server's error.
async fn value(c: &mut BackendConn, sql: &str) -> Result<Option<String>, (u16, String)> {
    match c.query_value(sql).await.expect("reply") {
        Ok(v) => Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned())),
        Err(e) => Err((e.code, e.message.clone())),
    }
}

/// Each check reads the primary (`FOR UPDATE`), where the state was made,
/// so a replica that never had the state cannot answer it.
const CHECKS: [&str; 5] = [
    "SELECT @x FOR UPDATE",
    "SELECT a FROM tmp FOR UPDATE",
    "SELECT @@session.time_zone FOR UPDATE",
    "SELECT @@autocommit FOR UPDATE",
    "SELECT COUNT(*) FROM t FOR UPDATE",
];

/// COM_RESET_CONNECTION through causeway, in both pool modes, forgets what
/// the session made: a user variable, a temporary table, a session
/// variable, `autocommit = 0` and its uncommitted row, as MySQL does
/// directly. The same checks are run before the reset, so they can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connection_forgets_session_state() {
    let db = support::unique_db("cmdreset");
    let mut d = support::direct_conn().await;
    d.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    d.query_drop(format!("CREATE TABLE {db}.t (a INT)"))
        .await
        .unwrap();
    support::sync_replicas().await;
    for mode in ["session", "transaction"] {
        let proxy = support::start_proxy_with(|t| {
            t.replacen(
                "[server]\n",
                &format!("[server]\npool_mode = \"{mode}\"\n"),
                1,
            )
        })
        .await;
        let mut c = raw(&proxy, &db, true).await;
        for sql in [
            "SET @x = 5",
            "CREATE TEMPORARY TABLE tmp (a INT)",
            "INSERT INTO tmp VALUES (7)",
            "SET time_zone = '+03:00'",
            "SET autocommit = 0",
            "INSERT INTO t VALUES (1)",
        ] {
            let r = c.query_ok(sql).await.expect("reply");
            assert!(r.is_ok(), "{mode}: {sql}: {r:?}");
        }
        let mut before = Vec::new();
        for sql in CHECKS {
            before.push(value(&mut c, sql).await);
        }
        let s = |v: &str| Ok(Some(v.to_string()));
        assert_eq!(
            before,
            [s("5"), s("7"), s("+03:00"), s("0"), s("1")],
            "{mode}: the state before the reset"
        );
        let r = c.command(0x1F, &[]).await.expect("reply");
        assert!(r.is_ok(), "{mode}: COM_RESET_CONNECTION: {r:?}");
        let mut after = Vec::new();
        for sql in CHECKS {
            after.push(value(&mut c, sql).await);
            assert_eq!(
                value(&mut c, "SELECT @@causeway.last_route").await,
                s("primary"),
                "{mode}: {sql} was read on the primary"
            );
        }
        assert_eq!(after[0], Ok(None), "{mode}: user variable");
        assert!(
            matches!(&after[1], Err((1146, m)) if m.contains("tmp")),
            "{mode}: temporary table: {:?}",
            after[1]
        );
        assert_eq!(after[2], s("SYSTEM"), "{mode}: time_zone");
        assert_eq!(after[3], s("1"), "{mode}: autocommit");
        assert_eq!(after[4], s("0"), "{mode}: the uncommitted row");
        // a direct reader agrees: the row was rolled back, nothing is locked
        let n: Option<u64> = d
            .query_first(format!("SELECT COUNT(*) FROM {db}.t FOR UPDATE NOWAIT"))
            .await
            .unwrap();
        assert_eq!(n, Some(0), "{mode}");
    }
    d.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// LOAD DATA LOCAL INFILE: the server asks the client for the file and the
/// proxy pumps the client's data packets through (PyMySQL, local_infile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_infile_through_the_proxy() {
    let db = support::unique_db("infile");
    let proxy = support::start_proxy().await;
    let dir = std::env::temp_dir().join(&db);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rows.csv");
    let rows: String = (0..5000).map(|i| format!("{i},row{i}\n")).collect();
    std::fs::write(&file, rows).unwrap();
    let script = format!(
        r#"
import pymysql
c = pymysql.connect(host="127.0.0.1", port={port}, user="app", password="apppw", local_infile=True, autocommit=True)
cur = c.cursor()
cur.execute("CREATE DATABASE {db}")
cur.execute("CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))")
n = cur.execute("LOAD DATA LOCAL INFILE '{file}' INTO TABLE {db}.t FIELDS TERMINATED BY ','")
cur.execute("SELECT COUNT(*), MAX(v) FROM {db}.t FOR UPDATE")
print(n, *cur.fetchone())
cur.execute("DROP DATABASE {db}")
"#,
        port = proxy.port(),
        file = file.display()
    );
    let out = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .await
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "5000 5000 row999");
    std::fs::remove_dir_all(&dir).ok();
}
