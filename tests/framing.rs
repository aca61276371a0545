//! Byte-exact replies whatever the client negotiated: every backend link
//! negotiates CLIENT_DEPRECATE_EOF, and the relay gives a client without it
//! the classic EOF framing. The same commands are sent by raw clients
//! (with and without DEPRECATE_EOF, neither with SESSION_TRACK) directly to
//! MySQL and through causeway, and every packet of every reply is compared:
//! sequence ids, column definitions, rows, warnings, status flags. Covers
//! text and binary results, empty results, warnings, multi-statements,
//! stored procedures (several results, OUT parameters), prepare replies,
//! cursors with COM_STMT_FETCH, an error after a first result, and a result
//! longer than one read.

#[path = "support/mod.rs"]
mod support;

use causeway::protocol::messages::{self, OkPacket};
use causeway::protocol::{handshake, PacketConn};
use mysql_async::prelude::Queryable;
use mysql_common::constants::CapabilityFlags as C;
use std::time::Duration;

/// What PyMySQL asks for (no DEPRECATE_EOF, no SESSION_TRACK), plus
/// multi-statements.
fn classic() -> C {
    C::CLIENT_LONG_PASSWORD
        | C::CLIENT_LONG_FLAG
        | C::CLIENT_PROTOCOL_41
        | C::CLIENT_TRANSACTIONS
        | C::CLIENT_SECURE_CONNECTION
        | C::CLIENT_MULTI_STATEMENTS
        | C::CLIENT_MULTI_RESULTS
        | C::CLIENT_PS_MULTI_RESULTS
        | C::CLIENT_PLUGIN_AUTH
        | C::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
}

/// Logs in as `app` on `port` asking for `caps` (caching_sha2 fast path).
async fn login(port: u16, caps: C) -> PacketConn {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut c = PacketConn::new(s);
    let greet = c.read_packet().await.expect("greeting");
    let hello = handshake::parse_server_hello(&greet.payload).expect("greeting parses");
    let plugin = handshake::CACHING_SHA2;
    let nonce = &hello.nonce;
    let resp = handshake::scramble(plugin, nonce, "apppw").expect("plugin");
    let login = handshake::client_hello(caps, 255, "app", &resp, None, plugin);
    let mut seq = 1;
    c.send(&mut seq, &login).await.expect("send login");
    loop {
        let p = c.read_packet().await.expect("login reply");
        match p.payload.as_ref() {
            [0x00, ..] => return c,
            [0x01, 0x03] => continue,
            [0xFE, ..] => {
                // auth switch: answer with the scramble of the new nonce
                let name_end = p.payload.iter().position(|b| *b == 0).expect("plugin name");
                let name = std::str::from_utf8(&p.payload[1..name_end]).expect("utf8");
                let mut nonce = p.payload[name_end + 1..].to_vec();
                nonce.pop();
                let r = handshake::scramble(name, &nonce, "apppw").expect("plugin");
                let mut seq = p.seq.wrapping_add(1);
                c.send(&mut seq, &r).await.expect("auth switch response");
            }
            other => panic!("login refused: {other:02x?}"),
        }
    }
}

/// The packets of one reply: (sequence id, payload).
type Packets = Vec<(u8, Vec<u8>)>;

/// What a command's reply looks like.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Query,
    Prepare,
    Execute,
    Fetch,
}

struct Raw {
    io: PacketConn,
    /// The client negotiated DEPRECATE_EOF.
    deprecate: bool,
}

impl Raw {
    async fn read(&mut self) -> (u8, Vec<u8>) {
        let p = tokio::time::timeout(Duration::from_secs(10), self.io.read_packet())
            .await
            .expect("reply within 10 s")
            .expect("reply packet");
        (p.seq, p.payload.to_vec())
    }

    /// Sends a command and reads its whole reply, following the framing
    /// this client negotiated.
    async fn command(&mut self, payload: &[u8], kind: Kind) -> Packets {
        let mut seq = 0;
        self.io.send(&mut seq, payload).await.expect("send");
        let mut out = Vec::new();
        if kind == Kind::Fetch {
            self.rows(&mut out, kind).await;
            return out;
        }
        loop {
            let (seq, p) = self.read().await;
            out.push((seq, p.clone()));
            match p.first() {
                Some(0xFF) => return out,
                Some(0x00) if kind == Kind::Prepare => {
                    let cols = u16::from_le_bytes([p[5], p[6]]);
                    let params = u16::from_le_bytes([p[7], p[8]]);
                    for n in [params, cols] {
                        if n > 0 {
                            self.defs(&mut out, u64::from(n)).await;
                        }
                    }
                    return out;
                }
                Some(0x00) => {
                    let ok = OkPacket::parse(&p, C::empty()).expect("OK");
                    if ok.status & 0x0008 == 0 {
                        return out;
                    }
                }
                _ => {
                    let (n, _) = messages::read_lenenc(&p).expect("column count");
                    let defs = self.defs(&mut out, n).await;
                    if defs & 0x0040 != 0 {
                        return out; // a cursor: rows come with FETCH
                    }
                    let end = self.rows(&mut out, kind).await;
                    // MySQL's classic EOF after OUT parameters (0x1000) says
                    // no more results, yet the CALL's OK follows
                    let out_params = defs & 0x1000 != 0;
                    if end & 0x0008 == 0 && !out_params {
                        return out;
                    }
                }
            }
        }
    }

