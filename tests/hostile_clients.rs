//! Hostile and broken clients against the real `causeway` binary on real
//! MySQL: oversized handshakes, slowloris sockets, oversized packets after
//! login, idle clients. Every test asserts that the proxy is alive, that a
//! control client is served within 1 s during the attack, that VmHWM stays
//! under idle + 64 MiB, and that nothing `panicked`. Hostile sockets are raw
//! tokio streams framed with `causeway::protocol`.

#[path = "support/mod.rs"]
mod support;

use bytes::BytesMut;
use causeway::protocol::handshake;
use causeway::protocol::packet::{write_packets, MAX_PAYLOAD};
use causeway::protocol::{ErrPacket, PacketConn, PacketError};
use mysql_async::prelude::Queryable;
use mysql_common::constants::CapabilityFlags;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::external::ExternalProxy;
use support::raw::{connect, connect_greeted, errors_in, read_until_closed, socket_login};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

/// Adds `keys` to the `[server]` section of the test config.
fn server_keys(keys: &'static str) -> impl FnOnce(String) -> String {
    move |t| t.replacen("[server]\n", &format!("[server]\n{keys}\n"), 1)
}

/// VmHWM after start and a few control clients.
async fn idle_hwm(p: &ExternalProxy) -> u64 {
    for _ in 0..3 {
        p.assert_served_within(Duration::from_secs(5)).await;
    }
    p.vm_hwm_kib()
}

/// The first packet of a hostile handshake response: a response whose
/// attribute block claims megabytes of unique keys, padded to 0xFFFFFF.
fn huge_first_packet() -> Arc<Vec<u8>> {
    let mut first = Vec::with_capacity(MAX_PAYLOAD);
    first.extend_from_slice(&handshake::server_capabilities().bits().to_le_bytes());
    first.extend_from_slice(&[0, 0, 0, 0x40, 255]);
    first.extend_from_slice(&[0; 23]);
    first.extend_from_slice(b"app\0\0caching_sha2_password\0");
    first.extend_from_slice(&[0xFD, 0xF0, 0xFF, 0xFF]);
    let mut n = 0u32;
    while first.len() < MAX_PAYLOAD - 16 {
        first.push(11);
        first.push(b'k');
        first.extend_from_slice(format!("{n:010}").as_bytes());
        first.extend_from_slice(&[1, b'v']);
        n += 1;
    }
    first.resize(MAX_PAYLOAD, b'x');
    Arc::new(first)
}

/// One unauthenticated socket sends a ~120 MB handshake response (eight
/// 0xFFFFFF packets). Returns (bytes the proxy let us write, time until it
/// closed, what it sent).
async fn huge_handshake(p: &ExternalProxy, first: Arc<Vec<u8>>) -> (usize, Duration, Vec<u8>) {
    let started = Instant::now();
    let (mut rd, mut wr) = connect(p.port).await.into_split();
    let writer = tokio::spawn(async move {
        let mut written = 0usize;
        for seq in 1..=8u8 {
            let header = [0xFF, 0xFF, 0xFF, seq];
            if wr.write_all(&header).await.is_err() || wr.write_all(&first).await.is_err() {
                break;
            }
            written += header.len() + first.len();
        }
        written
    });
    let got = read_until_closed(&mut rd, Duration::from_secs(20)).await;
    let closed_after = started.elapsed();
    let written = writer.await.expect("writer");
    (written, closed_after, got)
}

