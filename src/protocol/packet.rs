//! MySQL packet framing: the wire codec shared by the client side and the
//! backend side.
//!
//! Owns the 4-byte header (3-byte little-endian length, 1-byte sequence
//! id), logical payloads of 16 MiB and more split into `0xFFFFFF`-byte
//! packets ([`write_packets`], [`complete_packet_len`]), the limits on a
//! logical payload, the framing errors ([`PacketError`]) and the TCP options
//! every proxy socket gets ([`tune_socket`]: no Nagle delay, keepalive).
//! The framed connection itself (buffers, TLS switch, compression) is
//! [`PacketConn`], in `conn`.
//!
//! The relay (see `crate::relay`) works on the raw buffers directly so that
//! result rows are copied from one socket to the other without decoding.

use bytes::BytesMut;
use std::io;
use std::time::Duration;
use tokio::net::TcpStream;

use super::compress::CompressError;

mod conn;

pub use conn::PacketConn;

/// Largest payload carried by one physical packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Size of a packet header.
pub const HEADER: usize = 4;
/// Largest packet a client may send before it has authenticated (greeting
/// reply, SSL request, auth-switch replies).
pub const PRE_AUTH_MAX_PAYLOAD: usize = 64 * 1024;
/// Default limit of a logical payload (the backend side keeps it).
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 30;
/// Physical packets larger than this are read straight into their payload
/// (reserved exactly) instead of being assembled in the read buffer first.
const DIRECT_READ_OVER: usize = 256 * 1024;
/// Idle time before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The socket failed, or the compressed protocol was violated.
    #[error("i/o: {0}")]
    Io(#[source] io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// A logical payload exceeded the configured maximum. Its header is
    /// still in the read buffer ([`PacketConn::discard_packet`] skips it).
    #[error("packet of at least {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes announced so far (headers of the payload's packets).
        size: usize,
        /// The limit in force.
        limit: usize,
        /// Sequence id of the packet that crossed the limit.
        seq: u8,
    },
}

impl From<io::Error> for PacketError {
    /// A compressed packet over the limit is `TooLarge` (answered with
    /// 1153); any other error stays an i/o error.
    fn from(e: io::Error) -> Self {
        match CompressError::from_io(&e) {
            Some(CompressError::TooLarge { size, limit }) => PacketError::TooLarge {
                size: *size,
                limit: *limit,
                seq: 0,
            },
            _ => PacketError::Io(e),
        }
    }
}

/// Sets the options every proxy socket gets: `TCP_NODELAY` and TCP
/// keepalive ([`KEEPALIVE_IDLE`], then every [`KEEPALIVE_INTERVAL`]), so a
/// peer that vanished without a FIN or RST is noticed. Used for client and
/// backend sockets alike.
pub fn tune_socket(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

/// One logical packet: the sequence id of its last physical packet and the
/// reassembled payload.
#[derive(Debug)]
pub struct Packet {
    /// Sequence id of the last physical packet of this payload.
    pub seq: u8,
    /// Reassembled payload.
    pub payload: BytesMut,
}

/// The payload length and sequence id of the header at the start of `buf`.
pub fn header(buf: &[u8]) -> Option<(usize, u8)> {
    match *buf.get(..HEADER)? {
        [a, b, c, seq] => Some((
            usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16,
            seq,
        )),
        _ => None,
    }
}

/// If `buf` starts with a complete physical packet, its payload length and
/// sequence id.
pub fn complete_packet_len(buf: &[u8]) -> Option<(usize, u8)> {
    let (len, seq) = header(buf)?;
    if buf.len() < HEADER + len {
        return None;
    }
    Some((len, seq))
}

/// Frames `payload` into `out`, splitting at 16 MiB, starting at `*seq`.
pub fn write_packets(out: &mut BytesMut, seq: &mut u8, payload: &[u8]) {
    let mut rest = payload;
    loop {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_PAYLOAD));
        let n = chunk.len();
        out.reserve(HEADER + n);
        out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, *seq]);
        out.extend_from_slice(chunk);
        *seq = seq.wrapping_add(1);
        rest = tail;
        if n < MAX_PAYLOAD {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_small_payload() {
        let mut out = BytesMut::new();
        let mut seq = 3;
        write_packets(&mut out, &mut seq, b"abc");
        assert_eq!(&out[..], &[3, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(seq, 4);
        assert_eq!(complete_packet_len(&out), Some((3, 3)));
    }

    #[test]
    fn splits_at_16_mib_with_empty_trailer() {
        let payload = vec![7u8; MAX_PAYLOAD];
        let mut out = BytesMut::new();
        let mut seq = 0;
        write_packets(&mut out, &mut seq, &payload);
        // one full packet and one empty terminator packet
        assert_eq!(out.len(), 2 * HEADER + MAX_PAYLOAD);
        assert_eq!(seq, 2);
        assert_eq!(&out[HEADER + MAX_PAYLOAD..], &[0, 0, 0, 1]);
    }

    #[test]
    fn incomplete_header_is_not_a_packet() {
        assert_eq!(complete_packet_len(&[1, 0]), None);
        assert_eq!(complete_packet_len(&[2, 0, 0, 0, 1]), None);
        assert_eq!(complete_packet_len(&[]), None);
        assert_eq!(header(&[0xFF, 0xFF, 0xFF]), None);
        assert_eq!(header(&[0xFF, 0xFF, 0xFF, 9, 1]), Some((MAX_PAYLOAD, 9)));
        assert_eq!(complete_packet_len(&[0xFF, 0xFF, 0xFF, 9, 1]), None);
    }

    proptest::proptest! {
        #[test]
        fn header_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..12)) {
            let h = header(&bytes);
            proptest::prop_assert_eq!(h.is_some(), bytes.len() >= HEADER);
            if let Some((len, _)) = complete_packet_len(&bytes) {
                proptest::prop_assert!(bytes.len() >= HEADER + len);
            }
        }
    }
}
