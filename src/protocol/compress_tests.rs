//! Unit tests of the compressed protocol layer, over in-memory streams.

use super::*;
use crate::protocol::packet::{write_packets, PacketConn, MAX_PAYLOAD};
use crate::protocol::PacketError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOTH: [Algorithm; 2] = [Algorithm::Zlib, Algorithm::Zstd(3)];

fn framed(payload: &[u8], seq: u8) -> BytesMut {
    let mut out = BytesMut::new();
    let mut seq = seq;
    write_packets(&mut out, &mut seq, payload);
    out
}

/// Compressible bytes that are not all alike.
fn text(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"abcdefgh0123"[i % 12] ^ (i / 4096) as u8)
        .collect()
}

fn started<S>(inner: S, a: Algorithm) -> Compress<S> {
    let mut c = Compress::new(inner);
    c.start(a, 1 << 30, BytesMut::new());
    c
}

#[test]
fn negotiation_follows_the_flags_and_level() {
    let zstd = CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM;
    let zlib = CapabilityFlags::CLIENT_COMPRESS;
    assert_eq!(
        Algorithm::negotiated(CapabilityFlags::empty(), Some(3)),
        None
    );
    assert_eq!(Algorithm::negotiated(zlib, None), Some(Algorithm::Zlib));
    assert_eq!(
        Algorithm::negotiated(zlib | zstd, Some(7)),
        Some(Algorithm::Zlib)
    );
    assert_eq!(
        Algorithm::negotiated(zstd, Some(7)),
        Some(Algorithm::Zstd(7))
    );
    for bad in [None, Some(0), Some(23), Some(255)] {
        assert_eq!(
            Algorithm::negotiated(zstd, bad),
            Some(Algorithm::Zstd(DEFAULT_ZSTD_LEVEL))
        );
    }
}

#[test]
fn the_zstd_level_is_read_from_the_handshake_response() {
    use crate::protocol::handshake::{client_hello, parse_client_hello, server_capabilities};
    let mut p = client_hello(server_capabilities(), 255, "app", &[1; 20], None, "x");
    let sent = u32::from_le_bytes(p[..4].try_into().unwrap());
    let zstd = CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM.bits();
    p[..4].copy_from_slice(&(sent | zstd).to_le_bytes());
    p.push(7);
    let hello = parse_client_hello(&p).unwrap();
    assert_eq!(hello.zstd_level, Some(7));
    assert_eq!(hello.compression(), Some(Algorithm::Zstd(7)));
    // the level byte missing: the default level
    p.pop();
    assert_eq!(
        parse_client_hello(&p).unwrap().compression(),
        Some(Algorithm::Zstd(DEFAULT_ZSTD_LEVEL))
    );
    // causeway's own (backend) logins never ask for compression
    let plain = client_hello(server_capabilities(), 255, "app", &[1; 20], None, "x");
    assert_eq!(parse_client_hello(&plain).unwrap().compression(), None);
}

#[test]
fn small_payloads_go_uncompressed() {
    for a in BOTH {
        let mut c = Codec::new(a, 1 << 20);
        let mut out = BytesMut::new();
        let plain = framed(b"\x03SELECT 1", 0);
        c.encode(&plain, &mut out).unwrap();
        assert_eq!(comp_header(&out), Some((plain.len(), 0, 0)));
        assert_eq!(&out[COMP_HEADER..], &plain[..]);
        // and they decode as they are
        let mut back = BytesMut::new();
        assert!(c.decode(&mut out, &mut back).unwrap());
        assert_eq!(back, plain);
        assert!(out.is_empty());
    }
}

#[test]
fn incompressible_payloads_go_uncompressed() {
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for a in BOTH {
        let mut out = BytesMut::new();
        Codec::new(a, 1 << 20).encode(&noise, &mut out).unwrap();
        let (len, _, uncompressed) = comp_header(&out).unwrap();
        if uncompressed == 0 {
            assert_eq!(len, noise.len());
        } else {
            assert!(len < noise.len());
        }
    }
}

#[test]
fn compressed_sequence_continues_from_the_client() {
    for a in BOTH {
        let mut server = Codec::new(a, 1 << 20);
        let mut client = Codec::new(a, 1 << 20);
        let mut wire = BytesMut::new();
        client.encode(&framed(&text(500), 0), &mut wire).unwrap();
        assert_eq!(comp_header(&wire).map(|h| h.1), Some(0));
        let mut plain = BytesMut::new();
        assert!(server.decode(&mut wire, &mut plain).unwrap());
        assert_eq!(plain, framed(&text(500), 0));
        let mut reply = BytesMut::new();
        server.encode(b"first flight", &mut reply).unwrap();
        server.encode(&text(300), &mut reply).unwrap();
        assert_eq!(comp_header(&reply).map(|h| h.1), Some(1));
        let second = reply.get(COMP_HEADER + 12..).unwrap();
        assert_eq!(comp_header(second).map(|h| h.1), Some(2));
        // a new command restarts at 0, the reply at 1
        let mut cmd = BytesMut::new();
        client.write_seq = 0;
        client.encode(&framed(b"\x0e", 0), &mut cmd).unwrap();
        assert!(server.decode(&mut cmd, &mut plain).unwrap());
        let mut reply = BytesMut::new();
        server.encode(b"ok", &mut reply).unwrap();
        assert_eq!(comp_header(&reply).map(|h| h.1), Some(1));
    }
}

