//! The relay over in-memory streams (`tokio::io::duplex`), one test per
//! reply shape: what the client receives, byte for byte, what the relay
//! reports, and the state the backend connection is left in (reusable only
//! after its reply was read to its end).
use super::*;
use crate::backend::conn::base_capabilities;
use crate::protocol::messages::{self, eof, gtids_state_entry, track};
use crate::protocol::packet::write_packets;
use crate::protocol::packet::MAX_PAYLOAD;
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

const MORE: u16 = 0x0008; // SERVER_MORE_RESULTS_EXISTS
const CURSOR: u16 = 0x0040; // SERVER_STATUS_CURSOR_EXISTS
const LAST_ROW: u16 = 0x0080; // SERVER_STATUS_LAST_ROW_SENT
const AUTOCOMMIT: u16 = 0x0002;

mod failures;
mod framing;

/// The relay between a scripted server and a client application, all in
/// memory.
struct Harness {
    backend: BackendConn<DuplexStream>,
    /// The MySQL server's end of the backend connection.
    server: DuplexStream,
    client: PacketConn<DuplexStream>,
    /// The client application's end of the client connection.
    app: DuplexStream,
}

fn harness(deprecate_eof: bool) -> Harness {
    let (ours, server) = duplex(1 << 20);
    let (theirs, app) = duplex(1 << 20);
    let mut backend = BackendConn::for_tests(ours);
    backend
        .caps
        .set(CapabilityFlags::CLIENT_DEPRECATE_EOF, deprecate_eof);
    // a command was sent: its reply is what the relay reads
    backend.begin_reply();
    Harness {
        backend,
        server,
        client: PacketConn::with_stream(theirs),
        app,
    }
}

/// Takes one end of a connection out of the harness (a closed stream is
/// left in its place), to move it into a task or to drop it.
fn take(end: &mut DuplexStream) -> DuplexStream {
    std::mem::replace(end, duplex(1).0)
}

/// Packets as a server sends them, sequence ids from 1.
fn packets(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = 1;
    for p in payloads {
        write_packets(&mut out, &mut seq, p);
    }
    out.to_vec()
}

fn ok(status: u16, session_state: Vec<u8>, header: u8) -> Vec<u8> {
    let status = if session_state.is_empty() {
        status
    } else {
        status | StatusFlags::SERVER_SESSION_STATE_CHANGED.bits()
    };
    OkPacket {
        affected_rows: 1,
        status,
        session_state,
        ..OkPacket::default()
    }
    .encode(header, base_capabilities())
}

fn coldef(name: &str) -> Vec<u8> {
    let mut p = b"\x03def\x04test\x01t\x01t".to_vec();
    p.push(name.len() as u8);
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(b"\x00\x0c\xff\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00");
    p
}

fn err_packet() -> Vec<u8> {
    ErrPacket::new(1146, "42S02", "Table 'test.nope' doesn't exist").encode()
}

/// Relays the reply to `expect`, with the link's capabilities on both
/// sides, for at most `limit` (`Err` when it did not finish by then).
async fn run_within(
    h: &mut Harness,
    expect: Expect,
    stmt_id: Option<u32>,
    limit: Duration,
) -> Result<Result<Outcome, RelayError>, tokio::time::error::Elapsed> {
    let caps = h.backend.caps;
    let mut hook = |_: &mut OkPacket, _| false;
    let fut = relay(
        &mut h.backend,
        &mut h.client,
        caps,
        expect,
        stmt_id,
        &mut hook,
    );
    tokio::time::timeout(limit, fut).await
}

/// [`run_within`] a generous bound that the relay must finish within.
async fn run(h: &mut Harness, expect: Expect, stmt_id: Option<u32>) -> Result<Outcome, RelayError> {
    run_within(h, expect, stmt_id, Duration::from_secs(30))
        .await
        .expect("the relay finishes")
}

