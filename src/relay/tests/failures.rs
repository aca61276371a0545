//! The relay when a reply does not end as it should: truncated, cut by
//! either side, malformed, or followed by stray bytes. The connection must
//! then never be reused.
use super::*;

fn result_set(rows: usize, end: bool) -> Vec<u8> {
    let mut all: Vec<Vec<u8>> = vec![vec![1], coldef("a"), eof(0, AUTOCOMMIT)];
    all.extend((0..rows).map(|i| format!("\x04{i:04}").into_bytes()));
    if end {
        all.push(eof(0, AUTOCOMMIT));
    }
    let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    packets(&refs)
}

#[tokio::test]
async fn a_truncated_reply_leaves_the_connection_pending_and_unusable() {
    // the server sends part of a result and then nothing: the caller
    // gives up (a timeout, a KILL) and drops the relay
    let mut h = harness(false);
    let part = result_set(10, false);
    h.server.write_all(&part).await.unwrap();
    let r = run_within(&mut h, Expect::Query, None, Duration::from_millis(200)).await;
    assert!(r.is_err(), "the relay cannot finish");
    assert!(h.backend.reply_pending() && !h.backend.broken);
    assert!(!h.backend.reusable(), "a pending reply is never reused");
    // what arrived was streamed to the client
    assert_eq!(received(&mut h).await, part);
}

#[tokio::test]
async fn a_backend_gone_mid_reply_breaks_the_connection() {
    let mut h = harness(false);
    h.server.write_all(&result_set(10, false)).await.unwrap();
    drop(take(&mut h.server));
    let r = run(&mut h, Expect::Query, None).await;
    assert!(
        matches!(r, Err(RelayError::Backend { sent: true, .. })),
        "{r:?}"
    );
    assert!(h.backend.broken && h.backend.reply_pending());
    assert!(!h.backend.reusable());
}

#[tokio::test]
async fn a_backend_gone_before_any_byte_was_sent() {
    let mut h = harness(false);
    drop(take(&mut h.server));
    let r = run(&mut h, Expect::Query, None).await;
    assert!(
        matches!(r, Err(RelayError::Backend { sent: false, .. })),
        "{r:?}"
    );
    assert!(!h.backend.reusable());
    assert!(received(&mut h).await.is_empty());
}

#[tokio::test]
async fn a_client_gone_mid_reply_breaks_the_connection() {
    let mut h = harness(false);
    // half a result: the relay flushes it to the client before reading on
    h.server.write_all(&result_set(10, false)).await.unwrap();
    drop(take(&mut h.app));
    let r = run(&mut h, Expect::Query, None).await;
    assert!(matches!(r, Err(RelayError::Client(_))), "{r:?}");
    assert!(h.backend.broken && !h.backend.reusable());
}

#[tokio::test]
async fn a_malformed_ok_breaks_the_connection() {
    let mut h = harness(false);
    h.server
        .write_all(&packets(&[&[0x00, 0x00]]))
        .await
        .unwrap();
    let r = run(&mut h, Expect::Query, None).await;
    assert!(matches!(r, Err(RelayError::Protocol(_))), "{r:?}");
    assert!(h.backend.broken && !h.backend.reusable());
    assert!(
        received(&mut h).await.is_empty(),
        "nothing reached the client"
    );
}

#[tokio::test]
async fn an_unexpected_first_packet_breaks_the_connection() {
    for (expect, first) in [
        (Expect::Execute, &[0xFB, b'x'][..]),
        (Expect::Query, &[0x00][..]),
        (Expect::Simple, &[0x01][..]),
    ] {
        let mut h = harness(false);
        h.server.write_all(&packets(&[first])).await.unwrap();
        let r = run(&mut h, expect, None).await;
        assert!(
            matches!(r, Err(RelayError::Protocol(_))),
            "{expect:?}: {r:?}"
        );
        assert!(h.backend.broken && !h.backend.reusable());
    }
}

#[tokio::test]
async fn bytes_after_the_reply_make_the_connection_unusable() {
    let mut h = harness(false);
    let mut bytes = result_set(3, true);
    bytes.extend_from_slice(&result_set(3, true));
    // both replies are buffered before the relay reads
    h.server.write_all(&bytes).await.unwrap();
    run(&mut h, Expect::Query, None).await.unwrap();
    assert!(!h.backend.io.rbuf.is_empty());
    assert!(!h.backend.reusable());
    let again = h.backend.send_command(&[0x03, b'x']).await;
    assert!(
        again.is_err() && h.backend.broken,
        "no new command on a desynchronised link"
    );
}

#[tokio::test]
async fn a_long_result_streams_through_a_small_pipe() {
    // more than the pipe holds: the relay must flush as it reads
    let reply = result_set(100_000, true);
    let (ours, mut server) = duplex(4096);
    let (theirs, mut app) = duplex(4096);
    let mut backend = BackendConn::for_tests(ours);
    backend.begin_reply();
    let mut client = PacketConn::with_stream(theirs);
    let script = reply.clone();
    let writer = tokio::spawn(async move { server.write_all(&script).await });
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; reply.len()];
        app.read_exact(&mut got).await.map(|_| got == reply)
    });
    let caps = backend.caps;
    let out = relay(
        &mut backend,
        &mut client,
        caps,
        Expect::Query,
        None,
        &mut |_, _| false,
    )
    .await
    .unwrap();
    client.flush().await.unwrap();
    assert!(reader.await.unwrap().unwrap());
    writer.await.unwrap().unwrap();
    assert_eq!(out.status, AUTOCOMMIT);
    assert!(backend.reusable());
}
