//! The compressed protocol towards clients, against real MySQL through the
//! real `causeway` binary: the `mysql` CLI with
//! `--compression-algorithms=zstd` and `=zlib` prints byte-for-byte what it
//! prints uncompressed (a query set with results over 1 MB and a row over
//! 16 MiB), mysql_async with zlib compression gets the same query and
//! prepared-statement results as without, hostile compressed packets
//! (over the limit, a bomb, garbage) get 1153 or a close, and the proxy
//! logs no panic.

#[path = "support/mod.rs"]
mod support;

use causeway::protocol::compress::Algorithm;
use causeway::protocol::{ErrPacket, PacketConn, PacketError};
use mysql_async::prelude::*;
use mysql_common::constants::CapabilityFlags;
use std::time::Duration;
use support::external::ExternalProxy;
use support::raw::socket_login;

/// Output of one CLI run.
#[derive(Debug, PartialEq)]
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
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
        .arg("--batch")
        .arg("--show-warnings")
        .arg("--max-allowed-packet=64M")
        .args(extra)
        .arg("-e")
        .arg(sql);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("mysql CLI timed out")
        .expect("starting the mysql CLI");
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A byte-counting TCP forwarder in front of `port`, for one client
/// connection: its port, and a task answering how many bytes causeway
/// sent the client once both sides closed.
async fn forwarder(port: u16) -> (u16, tokio::task::JoinHandle<u64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = l.local_addr().unwrap().port();
    let forward = tokio::spawn(async move {
        let (mut client, _) = l.accept().await.unwrap();
        let mut server = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (_, down) = tokio::io::copy_bidirectional(&mut client, &mut server)
            .await
            .unwrap();
        down
    });
    (front, forward)
}

/// What the forwarder counted, once its connection ended.
async fn counted(forward: tokio::task::JoinHandle<u64>) -> u64 {
    tokio::time::timeout(Duration::from_secs(30), forward)
        .await
        .expect("forwarder done")
        .unwrap()
}

/// Runs the CLI through a byte-counting TCP forwarder in front of
/// `port`; returns how many bytes causeway sent it.
async fn wire_bytes(port: u16, extra: &[&str], sql: &str) -> u64 {
    let (front, forward) = forwarder(port).await;
    let run = mysql_cli(front, extra, sql).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    counted(forward).await
}

/// Reads only (the schema is prepared beforehand), so every run sees the
/// same data; ends with an error, after a warning.
fn script(db: &str) -> String {
    format!(
        "SELECT COUNT(*), SUM(LENGTH(body)) FROM {db}.t;
SELECT id, name, body FROM {db}.t ORDER BY id;
SELECT 1, 'small';
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000)
  SELECT n, REPEAT(CHAR(65 + n % 26), 1500 + n % 7), n * 1.5 FROM s;
SELECT LENGTH(REPEAT('z', 17000000)), REPEAT('y', 17000000);
SELECT 1/0;
SELECT * FROM {db}.missing;"
    )
}

