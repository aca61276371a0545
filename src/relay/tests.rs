//! The relay over real loopback sockets with scripted server bytes: a
//! connection is reusable only after its reply was read to its end.
use super::*;
use crate::protocol::packet::write_packets;
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

/// A one-column text result (classic EOF) whose `rows` rows look like
/// OK packets; with `end == false` the final EOF is missing.
fn result_set(rows: usize, end: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = 1;
    write_packets(&mut out, &mut seq, &[1]);
    write_packets(&mut out, &mut seq, b"\x03def\x00\x00\x00\x01a\x00\x0c");
    write_packets(&mut out, &mut seq, &[0xFE, 0, 0, 2, 0]);
    for _ in 0..rows {
        write_packets(&mut out, &mut seq, &[0x00, 0x06, 0, 0, 0, 0, 0, 0]);
    }
    if end {
        write_packets(&mut out, &mut seq, &[0xFE, 0, 0, 2, 0]);
    }
    out.to_vec()
}

/// A backend connection whose server side sends `bytes` and then stays
/// open (the handle keeps the socket).
async fn scripted(bytes: Vec<u8>) -> (BackendConn, tokio::task::JoinHandle<TcpStream>) {
    let (ours, mut theirs) = pair().await;
    let writer = tokio::spawn(async move {
        let _ = theirs.write_all(&bytes).await;
        theirs
    });
    (BackendConn::for_tests(ours), writer)
}

async fn run(backend: &mut BackendConn, client: &mut PacketConn) -> Result<Outcome, RelayError> {
    let caps = backend.caps;
    relay(backend, client, caps, Expect::Query, None, &mut |_, _| {
        false
    })
    .await
}

#[tokio::test]
async fn a_reply_read_to_its_end_leaves_the_connection_reusable() {
    let (mut backend, _w) = scripted(result_set(100, true)).await;
    let (client_sock, _peer) = pair().await;
    let mut client = PacketConn::new(client_sock);
    run(&mut backend, &mut client).await.unwrap();
    assert!(backend.reusable());
}

#[tokio::test]
async fn a_client_gone_mid_result_breaks_the_connection() {
    let (mut backend, _w) = scripted(result_set(400_000, true)).await;
    let (client_sock, peer) = pair().await;
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    let mut client = PacketConn::new(client_sock);
    let r = run(&mut backend, &mut client).await;
    assert!(matches!(r, Err(RelayError::Client(_))), "{r:?}");
    assert!(backend.broken);
    assert!(!backend.reusable());
}

#[tokio::test]
async fn a_backend_gone_mid_result_breaks_the_connection() {
    let (ours, mut theirs) = pair().await;
    theirs.write_all(&result_set(10, false)).await.unwrap();
    drop(theirs);
    let mut backend = BackendConn::for_tests(ours);
    let (client_sock, _peer) = pair().await;
    let mut client = PacketConn::new(client_sock);
    let r = run(&mut backend, &mut client).await;
    assert!(
        matches!(r, Err(RelayError::Backend { sent: true, .. })),
        "{r:?}"
    );
    assert!(!backend.reusable());
}

#[tokio::test]
async fn a_relay_abandoned_mid_reply_leaves_the_connection_unusable() {
    // the server sends half a result and then nothing: the caller gives
    // up (a timeout, a KILL) and drops the relay
    let (mut backend, _w) = scripted(result_set(10, false)).await;
    let (client_sock, _peer) = pair().await;
    let mut client = PacketConn::new(client_sock);
    let r = tokio::time::timeout(Duration::from_millis(200), run(&mut backend, &mut client)).await;
    assert!(r.is_err(), "the relay cannot finish");
    assert!(!backend.broken);
    assert!(!backend.reusable(), "a pending reply is never reused");
}

#[tokio::test]
async fn a_malformed_ok_breaks_the_connection() {
    let mut bytes = BytesMut::new();
    write_packets(&mut bytes, &mut 1, &[0x00, 0x00]);
    let (mut backend, _w) = scripted(bytes.to_vec()).await;
    let (client_sock, _peer) = pair().await;
    let mut client = PacketConn::new(client_sock);
    let r = run(&mut backend, &mut client).await;
    assert!(matches!(r, Err(RelayError::Protocol(_))), "{r:?}");
    assert!(!backend.reusable());
}

#[tokio::test]
async fn bytes_after_the_reply_make_the_connection_unusable() {
    let mut bytes = result_set(3, true);
    bytes.extend_from_slice(&result_set(3, true));
    // both replies are in the socket buffer before the relay reads
    let (ours, mut theirs) = pair().await;
    theirs.write_all(&bytes).await.unwrap();
    let mut backend = BackendConn::for_tests(ours);
    let (client_sock, _peer) = pair().await;
    let mut client = PacketConn::new(client_sock);
    run(&mut backend, &mut client).await.unwrap();
    assert!(!backend.io.rbuf.is_empty());
    assert!(!backend.reusable());
    let again = backend.send_command(&[0x03, b'x']).await;
    assert!(
        again.is_err() && backend.broken,
        "no new command on a desynchronised link"
    );
}
