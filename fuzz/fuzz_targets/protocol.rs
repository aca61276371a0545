//! Fuzz target: the proxy's parsers of client bytes on arbitrary input.
//! The first byte picks the parser: the packet framer, the handshake
//! response, COM_CHANGE_USER, COM_STMT_EXECUTE rewriting (the next two
//! bytes are the parameter count), OK/ERR/terminator decoding. Must never
//! panic; framing arithmetic and message bounds are checked.

#![no_main]

use causeway::frontend::login::parse_change_user;
use causeway::frontend::stmt::{with_stmt_id, ExecuteLayout, Stmt};
use causeway::protocol::handshake::parse_client_hello;
use causeway::protocol::messages::{self, terminator_status, ErrPacket, OkPacket};
use causeway::protocol::packet::{complete_packet_len, HEADER};
use libfuzzer_sys::fuzz_target;
use mysql_common::constants::CapabilityFlags;

fn execute(data: &[u8]) {
    let (params, payload) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    if let Some(t) = ExecuteLayout::of(payload, params).types {
        assert_eq!(t.len(), 2 * usize::from(params));
    }
    let mut s = Stmt {
        prepare: vec![0x16],
        class: causeway_classify::classify("SELECT ?"),
        params,
        types: Some(vec![8, 0]),
        long_data_on: None,
        last_backend: None,
    };
    for _ in 0..2 {
        match s.execute_payload(payload, 9, payload.len() % 2 == 0) {
            Some(out) => assert!(out.len() >= payload.len()),
            None => assert!(payload.len() < 5),
        }
    }
    let _ = with_stmt_id(payload, 1);
}

fn framer(mut buf: &[u8]) {
    while let Some((len, _)) = complete_packet_len(buf) {
        assert!(buf.len() >= HEADER + len);
        buf = &buf[HEADER + len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let caps = CapabilityFlags::from_bits_truncate(
        rest.get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0),
    );
    match which % 5 {
        0 => framer(rest),
        1 => {
            let _ = parse_client_hello(rest);
        }
        2 => {
            let _ = parse_change_user(rest, caps);
            let _ = parse_change_user(rest, CapabilityFlags::all());
        }
        3 => execute(rest),
        _ => {
            if let Ok(ok) = OkPacket::parse(rest, caps) {
                let _ = ok.state_entries().count();
            }
            if let Ok(e) = ErrPacket::parse(rest) {
                assert!(e.message.len() <= messages::MAX_ERR_MESSAGE);
            }
            let _ = terminator_status(rest, which & 0x80 != 0);
        }
    }
});
