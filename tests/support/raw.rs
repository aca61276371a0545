//! Raw MySQL protocol clients for tests that drive the proxy packet by
//! packet: logins (through causeway's own `BackendConn`, or by hand over a
//! socket), command framing, bounded packet reads, reading a socket until
//! the server closes it, and the ERR packets framed in captured bytes.

use causeway::backend::{BackendConn, LinkKey, Login};
use causeway::protocol::{handshake, ErrPacket, PacketConn};
use mysql_common::constants::CapabilityFlags;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A raw client logged in to the proxy at `addr` (host:port) as `user`,
/// asking for `caps` (with `collation`, optionally into `db`); every I/O
/// step bounded by `limit`. It speaks the client side of the protocol, so
/// tests drive it through its `io`.
pub struct RawLogin<'a> {
    pub addr: String,
    pub user: &'a str,
    pub password: &'a str,
    pub caps: CapabilityFlags,
    pub collation: u8,
    pub db: Option<&'a str>,
    pub limit: Duration,
}

impl<'a> RawLogin<'a> {
    /// `app` / `apppw` on `addr`, utf8mb4, no capabilities asked, no
    /// schema, 10 s per step.
    pub fn app(addr: impl Into<String>) -> RawLogin<'a> {
        RawLogin {
            addr: addr.into(),
            user: "app",
            password: "apppw",
            caps: CapabilityFlags::empty(),
            collation: 255,
            db: None,
            limit: Duration::from_secs(10),
        }
    }

    /// Logs in; panics when the proxy refuses.
    pub async fn connect(self) -> BackendConn {
        let login = Login {
            user: self.user.into(),
            password: self.password.into(),
        };
        let key = LinkKey {
            user: self.user.into(),
            caps: self.caps.bits(),
            collation: self.collation,
        };
        BackendConn::connect("causeway", &self.addr, &login, key, self.db, self.limit)
            .await
            .expect("raw login through causeway")
    }
}

/// A TCP connection to the proxy on `port`.
pub async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to causeway")
}

/// Connects and reads the greeting, sending nothing.
pub async fn connect_greeted(port: u16) -> TcpStream {
    let mut s = connect(port).await;
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.expect("greeting header");
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.expect("greeting payload");
    assert_eq!(payload.first(), Some(&10), "a protocol-10 greeting");
    s
}

/// Logs in as `app` over a raw socket, by hand (caching_sha2 fast path):
/// the capabilities causeway offers minus query attributes (plain
/// COM_QUERY payloads), plus `extra` (e.g. `CLIENT_COMPRESS`, which the
/// caller then turns on). Returns the connection and the greeting.
pub async fn socket_login(
    port: u16,
    extra: CapabilityFlags,
) -> (PacketConn, handshake::ServerHello) {
    let mut c = PacketConn::new(connect(port).await);
    let greet = c.read_packet().await.expect("greeting");
    let hello = handshake::parse_server_hello(&greet.payload).expect("greeting parses");
    let resp = handshake::scramble(&hello.plugin, &hello.nonce, "apppw").expect("plugin");
    let caps = handshake::server_capabilities() - CapabilityFlags::CLIENT_QUERY_ATTRIBUTES;
    let mut login = handshake::client_hello(caps, 255, "app", &resp, None, &hello.plugin);
    if !extra.is_empty() {
        // client_hello never asks for compression (it builds backend logins)
        let sent = u32::from_le_bytes(login[..4].try_into().unwrap());
        login[..4].copy_from_slice(&(sent | extra.bits()).to_le_bytes());
    }
    let mut seq = 1;
    c.send(&mut seq, &login).await.expect("send login");
    loop {
        let p = c.read_packet().await.expect("login reply");
        match p.payload.first() {
            Some(0x00) => return (c, hello),
            Some(0x01) => continue,
            other => panic!(
                "login refused: {other:?} {:?}",
                ErrPacket::parse(&p.payload)
            ),
        }
    }
}

/// A command payload: the command byte, then its argument.
pub fn cmd(code: u8, arg: &[u8]) -> Vec<u8> {
    let mut v = vec![code];
    v.extend_from_slice(arg);
    v
}

/// Queues COM_QUERY `sql` (sequence id 0); the caller flushes.
pub fn queue_query(io: &mut PacketConn, sql: &str) {
    let mut seq = 0;
    io.queue(&mut seq, &cmd(0x03, sql.as_bytes()));
}

/// Sends `payload` as a command (sequence id 0).
pub async fn send(c: &mut BackendConn, payload: &[u8]) {
    c.io.send(&mut 0, payload).await.expect("send");
}

/// Sends `payload` as a command and returns the first reply packet.
pub async fn command(c: &mut BackendConn, payload: &[u8]) -> Vec<u8> {
    let mut seq = 0;
    c.io.send(&mut seq, payload).await.unwrap();
    c.io.read_packet()
        .await
        .unwrap_or_else(|e| panic!("reply to {:02x?}: {e}", &payload[..payload.len().min(4)]))
        .payload
        .to_vec()
}

/// Reads one packet within `limit`: (sequence id, payload).
pub async fn read_within(io: &mut PacketConn, limit: Duration) -> (u8, Vec<u8>) {
    let p = tokio::time::timeout(limit, io.read_packet())
        .await
        .expect("reply within the limit")
        .expect("reply packet");
    (p.seq, p.payload.to_vec())
}

/// Reads until end of stream (or a reset) within `limit`; returns what
/// arrived. Panics if the socket is still open after `limit`.
pub async fn read_until_closed(s: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("socket still open after {limit:?}; got {} bytes", got.len()),
        }
    }
}

/// The ERR packets framed in `bytes`, with their sequence ids.
pub fn errors_in(bytes: &[u8]) -> Vec<(u8, ErrPacket)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some((len, seq)) = causeway::protocol::packet::complete_packet_len(rest) {
        let payload = &rest[4..4 + len];
        if payload.first() == Some(&0xFF) {
            out.push((seq, ErrPacket::parse(payload).expect("ERR parses")));
        }
        rest = &rest[4 + len..];
    }
    out
}