fn assert_refused_handshake(written: usize, closed_after: Duration, got: &[u8]) {
    assert!(
        closed_after < Duration::from_secs(5),
        "closed only after {closed_after:?}"
    );
    assert!(written < 120 * MIB, "the proxy read all {written} bytes");
    // whatever arrived after the greeting is the 1153 refusal (a reset
    // may swallow it: the client is still writing when the proxy closes)
    for (_, e) in errors_in(got) {
        assert_eq!((e.code, e.sqlstate()), (1153, "08S01"), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_handshake_responses_are_refused_from_their_header() {
    let mut p = ExternalProxy::start(|t| t).await;
    let idle = idle_hwm(&p).await;
    let first = huge_first_packet();
    // one socket, with a control client served while it runs
    let (attack, served) = tokio::join!(
        huge_handshake(&p, Arc::clone(&first)),
        p.assert_served_within(Duration::from_secs(1))
    );
    let (written, closed_after, got) = attack;
    assert_refused_handshake(written, closed_after, &got);
    eprintln!(
        "one 120 MB handshake: {written} bytes written before the close after {closed_after:?}"
    );
    let one = p.vm_hwm_kib();
    // four at once
    let (a, b, c, d, served4) = tokio::join!(
        huge_handshake(&p, Arc::clone(&first)),
        huge_handshake(&p, Arc::clone(&first)),
        huge_handshake(&p, Arc::clone(&first)),
        huge_handshake(&p, Arc::clone(&first)),
        p.assert_served_within(Duration::from_secs(1))
    );
    for (written, closed_after, got) in [a, b, c, d] {
        assert_refused_handshake(written, closed_after, &got);
    }
    let four = p.vm_hwm_kib();
    eprintln!(
        "VmHWM KiB: idle {idle}, after one 120 MB handshake {one}, after four {four}; \
         control client {served:?} / {served4:?}"
    );
    p.assert_healthy_after_attack(idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_sockets_do_not_lock_out_real_clients() {
    let mut p =
        ExternalProxy::start(server_keys("max_connections = 20\nlogin_timeout_ms = 1500")).await;
    let idle = idle_hwm(&p).await;
    // each socket reads its greeting first: then the proxy has accepted it
    // and set its socket options, so `ss` below sees all 50 as they stay.
    // A task per socket then waits for the proxy to close it, and measures
    // that from the socket's own connect.
    let (tx, closes) = tokio::sync::mpsc::unbounded_channel();
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    for k in 0..50 {
        let connected = Instant::now();
        let mut s = connect_greeted(p.port).await;
        if k % 2 == 1 {
            s.write_all(&[0x40, 0x00, 0x00])
                .await
                .expect("3 header bytes");
        }
        let tx = tx.clone();
        let mut start = go.subscribe();
        tokio::spawn(async move {
            // read only after `ss` has looked at the socket
            start.recv().await.ok();
            let got = read_until_closed(&mut s, Duration::from_secs(20)).await;
            tx.send((k, connected.elapsed(), errors_in(&got).len()))
                .ok();
        });
    }
    drop(tx);
    // the proxy's side of every client socket has TCP keepalive on
    let out = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .arg(format!("( sport = :{} )", p.port))
        .output()
        .expect("running ss (iproute2; integration/test.sh installs it)");
    assert!(out.status.success(), "ss: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 50, "{text}");
    assert!(
        lines.iter().all(|l| l.contains("timer:(keepalive")),
        "{text}"
    );
    go.send(()).expect("the socket tasks wait");
    // while the 50 sockets sit there, real clients log in, each within 1 s
    let mut took = Vec::new();
    for _ in 0..3 {
        took.push(p.assert_served_within(Duration::from_secs(1)).await);
    }
    // and 20 of them can be logged in at once: the sockets take no slot
    // (the control clients' slots are released as their QUIT is handled:
    // a 1040 is retried for a bounded time)
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while held.len() < 20 {
        match mysql_async::Conn::new(p.opts("app", "apppw")).await {
            Ok(c) => held.push(c),
            Err(mysql_async::Error::Server(e)) if e.code == 1040 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("login {} next to the slowloris sockets: {e}", held.len()),
        }
    }
    // the 21st is refused as MySQL refuses it (before the greeting, so
    // without a SQLSTATE): max_connections counts logged-in clients
    match mysql_async::Conn::new(p.opts("app", "apppw")).await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!((e.code, e.message.as_str()), (1040, "Too many connections"))
        }
        other => panic!("21st login: expected 1040, got {:?}", other.map(|_| ())),
    }
    for c in held {
        c.disconnect().await.expect("disconnect");
    }
    // the proxy closes each of them login_timeout_ms after its own accept:
    // not before (its connect preceded the accept), and not much later
    let closes: Vec<(usize, Duration, usize)> = tokio_stream_collect(closes).await;
    assert_eq!(closes.len(), 50, "every socket was closed");
    for (k, after, errors) in &closes {
        assert_eq!(*errors, 0, "socket {k}: no ERR packet, only a close");
        assert!(
            *after >= Duration::from_millis(1500) && *after < Duration::from_millis(5000),
            "socket {k} closed {after:?} after its connect (login_timeout_ms = 1500)"
        );
    }
    let closed_after = closes.iter().map(|c| c.1).max().unwrap_or_default();
    let hwm = p.vm_hwm_kib();
    eprintln!(
        "slowloris: VmHWM KiB idle {idle}, after {hwm}; control logins {took:?}; \
         slowest close {closed_after:?} after its connect"
    );
    p.assert_healthy_after_attack(idle).await;
}

/// Everything sent on `rx` until every sender is gone.
async fn tokio_stream_collect<T>(mut rx: tokio::sync::mpsc::UnboundedReceiver<T>) -> Vec<T> {
    let mut all = Vec::new();
    while let Some(v) = rx.recv().await {
        all.push(v);
    }
    all
}

/// Sends `payload` as one logical packet over a logged-in raw socket while
/// reading the reply; returns (ERR packets with seq ids, whether closed).
async fn send_oversized(p: &ExternalProxy, payload: Vec<u8>) -> Vec<(u8, ErrPacket)> {
    let conn = socket_login(p.port, CapabilityFlags::empty()).await.0;
    let stream = conn_into_stream(conn);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut wire = BytesMut::with_capacity(payload.len() + 64);
        let mut seq = 0;
        write_packets(&mut wire, &mut seq, &payload);
        drop(payload);
        wr.write_all(&wire).await.is_ok()
    });
    let got = read_until_closed(&mut rd, Duration::from_secs(30)).await;
    let _ = writer.await;
    errors_in(&got)
}

fn conn_into_stream(conn: PacketConn) -> TcpStream {
    assert!(conn.rbuf.is_empty(), "unread bytes after login");
    let fd = conn.tcp().expect("a TCP socket");
    use std::os::fd::AsFd;
    let owned = fd.as_fd().try_clone_to_owned().expect("dup");
    let std = std::net::TcpStream::from(owned);
    std.set_nonblocking(true).expect("nonblocking");
    TcpStream::from_std(std).expect("register")
}

fn select_of(len: usize) -> Vec<u8> {
    let mut q = b"\x03SELECT LENGTH('".to_vec();
    q.resize(len - 2, b'a');
    q.extend_from_slice(b"')");
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_over_max_client_packet_get_1153() {
    let mut p = ExternalProxy::start(|t| t).await;
    let idle = idle_hwm(&p).await;
    // 70 MiB against the 64 MiB default: five packets, refused at the fifth
    let (errs, served) = tokio::join!(
        send_oversized(&p, select_of(70 * MIB)),
        p.assert_served_within(Duration::from_secs(1))
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    let (seq, e) = &errs[0];
    assert_eq!((e.code, e.sqlstate()), (1153, "08S01"));
    assert_eq!(
        e.message,
        "Got a packet bigger than 'max_allowed_packet' bytes"
    );
    assert_eq!(*seq, 5, "the reply follows the client's five packets");
    let hwm = p.vm_hwm_kib();
    eprintln!("70 MiB packet: VmHWM KiB idle {idle}, after {hwm}; control client {served:?}");
    p.assert_alive();
    p.assert_no_panic();
    // the largest packet the default allows is served
    let mut c = mysql_async::Conn::new(
        mysql_async::OptsBuilder::from_opts(p.opts("app", "apppw"))
            .max_allowed_packet(Some(1 << 30)),
    )
    .await
    .expect("login");
    let n: Option<u64> = c
        .query_first(format!("SELECT LENGTH('{}')", "b".repeat(8 * MIB)))
        .await
        .expect("an 8 MiB query passes");
    assert_eq!(n, Some(8 * MIB as u64));
    drop(c);
    // A payload of up to max_client_packet is legitimately buffered (MySQL
    // does the same), and the refusal comes at the header that crosses the
    // limit: the bound here is idle + max_client_packet + 1 MiB.
    p.assert_alive();
    p.assert_served_within(Duration::from_secs(1)).await;
    let hwm = p.vm_hwm_kib();
    assert!(
        hwm <= idle + 64 * 1024 + 1024,
        "VmHWM {hwm} KiB exceeds idle {idle} KiB + 64 MiB + 1 MiB"
    );
    p.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_packet_is_configurable() {
    let mut p = ExternalProxy::start(server_keys("max_client_packet = 1048576")).await;
    let idle = idle_hwm(&p).await;
    let errs = send_oversized(&p, select_of(2 * MIB)).await;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].0, errs[0].1.code), (1, 1153));
    // a real client sees MySQL's error
    let opts = mysql_async::OptsBuilder::from_opts(p.opts("app", "apppw"))
        .max_allowed_packet(Some(1 << 30));
    let mut c = mysql_async::Conn::new(opts).await.expect("login");
    let ok: Option<u64> = c
        .query_first(format!("SELECT LENGTH('{}')", "c".repeat(MIB - 100)))
        .await
        .expect("a packet under the limit passes");
    assert_eq!(ok, Some(MIB as u64 - 100));
    match c
        .query_drop(format!("SELECT LENGTH('{}')", "c".repeat(2 * MIB)))
        .await
    {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!((e.code, e.state.as_str()), (1153, "08S01"))
        }
        other => panic!("expected 1153, got {other:?}"),
    }
    p.assert_served_within(Duration::from_secs(1)).await;
    eprintln!(
        "max_client_packet 1 MiB: VmHWM KiB idle {idle}, after {}",
        p.vm_hwm_kib()
    );
    p.assert_healthy_after_attack(idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_get_4031_outside_transactions() {
    let mut p = ExternalProxy::start(server_keys("client_idle_timeout_ms = 1000")).await;
    let idle = idle_hwm(&p).await;
    // an idle client: unsolicited ERR 4031 with sequence id 0, then the close
    let mut raw = socket_login(p.port, CapabilityFlags::empty()).await.0;
    let started = Instant::now();
    let pkt = tokio::time::timeout(Duration::from_secs(10), raw.read_packet())
        .await
        .expect("4031 within 10 s")
        .expect("an ERR packet");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "cut after {waited:?}");
    assert_eq!(pkt.seq, 0);
    let e = ErrPacket::parse(&pkt.payload).expect("ERR");
    assert_eq!((e.code, e.sqlstate()), (4031, "HY000"));
    assert_eq!(
        e.message,
        "The client was disconnected by the server because of inactivity. See wait_timeout \
         and interactive_timeout for configuring this behavior."
    );
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), raw.read_packet()).await,
        Ok(Err(PacketError::Closed | PacketError::Io(_)))
    ));
    // inside a transaction the client is not cut
    let mut c = mysql_async::Conn::new(p.opts("app", "apppw"))
        .await
        .expect("login");
    c.query_drop("BEGIN").await.expect("BEGIN");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let one: Option<i64> = c
        .query_first("SELECT 1")
        .await
        .expect("still connected inside the transaction");
    assert_eq!(one, Some(1));
    c.query_drop("COMMIT").await.expect("COMMIT");
    // after it, the idle timeout applies again
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(c.query_drop("SELECT 1").await.is_err(), "idle client kept");
    // a busy client is never idle
    let mut busy = mysql_async::Conn::new(p.opts("app", "apppw"))
        .await
        .expect("login");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        busy.query_drop("SELECT 1")
            .await
            .expect("active client kept");
    }
    eprintln!(
        "idle timeout: 4031 after {waited:?}; VmHWM KiB idle {idle}, after {}",
        p.vm_hwm_kib()
    );
    p.assert_healthy_after_attack(idle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_auth_switch_reply_is_refused() {
    let mut p = ExternalProxy::start(|t| t).await;
    let idle = idle_hwm(&p).await;
    let mut c = PacketConn::new(connect(p.port).await);
    c.read_packet().await.expect("greeting");
    // answer with another plugin than the user's: the proxy switches us
    let caps = handshake::server_capabilities();
    let hello = handshake::client_hello(caps, 255, "app", &[], None, handshake::NATIVE);
    let mut seq = 1;
    c.send(&mut seq, &hello).await.expect("send hello");
    let switch = c.read_packet().await.expect("auth switch request");
    assert_eq!(switch.payload.first(), Some(&0xFE));
    // a 16 MiB reply, of which only the header is ever sent
    let header = [0xFF, 0xFF, 0xFF, switch.seq.wrapping_add(1)];
    c.write_raw(&header).await.expect("header");
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), c.read_packet())
        .await
        .expect("refused from the header alone")
        .expect("an ERR");
    let e = ErrPacket::parse(&reply.payload).expect("ERR");
    assert_eq!((e.code, e.sqlstate()), (1153, "08S01"));
    assert_eq!(reply.seq, switch.seq.wrapping_add(2));
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), c.read_packet()).await,
        Ok(Err(PacketError::Closed | PacketError::Io(_)))
    ));
    eprintln!("auth switch: refused after {:?}", started.elapsed());
    p.assert_healthy_after_attack(idle).await;
}