async fn prepare_schema(db: &str) {
    let mut c = support::direct_conn().await;
    c.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, name VARCHAR(40), body MEDIUMTEXT)"
    ))
    .await
    .unwrap();
    // 400 rows of 4 KB: 1.6 MB in one result
    for chunk in 0..4 {
        let values: Vec<String> = (0..100)
            .map(|i| {
                let id = chunk * 100 + i;
                format!("({id}, 'row {id} çé', REPEAT(SHA2({id}, 256), 64))")
            })
            .collect();
        c.query_drop(format!("INSERT INTO {db}.t VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    support::sync_replicas().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cli_compressed_output_is_byte_identical() {
    let proxy = ExternalProxy::start(|t| t).await;
    let db = support::unique_db("comp");
    prepare_schema(&db).await;
    let sql = script(&db);
    let plain = mysql_cli(proxy.port, &[], &sql).await;
    assert_eq!(plain.code, Some(1), "{}", plain.stderr);
    assert!(
        plain.stderr.contains("ERROR 1146 (42S02)"),
        "{}",
        plain.stderr
    );
    assert!(plain.stdout.len() > 17_000_000 + 1_600_000 + 1_500_000);
    let text = String::from_utf8_lossy(&plain.stdout[..2000]);
    assert!(text.contains("400\t1638400"), "{text}");
    // a few more runs first: the allocator's arenas (one per worker
    // thread) fill up over the first ones, compressed or not
    for _ in 0..4 {
        mysql_cli(proxy.port, &[], &sql).await;
    }
    let hwm_plain = proxy.vm_hwm_kib();
    let mut sizes = Vec::new();
    for algo in ["zstd", "zlib"] {
        let flag = format!("--compression-algorithms={algo}");
        let compressed = mysql_cli(proxy.port, &[&flag, "--zstd-compression-level=22"], &sql).await;
        assert_eq!(compressed.code, plain.code, "{algo}: {}", compressed.stderr);
        assert_eq!(compressed.stderr, plain.stderr, "{algo}: stderr differs");
        assert!(
            compressed.stdout == plain.stdout,
            "{algo}: stdout differs ({} vs {} bytes)",
            compressed.stdout.len(),
            plain.stdout.len()
        );
        sizes.push((algo, wire_bytes(proxy.port, &[&flag], &sql).await));
    }
    // the compressed runs really were compressed: bytes on the wire
    let plain_bytes = wire_bytes(proxy.port, &[], &sql).await;
    eprintln!("bytes from causeway to the CLI: uncompressed {plain_bytes}, {sizes:?}");
    assert!(plain_bytes > 20_000_000, "{plain_bytes}");
    for (algo, n) in sizes {
        assert!(n * 5 < plain_bytes, "{algo}: {n} of {plain_bytes} bytes");
    }
    // compressed flights cost little memory on top (level 22 was asked
    // for, level 9 used: see MAX_ZSTD_LEVEL)
    let hwm = proxy.vm_hwm_kib();
    eprintln!("VmHWM KiB after the uncompressed runs {hwm_plain}, after all {hwm}");
    assert!(hwm <= hwm_plain + 40 * 1024, "{hwm} KiB vs {hwm_plain} KiB");
    proxy.assert_no_panic();
    let mut c = support::direct_conn().await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// Query and prepared-statement results of one mysql_async session.
async fn session_results(
    port: u16,
    db: &str,
    compression: Option<mysql_async::Compression>,
) -> Vec<String> {
    let opts = mysql_async::OptsBuilder::from_opts(support::opts(port, "app", "apppw", None))
        .compression(compression);
    let mut c = mysql_async::Conn::new(opts).await.expect("connect");
    let mut out = Vec::new();
    let rows: Vec<(i32, String, String)> = c
        .query(format!("SELECT id, name, body FROM {db}.t ORDER BY id"))
        .await
        .unwrap();
    out.push(format!("{rows:?}"));
    let stmt = c
        .prep(format!(
            "SELECT id, name, body FROM {db}.t WHERE id >= ? AND name LIKE ? ORDER BY id"
        ))
        .await
        .unwrap();
    for (from, like) in [(0, "row%"), (250, "%1%"), (399, "%")] {
        let rows: Vec<(i32, String, String)> = c.exec(&stmt, (from, like)).await.unwrap();
        out.push(format!("{rows:?}"));
    }
    let big: Option<String> = c
        .exec_first("SELECT REPEAT(?, 5000000)", ("abcd",))
        .await
        .unwrap();
    out.push(format!("{}", big.map_or(0, |b| b.len())));
    let err = c
        .query_drop(format!("SELECT * FROM {db}.missing"))
        .await
        .unwrap_err();
    out.push(err.to_string());
    let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
    out.push(format!("{one:?}"));
    c.disconnect().await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_compressed_results_match_uncompressed() {
    let proxy = ExternalProxy::start(|t| t).await;
    let db = support::unique_db("compa");
    prepare_schema(&db).await;
    // every session goes through a byte counter: mysql_async quietly runs
    // uncompressed when compression is not agreed, so results alone prove
    // nothing
    let (front, forward) = forwarder(proxy.port).await;
    let plain = session_results(front, &db, None).await;
    let plain_bytes = counted(forward).await;
    assert!(plain.iter().map(String::len).sum::<usize>() > 3_000_000);
    assert_eq!(plain.get(4).map(String::as_str), Some("20000000"));
    assert!(plain_bytes > 20_000_000, "{plain_bytes} bytes uncompressed");
    let mut sizes = Vec::new();
    for level in [
        mysql_async::Compression::fast(),
        mysql_async::Compression::best(),
    ] {
        let (front, forward) = forwarder(proxy.port).await;
        let compressed = session_results(front, &db, Some(level)).await;
        let bytes = counted(forward).await;
        assert!(compressed == plain, "results differ at {level:?}");
        assert!(
            bytes * 4 < plain_bytes,
            "{level:?}: {bytes} bytes on the wire vs {plain_bytes} uncompressed"
        );
        sizes.push(bytes);
    }
    eprintln!("mysql_async, bytes from causeway: uncompressed {plain_bytes}, fast/best {sizes:?}");
    proxy.assert_no_panic();
    let mut c = support::direct_conn().await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// Logs in as app over a raw socket asking for zlib, and turns
/// compression on after the OK, as a client does.
async fn raw_compressed_login(port: u16) -> PacketConn {
    let (mut c, hello) = socket_login(port, CapabilityFlags::CLIENT_COMPRESS).await;
    assert!(hello.caps.contains(CapabilityFlags::CLIENT_COMPRESS));
    assert!(hello
        .caps
        .contains(CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM));
    c.start_compression(Algorithm::Zlib);
    c
}

/// Writes bytes to the socket under the compressed layer.
async fn write_under(c: &PacketConn, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        c.tcp()
            .expect("a TCP socket")
            .writable()
            .await
            .expect("writable");
        match c.tcp().expect("a TCP socket").try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("write: {e}"),
        }
    }
}

fn comp_header(len: usize, uncompressed: usize) -> Vec<u8> {
    let mut h = (len as u32).to_le_bytes()[..3].to_vec();
    h.push(0);
    h.extend_from_slice(&(uncompressed as u32).to_le_bytes()[..3]);
    h
}

async fn expect_1153_then_close(c: &mut PacketConn) {
    let p = tokio::time::timeout(Duration::from_secs(10), c.read_packet())
        .await
        .expect("reply within 10 s")
        .expect("an ERR packet");
    let e = ErrPacket::parse(&p.payload).expect("ERR");
    assert_eq!((e.code, e.sqlstate()), (1153, "08S01"), "{}", e.message);
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), c.read_packet()).await,
        Ok(Err(PacketError::Closed | PacketError::Io(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_compressed_packets_are_refused() {
    let mut p = ExternalProxy::start(|t| {
        t.replacen("[server]\n", "[server]\nmax_client_packet = 1048576\n", 1)
    })
    .await;
    for _ in 0..3 {
        p.assert_served_within(Duration::from_secs(5)).await;
    }
    let idle = p.vm_hwm_kib();
    // a well-formed compressed session works
    let mut c = raw_compressed_login(p.port).await;
    c.send(&mut 0, b"\x03SELECT 'hello compressed'")
        .await
        .unwrap();
    let cols = c.read_packet().await.unwrap();
    assert_eq!(&cols.payload[..], &[1]);
    // a header announcing 2 MiB against a 1 MiB limit: refused from it
    let mut c = raw_compressed_login(p.port).await;
    write_under(&c, &comp_header(100, 2 << 20)).await;
    expect_1153_then_close(&mut c).await;
    // a bomb: 1000 bytes announced, 8 MiB inside
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 8 << 20]).unwrap();
        e.finish().unwrap()
    };
    let mut c = raw_compressed_login(p.port).await;
    let mut wire = comp_header(bomb.len(), 1000);
    wire.extend_from_slice(&bomb);
    write_under(&c, &wire).await;
    expect_1153_then_close(&mut c).await;
    // garbage that does not inflate: 1157, then the close
    let mut c = raw_compressed_login(p.port).await;
    let mut wire = comp_header(60, 500);
    wire.extend_from_slice(&[0x5A; 60]);
    write_under(&c, &wire).await;
    let reply = tokio::time::timeout(Duration::from_secs(10), c.read_packet())
        .await
        .expect("reply within 10 s")
        .expect("an ERR packet");
    let e = ErrPacket::parse(&reply.payload).expect("ERR");
    assert_eq!((e.code, e.sqlstate()), (1157, "08S01"), "{}", e.message);
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), c.read_packet()).await,
        Ok(Err(PacketError::Closed | PacketError::Io(_)))
    ));
    p.assert_alive();
    p.assert_served_within(Duration::from_secs(1)).await;
    let hwm = p.vm_hwm_kib();
    eprintln!("hostile compressed packets: VmHWM KiB idle {idle}, after {hwm}");
    assert!(
        hwm <= idle + 16 * 1024,
        "VmHWM {hwm} KiB vs idle {idle} KiB"
    );
    p.assert_no_panic();
}
