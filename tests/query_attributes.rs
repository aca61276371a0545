//! CLIENT_QUERY_ATTRIBUTES through causeway against real MySQL, from a raw
//! protocol client that negotiates the capability: attributes on COM_QUERY
//! and on COM_STMT_EXECUTE (PARAMETER_COUNT_AVAILABLE) reach the server on
//! the replica route and on the primary route (read back with
//! `mysql_query_attribute_string` from the query_attributes component),
//! including an execution on a second backend where causeway re-binds the
//! types (with their names) the client omitted; the proxy's own queries on
//! such links carry the empty attribute block; a malformed block gets
//! 1835; clients without the capability are unaffected; no panic.

#[path = "support/mod.rs"]
mod support;

use causeway::backend::BackendConn;
use causeway::protocol::messages::{put_lenenc_str, read_lenenc, read_lenenc_str};
use causeway::protocol::ErrPacket;
use mysql_async::prelude::*;
use mysql_common::constants::CapabilityFlags;
use support::external::ExternalProxy;
use support::raw::{send, RawLogin};

/// Installs the query_attributes component on every server (once; not
/// replicated, so on each).
async fn install_component() {
    let topo = support::topology();
    let servers = std::iter::once(topo.primary()).chain(topo.replicas().iter());
    for server in servers {
        let mut c = server.conn().await.expect("root connection");
        let have: Option<i64> = c
            .query_first(
                "SELECT COUNT(*) FROM mysql.component \
                 WHERE component_urn = 'file://component_query_attributes'",
            )
            .await
            .expect("component table");
        if have == Some(0) {
            c.query_drop("SET SESSION sql_log_bin = 0").await.unwrap();
            c.query_drop("INSTALL COMPONENT 'file://component_query_attributes'")
                .await
                .expect("install the query_attributes component");
        }
    }
}

/// A raw client through causeway with CLIENT_QUERY_ATTRIBUTES.
async fn qa_conn(port: u16) -> BackendConn {
    let conn = RawLogin {
        caps: CapabilityFlags::CLIENT_QUERY_ATTRIBUTES | CapabilityFlags::CLIENT_DEPRECATE_EOF,
        ..RawLogin::app(format!("127.0.0.1:{port}"))
    }
    .connect()
    .await;
    assert!(conn.caps.contains(CapabilityFlags::CLIENT_QUERY_ATTRIBUTES));
    conn
}

/// The attribute block for string attributes.
fn attr_block(attrs: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![attrs.len() as u8, 1];
    if !attrs.is_empty() {
        b.resize(b.len() + attrs.len().div_ceil(8), 0);
        b.push(1);
        for (name, _) in attrs {
            b.extend_from_slice(&[253, 0]);
            put_lenenc_str(&mut b, name.as_bytes());
        }
        for (_, v) in attrs {
            put_lenenc_str(&mut b, v.as_bytes());
        }
    }
    b
}

/// Sends COM_QUERY `sql` with `attrs` and returns the first row (text).
async fn query(conn: &mut BackendConn, attrs: &[(&str, &str)], sql: &str) -> Vec<Option<String>> {
    let mut p = vec![0x03];
    p.extend_from_slice(&attr_block(attrs));
    p.extend_from_slice(sql.as_bytes());
    send(conn, &p).await;
    read_rows(conn, false).await
}