/// Everything the client application received (the relay leaves the
/// reply's end queued: it is flushed here first).
async fn received(h: &mut Harness) -> Vec<u8> {
    h.client.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    // everything was written before: a read that would wait means the end
    while let Ok(n) = tokio::time::timeout(Duration::ZERO, h.app.read(&mut buf)).await {
        let n = n.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Relays `reply` as the answer to `expect` and checks it reached the
/// client unchanged and left the connection reusable.
async fn relays_verbatim(deprecate_eof: bool, expect: Expect, reply: &[u8]) -> Outcome {
    let mut h = harness(deprecate_eof);
    h.server.write_all(reply).await.unwrap();
    let out = run(&mut h, expect, None).await.unwrap();
    assert_eq!(received(&mut h).await, reply);
    assert!(h.backend.reusable(), "the reply was read to its end");
    out
}

#[tokio::test]
async fn ok_reaches_the_client_unchanged() {
    let reply = packets(&[&ok(AUTOCOMMIT, Vec::new(), 0)]);
    let out = relays_verbatim(false, Expect::Query, &reply).await;
    assert_eq!(out.status, AUTOCOMMIT);
    assert!(out.error.is_none() && out.gtids.is_none());
}

#[tokio::test]
async fn err_ends_the_reply_and_is_reported() {
    let reply = packets(&[&err_packet()]);
    let out = relays_verbatim(false, Expect::Query, &reply).await;
    assert_eq!(out.error.map(|e| e.code), Some(1146));
}

#[tokio::test]
async fn text_result_set_with_classic_eof() {
    let reply = packets(&[
        &[2],
        &coldef("a"),
        &coldef("b"),
        &eof(0, AUTOCOMMIT),
        b"\x011\x01x",
        b"\x012\xfb",
        &eof(0, AUTOCOMMIT | 0x0020),
    ]);
    let out = relays_verbatim(false, Expect::Query, &reply).await;
    assert_eq!(out.status, AUTOCOMMIT | 0x0020);
}

#[tokio::test]
async fn text_result_set_with_deprecate_eof_ends_with_an_ok() {
    let state = gtids_state_entry("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5");
    let reply = packets(&[
        &[1],
        &coldef("a"),
        b"\x011",
        // a row that starts like an OK packet is still a row
        b"\x00",
        &ok(AUTOCOMMIT, state, 0xFE),
    ]);
    let out = relays_verbatim(true, Expect::Query, &reply).await;
    assert_eq!(out.status & AUTOCOMMIT, AUTOCOMMIT);
    assert_eq!(
        out.gtids.as_deref(),
        Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")
    );
}

#[tokio::test]
async fn multi_results_are_relayed_to_the_last_one() {
    for deprecate_eof in [false, true] {
        let end_rows = |status| {
            if deprecate_eof {
                ok(status, Vec::new(), 0xFE)
            } else {
                eof(0, status)
            }
        };
        let col = coldef("a");
        let mut first: Vec<&[u8]> = vec![&[1], &col];
        let cols_eof = eof(0, AUTOCOMMIT);
        if !deprecate_eof {
            first.push(&cols_eof);
        }
        let end1 = end_rows(AUTOCOMMIT | MORE);
        let ok2 = ok(AUTOCOMMIT | MORE, Vec::new(), 0);
        let end3 = end_rows(AUTOCOMMIT);
        let mut all = first.clone();
        all.extend_from_slice(&[b"\x011", &end1, &ok2]);
        all.extend_from_slice(&first);
        all.extend_from_slice(&[b"\x012", &end3]);
        let reply = packets(&all);
        let out = relays_verbatim(deprecate_eof, Expect::Query, &reply).await;
        assert_eq!(out.status, AUTOCOMMIT, "deprecate_eof = {deprecate_eof}");
    }
}

#[tokio::test]
async fn an_error_in_a_later_result_ends_the_reply() {
    let reply = packets(&[&ok(MORE, Vec::new(), 0), &err_packet()]);
    let out = relays_verbatim(false, Expect::Query, &reply).await;
    assert_eq!(out.error.map(|e| e.code), Some(1146));
}

#[tokio::test]
async fn local_infile_pumps_the_client_file_to_the_backend() {
    let mut h = harness(false);
    let request = packets(&[b"\xfb/tmp/data.csv"]);
    let mut file = BytesMut::new();
    let mut seq = 2;
    write_packets(&mut file, &mut seq, b"1,one\n2,two\n");
    write_packets(&mut file, &mut seq, b"3,three\n");
    write_packets(&mut file, &mut seq, b"");
    let mut done = BytesMut::new();
    write_packets(&mut done, &mut seq, &ok(AUTOCOMMIT, Vec::new(), 0));
    // the client sends its file (and nothing else) once asked
    h.app.write_all(&file).await.unwrap();
    h.server.write_all(&request).await.unwrap();
    let mut server = take(&mut h.server);
    let expected_file = file.to_vec();
    let done_bytes = done.to_vec();
    let script = tokio::spawn(async move {
        let mut got = vec![0u8; expected_file.len()];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(&done_bytes).await.unwrap();
        (got, server)
    });
    let out = run(&mut h, Expect::Query, None).await.unwrap();
    let (got, _server) = script.await.unwrap();
    assert_eq!(got, file.to_vec(), "the backend got the file as sent");
    let mut expected = request.clone();
    expected.extend_from_slice(&done);
    assert_eq!(received(&mut h).await, expected);
    assert_eq!(out.status, AUTOCOMMIT);
    assert!(h.backend.reusable() && h.client.rbuf.is_empty());
}

/// A binary result: rows start with 0x00 (not OKs) and carry a NULL bitmap.
fn binary_result(deprecate_eof: bool, end_status: u16) -> Vec<u8> {
    let (c1, c2) = (coldef("id"), coldef("v"));
    let mut all: Vec<Vec<u8>> = vec![vec![2], c1, c2];
    if !deprecate_eof {
        all.push(eof(0, AUTOCOMMIT));
    }
    all.push(b"\x00\x00\x07\x00\x00\x00\x03abc".to_vec());
    all.push(b"\x00\x08\x08\x00\x00\x00".to_vec());
    all.push(if deprecate_eof {
        ok(end_status, Vec::new(), 0xFE)
    } else {
        eof(0, end_status)
    });
    let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    packets(&refs)
}

#[tokio::test]
async fn binary_rows_are_not_mistaken_for_ok_packets() {
    for deprecate_eof in [false, true] {
        let reply = binary_result(deprecate_eof, AUTOCOMMIT);
        let out = relays_verbatim(deprecate_eof, Expect::Execute, &reply).await;
        assert_eq!(out.status, AUTOCOMMIT);
    }
}

#[tokio::test]
async fn a_cursor_ends_the_execute_reply_and_fetch_reads_the_rows() {
    // classic EOF: the column EOF carries CURSOR_EXISTS, no rows follow
    let reply = packets(&[&[1], &coldef("a"), &eof(0, AUTOCOMMIT | CURSOR)]);
    let out = relays_verbatim(false, Expect::Execute, &reply).await;
    assert_eq!(out.status & CURSOR, CURSOR);
    // DEPRECATE_EOF: the terminator after the columns carries it
    let reply = packets(&[
        &[1],
        &coldef("a"),
        &ok(AUTOCOMMIT | CURSOR, Vec::new(), 0xFE),
    ]);
    let out = relays_verbatim(true, Expect::Execute, &reply).await;
    assert_eq!(out.status & CURSOR, CURSOR);
    // COM_STMT_FETCH: rows, then a terminator
    let fetch = packets(&[
        b"\x00\x00\x01\x00\x00\x00",
        b"\x00\x00\x02\x00\x00\x00",
        &eof(0, AUTOCOMMIT | CURSOR | LAST_ROW),
    ]);
    let out = relays_verbatim(false, Expect::Fetch, &fetch).await;
    assert_eq!(out.status & LAST_ROW, LAST_ROW);
    let fetch_err = packets(&[&err_packet()]);
    let out = relays_verbatim(false, Expect::Fetch, &fetch_err).await;
    assert!(out.error.is_some());
}

fn prepare_ok(id: u32, cols: u16, params: u16) -> Vec<u8> {
    let mut p = vec![0x00];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&cols.to_le_bytes());
    p.extend_from_slice(&params.to_le_bytes());
    p.extend_from_slice(&[0, 0, 0]);
    p
}

#[tokio::test]
async fn prepare_reply_gets_the_client_statement_id() {
    for deprecate_eof in [false, true] {
        let mut h = harness(deprecate_eof);
        let (p1, p2, c1) = (coldef("?"), coldef("?"), coldef("a"));
        let mut rest: Vec<&[u8]> = vec![&p1, &p2];
        let e = eof(0, AUTOCOMMIT);
        if !deprecate_eof {
            rest.push(&e);
        }
        rest.push(&c1);
        if !deprecate_eof {
            rest.push(&e);
        }
        let backend_ok = prepare_ok(0x0102_0304, 1, 2);
        let mut all: Vec<&[u8]> = vec![&backend_ok];
        all.extend_from_slice(&rest);
        h.server.write_all(&packets(&all)).await.unwrap();
        let out = run(&mut h, Expect::Prepare, Some(5)).await.unwrap();
        assert_eq!(out.prepared, Some((0x0102_0304, 1, 2)));
        let client_ok = prepare_ok(5, 1, 2);
        let mut expected: Vec<&[u8]> = vec![&client_ok];
        expected.extend_from_slice(&rest);
        assert_eq!(received(&mut h).await, packets(&expected));
        assert!(h.backend.reusable());
    }
}

#[tokio::test]
async fn prepare_without_params_or_columns_is_one_packet() {
    let reply = packets(&[&prepare_ok(9, 0, 0)]);
    let out = relays_verbatim(false, Expect::Prepare, &reply).await;
    assert_eq!(out.prepared, Some((9, 0, 0)));
    let reply = packets(&[&err_packet()]);
    let out = relays_verbatim(false, Expect::Prepare, &reply).await;
    assert!(out.prepared.is_none() && out.error.is_some());
}

#[tokio::test]
async fn simple_field_list_and_statistics_replies() {
    let reply = packets(&[&eof(0, AUTOCOMMIT)]);
    let out = relays_verbatim(false, Expect::Simple, &reply).await;
    assert_eq!(out.status, AUTOCOMMIT);
    let reply = packets(&[&coldef("a"), &coldef("b"), &eof(0, AUTOCOMMIT)]);
    relays_verbatim(false, Expect::FieldList, &reply).await;
    let reply = packets(&[b"Uptime: 5  Threads: 2"]);
    relays_verbatim(false, Expect::Statistics, &reply).await;
}

#[tokio::test]
async fn a_payload_over_16_mib_is_forwarded_whole() {
    let big = vec![7u8; MAX_PAYLOAD + 10];
    let reply = packets(&[&[1], &coldef("a"), &eof(0, 0), &big, &eof(0, AUTOCOMMIT)]);
    let mut h = harness(false);
    let mut server = take(&mut h.server);
    let script = reply.clone();
    let writer = tokio::spawn(async move {
        server.write_all(&script).await.unwrap();
        server
    });
    let mut app = take(&mut h.app);
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; reply.len()];
        app.read_exact(&mut got).await.unwrap();
        got == reply
    });
    let out = run(&mut h, Expect::Query, None).await.unwrap();
    h.client.flush().await.unwrap();
    assert!(reader.await.unwrap(), "the client got the reply unchanged");
    assert_eq!(out.status, AUTOCOMMIT);
    assert!(h.backend.reusable());
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn ok_packets_are_re_encoded_for_a_client_without_session_track() {
    let mut h = harness(false);
    let mut state = gtids_state_entry("uuid:1-9");
    // the schema change is tracked by the backend connection
    state.push(track::SCHEMA);
    messages::put_lenenc_str(&mut state, b"\x05shop2");
    h.server
        .write_all(&packets(&[&ok(AUTOCOMMIT, state, 0)]))
        .await
        .unwrap();
    let client_caps = base_capabilities() - CapabilityFlags::CLIENT_SESSION_TRACK;
    let mut finals = Vec::new();
    let mut hook = |ok: &mut OkPacket, fin| {
        finals.push(fin);
        ok.warnings = 3;
        true
    };
    let fut = relay(
        &mut h.backend,
        &mut h.client,
        client_caps,
        Expect::Query,
        None,
        &mut hook,
    );
    let out = fut.await.unwrap();
    assert_eq!(finals, [true]);
    assert_eq!(out.gtids.as_deref(), Some("uuid:1-9"));
    assert_eq!(h.backend.db.as_deref(), Some("shop2"));
    let expected = OkPacket {
        affected_rows: 1,
        status: AUTOCOMMIT,
        warnings: 3,
        ..OkPacket::default()
    }
    .encode(0, client_caps);
    assert_eq!(received(&mut h).await, packets(&[&expected]));
}

#[tokio::test]
async fn discard_reads_the_reply_and_sends_nothing() {
    let mut h = harness(false);
    h.client.queue(&mut 1, b"kept");
    h.server
        .write_all(&packets(&[
            &[1],
            &coldef("a"),
            &eof(0, 0),
            b"\x011",
            &eof(0, 0),
        ]))
        .await
        .unwrap();
    discard(&mut h.backend, &mut h.client, Expect::Query)
        .await
        .unwrap();
    assert_eq!(received(&mut h).await, packets(&[b"kept"]));
    assert!(h.backend.reusable());
}
