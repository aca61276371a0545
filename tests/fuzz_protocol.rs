//! Time-bounded fuzzing on stable Rust (proptest, fixed case counts) of the
//! proxy's parsers of client bytes: the packet framer (pure and reading a
//! real socket), handshake-response and COM_CHANGE_USER parsing,
//! COM_STMT_EXECUTE rewriting, and the small messages (lenenc, OK, ERR,
//! terminators, session-state entries). Arbitrary bytes, valid messages
//! truncated at every cut and single-byte mutations of them. Properties: no
//! panic, and what is cheap to check (framing arithmetic, round trips).
//! No MySQL needed.

use bytes::BytesMut;
use causeway::frontend::login::parse_change_user;
use causeway::frontend::stmt::{with_stmt_id, ExecuteLayout, Stmt};
use causeway::protocol::handshake::{client_hello, parse_client_hello, server_capabilities};
use causeway::protocol::messages::{
    self, read_lenenc, read_lenenc_str, terminator_status, ErrPacket, OkPacket,
};
use causeway::protocol::packet::{complete_packet_len, write_packets, HEADER};
use causeway::protocol::PacketConn;
use mysql_common::constants::CapabilityFlags;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn caps() -> impl Strategy<Value = CapabilityFlags> {
    any::<u32>().prop_map(CapabilityFlags::from_bits_truncate)
}

/// A valid handshake response from the proxy's own encoder.
fn hello() -> impl Strategy<Value = Vec<u8>> {
    (
        caps(),
        any::<u8>(),
        "[a-z\u{e9}\u{1f600}]{0,12}",
        bytes(40),
        proptest::option::of("[a-z_]{0,10}"),
        proptest::sample::select(&["mysql_native_password", "caching_sha2_password", ""][..]),
    )
        .prop_map(|(c, coll, user, auth, db, plugin)| {
            let c = c | server_capabilities() | CapabilityFlags::CLIENT_PROTOCOL_41;
            client_hello(c, coll, &user, &auth, db.as_deref(), plugin)
        })
}

/// `msg` truncated at `cut` with byte `at` replaced by `with`.
fn mutate(mut msg: Vec<u8>, cut: usize, at: usize, with: u8) -> Vec<u8> {
    if !msg.is_empty() {
        let i = at % msg.len();
        msg[i] = with;
    }
    msg.truncate(cut.min(msg.len()));
    msg
}