/// Reads a result set and returns its first row; text or binary rows.
/// Panics with the error if the reply is an ERR.
async fn read_rows(conn: &mut BackendConn, binary: bool) -> Vec<Option<String>> {
    let first = conn.io.read_packet().await.expect("reply").payload;
    if first[0] == 0xFF {
        let e = ErrPacket::parse(&first).unwrap();
        panic!("server error {} {}", e.code, e.message);
    }
    let (ncols, _) = read_lenenc(&first).expect("column count");
    for _ in 0..ncols {
        conn.io.read_packet().await.expect("column definition");
    }
    let mut first_row = None;
    loop {
        let r = conn.io.read_packet().await.expect("row").payload;
        if r[0] == 0xFE && r.len() < 0xFF_FFFF {
            break;
        }
        if first_row.is_some() {
            continue;
        }
        let mut row = Vec::new();
        let mut at = 0;
        let mut nulls = Vec::new();
        if binary {
            let n = (ncols as usize + 9) / 8;
            nulls = r[1..1 + n].to_vec();
            at = 1 + n;
        }
        for i in 0..ncols as usize {
            let is_null = if binary {
                nulls[(i + 2) / 8] & (1 << ((i + 2) % 8)) != 0
            } else {
                r[at] == 0xFB
            };
            if is_null {
                row.push(None);
                at += usize::from(!binary);
            } else {
                let (s, n) = read_lenenc_str(&r[at..]).expect("value");
                row.push(Some(String::from_utf8_lossy(s).into_owned()));
                at += n;
            }
        }
        first_row = Some(row);
    }
    first_row.expect("a row")
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

async fn last_route(conn: &mut BackendConn) -> String {
    let v = conn
        .query_value("SELECT @@causeway.last_route")
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(v.unwrap()).unwrap()
}

/// COM_STMT_EXECUTE of `id` with one string parameter and `attrs`; types
/// bound only when `bind`.
fn execute(id: u32, param: &str, attrs: &[(&str, &str)], bind: bool) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0x08); // PARAMETER_COUNT_AVAILABLE
    p.extend_from_slice(&1u32.to_le_bytes());
    let count = 1 + attrs.len();
    p.push(count as u8);
    p.resize(p.len() + count.div_ceil(8), 0);
    p.push(u8::from(bind));
    if bind {
        p.extend_from_slice(&[253, 0, 0]); // the parameter: no name
        for (name, _) in attrs {
            p.extend_from_slice(&[253, 0]);
            put_lenenc_str(&mut p, name.as_bytes());
        }
    }
    put_lenenc_str(&mut p, param.as_bytes());
    for (_, v) in attrs {
        put_lenenc_str(&mut p, v.as_bytes());
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_attributes_reach_primary_and_replicas() {
    install_component().await;
    let proxy = ExternalProxy::start(|t| t).await;
    let mut c = qa_conn(proxy.port).await;

    // COM_QUERY: a read goes to a replica, with its attributes
    let row = query(
        &mut c,
        &[("n1", "on-replica"), ("n2", "second")],
        "SELECT mysql_query_attribute_string('n1'), mysql_query_attribute_string('n2')",
    )
    .await;
    assert_eq!(row, vec![s("on-replica"), s("second")]);
    let route = last_route(&mut c).await;
    assert!(route.starts_with("replica:"), "{route}");
    // attributes apply to one statement only
    let row = query(&mut c, &[], "SELECT mysql_query_attribute_string('n1')").await;
    assert_eq!(row, vec![None]);
    // in a transaction: the primary
    query_ok(&mut c, "BEGIN").await;
    let row = query(
        &mut c,
        &[("n1", "on-primary")],
        "SELECT mysql_query_attribute_string('n1')",
    )
    .await;
    assert_eq!(row, vec![s("on-primary")]);
    assert_eq!(last_route(&mut c).await, "primary");
    query_ok(&mut c, "COMMIT").await;
    // a session SET (replayed by causeway on other links) and a read
    query_ok(&mut c, "SET @x = 5").await;
    let row = query(
        &mut c,
        &[("n1", "after-set")],
        "SELECT mysql_query_attribute_string('n1'), @x",
    )
    .await;
    assert_eq!(row, vec![s("after-set"), s("5")]);

    // prepared statements: attributes ride on COM_STMT_EXECUTE (a fresh
    // session: the user variable above pins this one to the primary)
    let mut c = qa_conn(proxy.port).await;
    let mut prep = vec![0x16];
    prep.extend_from_slice(b"SELECT CAST(? AS CHAR), mysql_query_attribute_string('a1')");
    send(&mut c, &prep).await;
    let ok = c.io.read_packet().await.unwrap().payload;
    assert_eq!(ok[0], 0, "prepare OK");
    let id = u32::from_le_bytes(ok[1..5].try_into().unwrap());
    let (ncols, nparams) = (
        u16::from_le_bytes([ok[5], ok[6]]),
        u16::from_le_bytes([ok[7], ok[8]]),
    );
    for _ in 0..ncols + nparams {
        c.io.read_packet().await.unwrap();
    }
    send(&mut c, &execute(id, "p1", &[("a1", "x")], true)).await;
    assert_eq!(read_rows(&mut c, true).await, vec![s("p1"), s("x")]);
    let first = last_route(&mut c).await;
    assert!(first.starts_with("replica:"), "{first}");
    // in a transaction, on the primary: causeway prepares it there and
    // binds the type (and name) the client now omits (MySQL refuses
    // omitted types together with attributes, so none here)
    query_ok(&mut c, "BEGIN").await;
    send(&mut c, &execute(id, "p2", &[], false)).await;
    assert_eq!(read_rows(&mut c, true).await, vec![s("p2"), None]);
    assert_eq!(last_route(&mut c).await, "primary");
    send(&mut c, &execute(id, "p3", &[("a1", "z")], true)).await;
    assert_eq!(read_rows(&mut c, true).await, vec![s("p3"), s("z")]);
    assert_eq!(last_route(&mut c).await, "primary");
    query_ok(&mut c, "COMMIT").await;
    eprintln!("first execution on {first}, second on primary");

    // a malformed attribute block: 1835, the connection lives on
    send(&mut c, b"\x03\x05\x01SELECT 1").await;
    let e = ErrPacket::parse(&c.io.read_packet().await.unwrap().payload).unwrap();
    assert_eq!((e.code, e.sqlstate()), (1835, "HY000"));
    assert_eq!(query(&mut c, &[], "SELECT 7").await, vec![s("7")]);

    // clients without the capability are unaffected
    let mut m = mysql_async::Conn::new(proxy.opts("app", "apppw"))
        .await
        .expect("login");
    let v: Option<Option<String>> = m
        .query_first("SELECT mysql_query_attribute_string('n1')")
        .await
        .unwrap();
    assert_eq!(v, Some(None));
    let r: Vec<(i64, String)> = m.exec("SELECT ?, ?", (7, "seven")).await.unwrap();
    assert_eq!(r, vec![(7, "seven".to_string())]);
    m.disconnect().await.unwrap();
    proxy.assert_no_panic();
}

async fn query_ok(c: &mut BackendConn, sql: &str) {
    let r = c.query_ok(sql).await.expect("link");
    assert!(r.is_ok(), "{sql}: {r:?}");
}