#[tokio::test]
async fn round_trip_with_split_reads_both_ways() {
    for a in BOTH {
        // a 5-byte pipe: every header and payload arrives in pieces
        let (x, y) = tokio::io::duplex(5);
        let (mut x, mut y) = (started(x, a), started(y, a));
        let mut plain = framed(b"\x03SELECT 1", 0);
        plain.extend_from_slice(&framed(&text(70_000), 0));
        let expect = plain.clone();
        let writer = tokio::spawn(async move {
            x.write_all(&plain).await.unwrap();
            x.flush().await.unwrap();
            x.write_all(b"tail").await.unwrap();
            x.shutdown().await.unwrap();
            x
        });
        let mut got = Vec::new();
        y.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), expect.len() + 4);
        assert_eq!(&got[..expect.len()], &expect[..]);
        assert_eq!(&got[expect.len()..], b"tail");
    }
}

#[tokio::test]
async fn payloads_of_16_mib_and_more_cross_in_several_packets() {
    for a in BOTH {
        let (x, y) = tokio::io::duplex(1 << 16);
        let (mut x, mut y) = (started(x, a), started(y, a));
        let payload = text(MAX_PAYLOAD + 100);
        let plain = framed(&payload, 0);
        let n = plain.len();
        let sent = plain.clone();
        let writer = tokio::spawn(async move {
            x.write_all(&sent).await.unwrap();
            x.flush().await.unwrap();
            x
        });
        let mut got = vec![0u8; n];
        y.read_exact(&mut got).await.unwrap();
        let x = writer.await.unwrap();
        // 16 MiB of plain bytes per compressed packet: two of them
        assert_eq!(x.codec.as_ref().unwrap().write_seq, 2);
        assert_eq!(got.len(), n);
        assert!(got == plain[..], "{a:?}: payload differs");
    }
}

#[tokio::test]
async fn pass_through_until_started() {
    let (x, y) = tokio::io::duplex(64);
    let (mut x, mut y) = (Compress::new(x), Compress::new(y));
    x.write_all(b"plain bytes").await.unwrap();
    let mut got = [0u8; 11];
    y.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"plain bytes");
    assert_eq!(x.algorithm(), None);
}

#[tokio::test]
async fn early_bytes_are_decoded_first() {
    for a in BOTH {
        let mut wire = BytesMut::new();
        Codec::new(a, 1 << 20)
            .encode(&framed(&text(200), 0), &mut wire)
            .unwrap();
        let (x, _y) = tokio::io::duplex(64);
        let mut c = Compress::new(x);
        c.start(a, 1 << 20, wire);
        let mut got = vec![0u8; 204];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, framed(&text(200), 0));
    }
}