fn execute_stmt(params: u16) -> Stmt {
    Stmt {
        prepare: vec![0x16],
        class: causeway_classify::classify("SELECT ?"),
        params,
        types: Some(vec![8, 0]),
        long_data_on: None,
        last_backend: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn framer_arithmetic(buf in bytes(600)) {
        if let Some((len, seq)) = complete_packet_len(&buf) {
            prop_assert!(buf.len() >= HEADER + len);
            let header_len = buf[0] as usize | (buf[1] as usize) << 8 | (buf[2] as usize) << 16;
            prop_assert_eq!(len, header_len);
            prop_assert_eq!(seq, buf[3]);
        } else {
            let short = buf.len() < HEADER
                || buf.len() < HEADER + (buf[0] as usize | (buf[1] as usize) << 8 | (buf[2] as usize) << 16);
            prop_assert!(short);
        }
    }

    #[test]
    fn framing_round_trips(payload in bytes(3000), seq in any::<u8>()) {
        let mut out = BytesMut::new();
        let mut s = seq;
        write_packets(&mut out, &mut s, &payload);
        let (len, got) = complete_packet_len(&out).unwrap();
        prop_assert_eq!(len, payload.len());
        prop_assert_eq!(got, seq);
        prop_assert_eq!(&out[HEADER..], &payload[..]);
    }

    #[test]
    fn handshake_response_arbitrary(b in bytes(400)) {
        let _ = parse_client_hello(&b);
        let _ = parse_change_user(&b, CapabilityFlags::all());
        let _ = parse_change_user(&b, CapabilityFlags::empty());
    }

    #[test]
    fn handshake_response_mutated(h in hello(), cut in any::<usize>(), at in any::<usize>(), with in any::<u8>()) {
        prop_assert!(parse_client_hello(&h).is_ok());
        let m = mutate(h.clone(), cut, at, with);
        let _ = parse_client_hello(&m);
        // every prefix of a valid one
        for i in 0..h.len() {
            let _ = parse_client_hello(&h[..i]);
        }
        let mut cu = vec![0x11];
        cu.extend_from_slice(&m);
        let _ = parse_change_user(&cu, CapabilityFlags::all());
    }

    #[test]
    fn stmt_execute(payload in bytes(120), params in prop_oneof![0u16..20, any::<u16>()], qa in any::<bool>()) {
        let layout = ExecuteLayout::of(&payload, params);
        if let Some(t) = layout.types {
            prop_assert_eq!(t.len(), 2 * params as usize);
        }
        let mut s = execute_stmt(params);
        match s.execute_payload(&payload, 9, qa) {
            None => prop_assert!(payload.len() < 5),
            Some(out) => {
                prop_assert_eq!(&out[1..5], &9u32.to_le_bytes());
                prop_assert!(out.len() >= payload.len());
                prop_assert_eq!(&out[..1], &payload[..1]);
            }
        }
        let _ = with_stmt_id(&payload, 3);
    }

    #[test]
    fn small_messages(b in bytes(300), c in caps(), deprecate in any::<bool>()) {
        if let Some((_, n)) = read_lenenc(&b) {
            prop_assert!(n <= b.len());
        }
        if let Some((s, n)) = read_lenenc_str(&b) {
            prop_assert!(n <= b.len() && s.len() <= n);
        }
        if let Ok(ok) = OkPacket::parse(&b, c) {
            let _ = ok.state_entries().count();
            let again = OkPacket::parse(&ok.encode(0, c), c);
            prop_assert!(again.is_ok());
        }
        let ok = OkPacket { session_state: b.clone(), ..OkPacket::default() };
        prop_assert!(ok.state_entries().count() <= b.len());
        if let Ok(e) = ErrPacket::parse(&b) {
            prop_assert!(e.message.len() <= messages::MAX_ERR_MESSAGE);
            let _ = e.to_string();
        }
        let _ = terminator_status(&b, deprecate);
        let _ = messages::gtids_from_state_data(&b);
    }

    #[test]
    fn err_messages_are_bounded(m in any::<String>(), n in 0usize..1200) {
        let long: String = m.chars().cycle().take(n).collect();
        let e = ErrPacket::new(1064, "42000", long.clone());
        prop_assert!(e.message.len() <= messages::MAX_ERR_MESSAGE);
        if long.len() <= messages::MAX_ERR_MESSAGE {
            prop_assert_eq!(e.message, long);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Arbitrary bytes on a real socket, then EOF: `read_packet` yields
    /// whole packets and then an error; it never panics or hangs.
    #[test]
    fn reading_a_byte_stream(stream in bytes(2000)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let packets = rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let _ = s.write_all(&stream).await;
                let _ = s.shutdown().await;
                stream
            });
            let (sock, _) = listener.accept().await.unwrap();
            let mut conn = PacketConn::new(sock);
            let mut got = Vec::new();
            let read = async {
                while let Ok(p) = conn.read_packet().await {
                    got.push(p.payload.to_vec());
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), read).await.expect("read_packet hangs");
            (got, writer.await.unwrap())
        });
        let (got, sent) = packets;
        // what was read is a prefix of the framed stream
        let mut rest = &sent[..];
        for p in &got {
            let (len, _) = complete_packet_len(rest).unwrap();
            if len < 0xFF_FFFF {
                prop_assert_eq!(&rest[HEADER..HEADER + len], &p[..]);
            }
            rest = &rest[HEADER + len..];
        }
    }
}