    /// `n` definitions and, without DEPRECATE_EOF, their EOF (its status).
    async fn defs(&mut self, out: &mut Packets, n: u64) -> u16 {
        for _ in 0..n {
            out.push(self.read().await);
        }
        if self.deprecate {
            return 0;
        }
        let (seq, p) = self.read().await;
        assert_eq!(p.first(), Some(&0xFE), "an EOF after the definitions");
        out.push((seq, p.clone()));
        messages::terminator_status(&p, false)
    }

    /// Rows up to the terminator (its status) or an ERR (0).
    async fn rows(&mut self, out: &mut Packets, _kind: Kind) -> u16 {
        loop {
            let (seq, p) = self.read().await;
            out.push((seq, p.clone()));
            let first = p.first().copied().unwrap_or(0);
            if first == 0xFF {
                return 0;
            }
            if messages::is_terminator(p.len(), first, self.deprecate) {
                return messages::terminator_status(&p, self.deprecate);
            }
        }
    }
}

/// A pair of raw clients with the same capabilities, one on MySQL, one on
/// causeway.
struct Pair {
    direct: Raw,
    proxied: Raw,
}

impl Pair {
    async fn new(proxy_port: u16, caps: C) -> Pair {
        let deprecate = caps.contains(C::CLIENT_DEPRECATE_EOF);
        let primary = support::topology().primary().port();
        Pair {
            direct: Raw {
                io: login(primary, caps).await,
                deprecate,
            },
            proxied: Raw {
                io: login(proxy_port, caps).await,
                deprecate,
            },
        }
    }

    /// Runs `payload` on both; the replies must be the same bytes.
    async fn same(&mut self, payload: &[u8], kind: Kind, what: &str) -> Packets {
        let a = self.direct.command(payload, kind).await;
        let b = self.proxied.command(payload, kind).await;
        assert_eq!(
            a, b,
            "{what}: direct and proxied replies differ (deprecate_eof = {})",
            self.direct.deprecate
        );
        b
    }

    async fn query(&mut self, sql: &str) -> Packets {
        self.same(&cmd(0x03, sql.as_bytes()), Kind::Query, sql)
            .await
    }

    /// Prepares `sql` on both; returns the statement ids (direct, proxied).
    async fn prepare(&mut self, sql: &str) -> (u32, u32) {
        let p = cmd(0x16, sql.as_bytes());
        let a = self.direct.command(&p, Kind::Prepare).await;
        let b = self.proxied.command(&p, Kind::Prepare).await;
        let id = |r: &Packets| u32::from_le_bytes(r[0].1[1..5].try_into().unwrap());
        let (ia, ib) = (id(&a), id(&b));
        let strip = |mut r: Packets| {
            r[0].1[1..5].fill(0);
            r
        };
        assert_eq!(strip(a), strip(b), "prepare {sql}: replies differ");
        (ia, ib)
    }

    /// Executes a prepared statement on both (`flags`: 1 opens a cursor).
    async fn execute(&mut self, ids: (u32, u32), flags: u8, params: &[u8], what: &str) -> Packets {
        let pa = execute_payload(ids.0, flags, params);
        let pb = execute_payload(ids.1, flags, params);
        let a = self.direct.command(&pa, Kind::Execute).await;
        let b = self.proxied.command(&pb, Kind::Execute).await;
        assert_eq!(a, b, "execute {what}: replies differ");
        b
    }

    async fn fetch(&mut self, ids: (u32, u32), rows: u32) -> Packets {
        let f = |id: u32| {
            let mut p = vec![0x1C];
            p.extend_from_slice(&id.to_le_bytes());
            p.extend_from_slice(&rows.to_le_bytes());
            p
        };
        let a = self.direct.command(&f(ids.0), Kind::Fetch).await;
        let b = self.proxied.command(&f(ids.1), Kind::Fetch).await;
        assert_eq!(a, b, "fetch: replies differ");
        b
    }
}

fn cmd(code: u8, arg: &[u8]) -> Vec<u8> {
    let mut v = vec![code];
    v.extend_from_slice(arg);
    v
}