/// A packet's header with `len` bytes of payload and the uncompressed
/// length it announces.
fn comp_packet(data: &[u8], uncompressed: usize) -> BytesMut {
    let mut out = BytesMut::new();
    put_header(&mut out, data.len(), 0, uncompressed);
    out.extend_from_slice(data);
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn announced_lengths_over_the_limit_are_refused_from_the_header() {
    for a in BOTH {
        let mut c = Codec::new(a, 1024);
        // header only: refused before any payload arrived
        let mut raw = BytesMut::from(&[0x10, 0, 0, 0, 0xFF, 0xFF, 0xFF][..]);
        let e = c.decode(&mut raw, &mut BytesMut::new()).unwrap_err();
        assert_eq!(
            e,
            CompressError::TooLarge {
                size: MAX_COMP_PAYLOAD,
                limit: 1028
            }
        );
        // a stored payload counts with its own length
        let mut raw = BytesMut::from(&[0x00, 0x10, 0, 0, 0, 0, 0][..]);
        assert!(matches!(
            c.decode(&mut raw, &mut BytesMut::new()),
            Err(CompressError::TooLarge { size: 4096, .. })
        ));
        assert!(raw.capacity() < 64 * 1024);
    }
}

#[test]
fn decompression_bombs_are_refused() {
    let zeros = vec![0u8; 4 << 20];
    let bombs = [
        (Algorithm::Zlib, zlib(&zeros)),
        (
            Algorithm::Zstd(3),
            zstd::bulk::compress(&zeros, 19).unwrap(),
        ),
    ];
    for (a, bomb) in bombs {
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        // it claims 1000 bytes, the limit allows 1 MiB, it inflates to 4 MiB
        let mut c = Codec::new(a, 1 << 20);
        let mut raw = comp_packet(&bomb, 1000);
        let mut out = BytesMut::new();
        let e = c.decode(&mut raw, &mut out).unwrap_err();
        assert!(matches!(e, CompressError::TooLarge { .. }), "{a:?}: {e}");
        assert!(out.len() <= 1000);
    }
}

#[test]
fn garbage_and_short_data_are_corrupt() {
    for a in BOTH {
        let mut c = Codec::new(a, 1 << 20);
        let mut raw = comp_packet(b"this is not compressed at all", 100);
        assert!(matches!(
            c.decode(&mut raw, &mut BytesMut::new()),
            Err(CompressError::Corrupt(_))
        ));
    }
    // valid data announcing more than it holds
    let mut c = Codec::new(Algorithm::Zlib, 1 << 20);
    let mut raw = comp_packet(&zlib(&text(100)), 200);
    assert!(matches!(
        c.decode(&mut raw, &mut BytesMut::new()),
        Err(CompressError::Corrupt(_))
    ));
    let mut c = Codec::new(Algorithm::Zstd(3), 1 << 20);
    let mut raw = comp_packet(&zstd::bulk::compress(&text(100), 3).unwrap(), 200);
    assert!(matches!(
        c.decode(&mut raw, &mut BytesMut::new()),
        Err(CompressError::Corrupt(_))
    ));
}

#[tokio::test]
async fn errors_are_sticky_and_reach_the_packet_layer_as_too_large() {
    let (x, mut y) = tokio::io::duplex(1024);
    let mut c = started(x, Algorithm::Zlib);
    c.set_limit(100);
    y.write_all(&[0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0xFF])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let e = c.read(&mut buf).await.unwrap_err();
    assert!(matches!(
        PacketError::from(e),
        PacketError::TooLarge {
            size: MAX_COMP_PAYLOAD,
            limit: 104,
            seq: 0
        }
    ));
    let again = c.read(&mut buf).await.unwrap_err();
    assert!(CompressError::from_io(&again).is_some());
}

/// The packet layer over a compressed TCP connection: commands in,
/// replies out, a big payload and an oversized one.
#[tokio::test]
async fn packet_conn_speaks_compressed_after_the_switch() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    for a in BOTH {
        let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        let mut server = PacketConn::new(accepted.unwrap().0);
        let mut client = started(client.unwrap(), a);
        server.start_compression(a);
        assert_eq!(server.compression(), Some(a));
        server.set_max_payload(MAX_PAYLOAD + 10);
        let big = text(MAX_PAYLOAD + 5);
        let mut wire = framed(b"\x03SELECT 1", 0);
        wire.extend_from_slice(&framed(&big, 0));
        wire.extend_from_slice(&framed(&text(MAX_PAYLOAD + 11), 0));
        let writer = tokio::spawn(async move {
            client.write_all(&wire).await.unwrap();
            client.flush().await.unwrap();
            let mut reply = vec![0u8; 4 + 300];
            client.read_exact(&mut reply).await.unwrap();
            reply
        });
        let p = server.read_packet().await.unwrap();
        assert_eq!(&p.payload[..], b"\x03SELECT 1");
        let p = server.read_packet().await.unwrap();
        assert!(p.payload == big[..]);
        assert!(matches!(
            server.read_packet().await,
            Err(PacketError::TooLarge { .. })
        ));
        server.send(&mut 1, &text(300)).await.unwrap();
        let reply = writer.await.unwrap();
        assert_eq!(&reply[4..], &text(300)[..]);
    }
}

proptest::proptest! {
    #[test]
    fn garbage_never_panics(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        zstd in proptest::bool::ANY,
    ) {
        let a = if zstd { Algorithm::Zstd(3) } else { Algorithm::Zlib };
        let mut c = Codec::new(a, 1 << 16);
        let mut raw = BytesMut::from(&bytes[..]);
        let mut out = BytesMut::new();
        // bounded: each success consumes at least a header
        for _ in 0..64 {
            match c.decode(&mut raw, &mut out) {
                Ok(true) => {}
                _ => break,
            }
        }
        proptest::prop_assert!(out.len() <= bytes.len() * 64 + (1 << 17));
    }

    #[test]
    fn garbage_behind_a_valid_header_never_panics(
        data in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        announced in 0usize..100_000,
        zstd in proptest::bool::ANY,
    ) {
        let a = if zstd { Algorithm::Zstd(3) } else { Algorithm::Zlib };
        let mut raw = comp_packet(&data, announced);
        let mut out = BytesMut::new();
        if let Ok(true) = Codec::new(a, 1 << 16).decode(&mut raw, &mut out) {
            proptest::prop_assert_eq!(out.len(), if announced == 0 { data.len() } else { announced });
        }
    }

    #[test]
    fn encode_then_decode_is_identity(
        chunks in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3000), 0..5),
        zstd in proptest::bool::ANY,
    ) {
        let a = if zstd { Algorithm::Zstd(1) } else { Algorithm::Zlib };
        let (mut tx, mut rx) = (Codec::new(a, 1 << 20), Codec::new(a, 1 << 20));
        let mut wire = BytesMut::new();
        for c in &chunks {
            tx.encode(c, &mut wire).unwrap();
        }
        let mut out = BytesMut::new();
        while rx.decode(&mut wire, &mut out).unwrap() {}
        proptest::prop_assert!(wire.is_empty());
        proptest::prop_assert_eq!(out.to_vec(), chunks.concat());
    }
}