/// Many statements, admin endpoint off (the default of `ExternalProxy`):
/// resident memory stays flat. The metrics recorder keeps every histogram
/// sample until its upkeep runs; without the admin endpoint nothing ran it,
/// and the proxy grew by 16–33 bytes per statement, forever (35 measured
/// here; 8 with upkeep, the allocator's own drift).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_over_many_statements() {
    let p = ExternalProxy::start(|cfg| cfg).await;
    let run = |n: usize| {
        let opts = p.opts("app", "apppw");
        async move {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let opts = opts.clone();
                    tokio::spawn(async move {
                        let mut c = mysql_async::Conn::new(opts).await.expect("login");
                        for _ in 0..n / 4 {
                            let one: Option<u8> =
                                c.query_first("SELECT 1").await.expect("SELECT 1");
                            assert_eq!(one, Some(1));
                        }
                        c.disconnect().await.expect("disconnect");
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("client task");
            }
        }
    };
    // warm up: pools, buffers and the allocator's arenas reach their size
    run(20_000).await;
    let before = p.status_kib("VmRSS");
    let n = 120_000;
    let started = Instant::now();
    run(n).await;
    let after = p.status_kib("VmRSS");
    let per_statement = after.saturating_sub(before) as f64 * 1024.0 / n as f64;
    eprintln!(
        "VmRSS KiB before {before}, after {after} ({n} statements in {:?}): {per_statement:.2} bytes per statement",
        started.elapsed()
    );
    assert!(
        per_statement < 16.0,
        "resident memory grew by {per_statement:.2} bytes per statement"
    );
    p.assert_no_panic();
}