/// COM_STMT_EXECUTE; `params` is the block after the iteration count.
fn execute_payload(id: u32, flags: u8, params: &[u8]) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(flags);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(params);
    p
}

/// The parameter block of one INT parameter.
fn one_int(v: i32) -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x03, 0x00];
    p.extend_from_slice(&v.to_le_bytes());
    p
}

async fn setup(db: &str) {
    let mut c = support::direct_conn().await;
    for sql in [
        format!("CREATE DATABASE {db}"),
        format!(
            "CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20), d DECIMAL(10,2), \
             ts DATETIME(3), n INT NULL)"
        ),
        format!(
            "INSERT INTO {db}.t VALUES (1, 'one', 1.50, '2024-02-29 10:11:12.345', NULL), \
             (2, 'two', -2.25, '2024-03-01 00:00:00', 7), (3, 'thrée', 0, NULL, 9)"
        ),
        format!("CREATE TABLE {db}.big (id INT PRIMARY KEY, s VARCHAR(2000))"),
        format!(
            "INSERT INTO {db}.big WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
             WHERE i < 400) SELECT i, REPEAT(CHAR(65 + i % 26), 1000) FROM n"
        ),
        format!(
            "CREATE PROCEDURE {db}.two_sets(IN n INT) BEGIN SELECT n AS a, 'x' AS b; \
             SELECT n * 2 AS c UNION ALL SELECT n * 3; END"
        ),
        format!(
            "CREATE PROCEDURE {db}.with_out(IN a INT, OUT b INT, INOUT c INT) BEGIN \
             SELECT a AS first; SET b = a * 10; SET c = a + 1; END"
        ),
    ] {
        c.query_drop(sql).await.unwrap();
    }
    support::sync_replicas().await;
}

/// Every reply shape, compared packet for packet for one client kind.
async fn compare(caps: C) {
    let db = support::unique_db("framing");
    setup(&db).await;
    let proxy = support::start_proxy().await;
    let mut p = Pair::new(proxy.port(), caps).await;
    p.query(&format!("USE {db}")).await;
    let r = p.query("SELECT * FROM t ORDER BY id").await;
    assert_eq!(r.len(), 1 + 5 + usize::from(!p.direct.deprecate) + 3 + 1);
    p.query("SELECT id, v FROM t WHERE id < 0").await;
    let w = p.query("SELECT CAST('12abc' AS SIGNED) AS w").await;
    let last = &w.last().unwrap().1;
    assert!(
        messages::terminator_status(last, p.direct.deprecate) & 0x0002 != 0,
        "autocommit reported"
    );
    p.query("SELECT 1; SELECT 'two', NULL; DO 3").await;
    p.query("SELECT 1 AS a; SELECT * FROM no_such_table; SELECT 3")
        .await;
    p.query("SELECT 42").await;
    p.query("CALL two_sets(7)").await;
    // more than one read: the rows stream before their terminator is seen
    let big = p.query("SELECT id, s FROM big ORDER BY id").await;
    assert!(big.len() > 400, "{} packets", big.len());
    p.query("SELECT COUNT(*) FROM big WHERE s LIKE 'B%'").await;

    let ids = p
        .prepare("SELECT id, v, d, ts, n FROM t WHERE id >= ?")
        .await;
    p.execute(ids, 0, &one_int(2), "binary rows").await;
    p.execute(ids, 0, &one_int(100), "binary, no rows").await;
    // a cursor: the execute ends after the columns, rows come by FETCH
    let r = p.execute(ids, 1, &one_int(1), "cursor").await;
    let status = messages::terminator_status(&r.last().unwrap().1, p.direct.deprecate);
    assert!(status & 0x0040 != 0, "cursor exists: {status:#x}");
    p.fetch(ids, 2).await;
    let r = p.fetch(ids, 2).await;
    let status = messages::terminator_status(&r.last().unwrap().1, p.direct.deprecate);
    assert!(status & 0x0080 != 0, "last row sent: {status:#x}");
    let ids = p.prepare("CALL with_out(?, ?, ?)").await;
    let mut params = vec![0x00, 0x01, 0x03, 0x00, 0x03, 0x00, 0x03, 0x00];
    for v in [4i32, 0, 5] {
        params.extend_from_slice(&v.to_le_bytes());
    }
    let r = p.execute(ids, 0, &params, "OUT parameters").await;
    assert!(r.len() > 6, "a result and the OUT parameters: {r:?}");
    let ids = p.prepare("SELECT ? + 1 AS x").await;
    p.execute(ids, 0, &one_int(1), "expression").await;

    let mut c = support::direct_conn().await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_deprecate_eof_replies_are_the_servers_bytes() {
    compare(classic()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_deprecate_eof_replies_are_the_servers_bytes() {
    compare(classic() | C::CLIENT_DEPRECATE_EOF).await;
}
