//! The framed connection ([`PacketConn`]): a byte stream plus a read
//! buffer that keeps pipelined bytes for the next read and a write buffer
//! that is flushed once per response flight.
//!
//! Owns reading logical packets under the payload limit (checked from each
//! 4-byte header alone, before any of the payload is buffered), skipping a
//! refused one, and writing. `PacketConn` is generic over its byte stream
//! (any `AsyncRead + AsyncWrite + Unpin`, in-memory streams in tests); the
//! proxy's own stream is plain TCP or TLS over TCP ([`Stream`], the
//! default). The switch to TLS happens in place ([`PacketConn::accept_tls`],
//! [`PacketConn::connect_tls`]) with the buffers kept, as the MySQL protocol
//! switches mid-handshake. Towards a client that negotiated compression the
//! bytes pass through `crate::protocol::compress`
//! ([`PacketConn::start_compression`]) above the TLS layer (compressed bytes
//! get encrypted); the framing above is the same.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::{
    complete_packet_len, header, write_packets, Packet, PacketError, DEFAULT_MAX_PAYLOAD,
    DIRECT_READ_OVER, HEADER, MAX_PAYLOAD,
};
use crate::protocol::compress::{Algorithm, Compress};
use crate::protocol::stream::{feed, switching, ByteStream, Stream};

/// A framed MySQL connection: a byte stream (by default the proxy's TCP or
/// TLS [`Stream`]) plus read and write buffers.
#[derive(Debug)]
pub struct PacketConn<S = Stream> {
    stream: Compress<S>,
    /// Bytes read from the socket and not yet consumed.
    pub rbuf: BytesMut,
    /// Bytes queued for the socket.
    pub wbuf: BytesMut,
    max_payload: usize,
    /// While set, a copy of every byte flushed (the cache captures a reply
    /// as relayed); dropped, not grown, past `capture_limit`.
    pub capture: Option<Vec<u8>>,
    /// Largest capture kept.
    pub capture_limit: usize,
}

impl<S> PacketConn<S> {
    /// Wraps a connected byte stream.
    pub fn with_stream(stream: S) -> Self {
        Self {
            stream: Compress::new(stream),
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            max_payload: DEFAULT_MAX_PAYLOAD,
            capture: None,
            capture_limit: 0,
        }
    }

    /// Wraps a stream whose first bytes are already in `rbuf` (a reply read
    /// elsewhere and replayed); no buffer is preallocated.
    pub fn with_buffered(stream: S, rbuf: BytesMut) -> Self {
        Self {
            stream: Compress::new(stream),
            rbuf,
            wbuf: BytesMut::new(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            capture: None,
            capture_limit: 0,
        }
    }

    /// Sets the largest logical payload [`Self::read_packet`] accepts.
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max;
        self.stream.set_limit(max);
    }

    /// Turns on the compressed protocol (after the login's OK, which must
    /// have been flushed). Bytes already buffered are the client's first
    /// compressed bytes and are decoded first.
    pub fn start_compression(&mut self, algorithm: Algorithm) {
        let early = self.rbuf.split();
        self.stream.start(algorithm, self.max_payload, early);
    }

    /// The compression algorithm in force, if any.
    pub fn compression(&self) -> Option<Algorithm> {
        self.stream.algorithm()
    }

    /// The largest logical payload [`Self::read_packet`] accepts.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Whether a whole single-packet payload is already buffered, so
    /// [`Self::read_packet`] returns without touching the socket. Used by
    /// the session loop to notice a closed client while idle.
    pub fn has_buffered_packet(&self) -> bool {
        complete_packet_len(&self.rbuf).is_some_and(|(len, _)| len < MAX_PAYLOAD)
    }

    /// Queues a logical payload starting at sequence id `*seq`; `*seq` is
    /// advanced past the packets written.
    pub fn queue(&mut self, seq: &mut u8, payload: &[u8]) {
        write_packets(&mut self.wbuf, seq, payload);
    }
}

impl<S: ByteStream> PacketConn<S> {
    /// Reads more bytes into the read buffer; `Closed` at end of stream.
    pub async fn fill(&mut self) -> Result<usize, PacketError> {
        if self.rbuf.capacity() - self.rbuf.len() < 8 * 1024 {
            self.rbuf.reserve(64 * 1024);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(PacketError::Closed);
        }
        Ok(n)
    }

    /// Waits until a whole header is buffered; returns it (not consumed).
    async fn peek_header(&mut self) -> Result<(usize, u8), PacketError> {
        loop {
            if let Some(h) = header(&self.rbuf) {
                return Ok(h);
            }
            self.fill().await?;
        }
    }

    /// Reads one logical packet, reassembling payloads split over several
    /// physical packets. A payload over the limit is refused from the
    /// header that crosses it (`TooLarge`), before its bytes are read.
    ///
    /// Cancel safety: a single packet of up to 256 KiB is never lost by
    /// dropping the future; larger or multi-packet payloads may be partly
    /// consumed, so the caller must close the connection then.
    pub async fn read_packet(&mut self) -> Result<Packet, PacketError> {
        let mut big: Option<Vec<u8>> = None;
        loop {
            let (len, seq) = self.peek_header().await?;
            let have = big.as_ref().map_or(0, Vec::len);
            let size = have.saturating_add(len);
            if size > self.max_payload {
                return Err(PacketError::TooLarge {
                    size,
                    limit: self.max_payload,
                    seq,
                });
            }
            if big.is_none() && len < MAX_PAYLOAD && len <= DIRECT_READ_OVER {
                while self.rbuf.len() < HEADER + len {
                    self.fill().await?;
                }
                self.rbuf.advance(HEADER);
                return Ok(Packet {
                    seq,
                    payload: self.rbuf.split_to(len),
                });
            }
            self.rbuf.advance(HEADER);
            let buf = big.get_or_insert_with(Vec::new);
            self.read_into(buf, len).await?;
            if len < MAX_PAYLOAD {
                let payload = BytesMut::from(Bytes::from(big.take().unwrap_or_default()));
                return Ok(Packet { seq, payload });
            }
        }
    }

    /// Appends the next `len` bytes of the stream to `buf`, reserving
    /// exactly what they need.
    async fn read_into(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<(), PacketError> {
        buf.try_reserve_exact(len)
            .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        let buffered = self.rbuf.len().min(len);
        buf.extend_from_slice(self.rbuf.split_to(buffered).as_ref());
        let mut remaining = len - buffered;
        while remaining > 0 {
            let mut room = (&mut *buf).limit(remaining);
            let n = self.stream.read_buf(&mut room).await?;
            if n == 0 {
                return Err(PacketError::Closed);
            }
            remaining = remaining.saturating_sub(n);
        }
        Ok(())
    }

    /// Skips the logical packet whose header is next in the stream (after
    /// `TooLarge`), reading at most `budget` bytes into a small reusable
    /// buffer. Returns false when the budget ran out first.
    pub async fn discard_packet(&mut self, budget: usize) -> Result<bool, PacketError> {
        let mut left = budget;
        loop {
            let (len, _) = self.peek_header().await?;
            self.rbuf.advance(HEADER);
            let mut rest = len;
            loop {
                let n = rest.min(self.rbuf.len());
                self.rbuf.advance(n);
                rest -= n;
                left = left.saturating_sub(n);
                if rest == 0 {
                    break;
                }
                if left == 0 {
                    return Ok(false);
                }
                self.fill().await?;
            }
            if len < MAX_PAYLOAD {
                return Ok(true);
            }
        }
    }

    /// Writes everything queued to the socket.
    pub async fn flush(&mut self) -> Result<(), PacketError> {
        if !self.wbuf.is_empty() {
            if let Some(c) = &mut self.capture {
                if c.len().saturating_add(self.wbuf.len()) > self.capture_limit {
                    self.capture = None;
                } else {
                    c.extend_from_slice(&self.wbuf);
                }
            }
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            // the compressed layer sends its last bytes at the flush, and
            // TLS may keep records it could not write yet
            self.stream.flush().await?;
        }
        Ok(())
    }

    /// Writes raw bytes straight to the socket, after anything queued.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), PacketError> {
        self.flush().await?;
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Queues and flushes one payload.
    pub async fn send(&mut self, seq: &mut u8, payload: &[u8]) -> Result<(), PacketError> {
        self.queue(seq, payload);
        self.flush().await
    }

    /// Shuts the write side down.
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

impl PacketConn {
    /// Wraps a connected socket.
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self::with_stream(Stream::Tcp(stream))
    }

    /// Registers the socket with the calling thread's runtime (the old
    /// registration goes with a duplicate of the descriptor). Buffers are
    /// kept.
    pub fn reregister(&mut self) -> io::Result<()> {
        use std::os::fd::AsFd;
        let tcp = self.stream.get_mut().tcp_mut().ok_or_else(switching)?;
        let fd = tcp.as_fd().try_clone_to_owned()?;
        let std = std::net::TcpStream::from(fd);
        std.set_nonblocking(true)?;
        *tcp = TcpStream::from_std(std)?;
        Ok(())
    }

    /// The underlying socket (None only while switching to TLS).
    pub fn tcp(&self) -> Option<&TcpStream> {
        self.stream.get_ref().tcp()
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream.get_ref(), Stream::Tls(_))
    }

    /// The negotiated TLS protocol version, e.g. "TLSv1.3".
    pub fn tls_version(&self) -> Option<&'static str> {
        match self.stream.get_ref() {
            Stream::Tls(s) => match s.get_ref().1.protocol_version()? {
                rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
                rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
                _ => Some("TLS"),
            },
            _ => None,
        }
    }

    /// Switches to TLS as the server side (after a client's SSLRequest).
    /// Bytes the client sent after its SSLRequest and that were already
    /// read (the start of its TLS handshake) are handed to TLS first.
    pub async fn accept_tls(&mut self, acceptor: &TlsAcceptor) -> Result<(), PacketError> {
        let Stream::Tcp(tcp) = std::mem::replace(self.stream.get_mut(), Stream::Switching) else {
            return Err(PacketError::Io(switching()));
        };
        let early = self.rbuf.split();
        let mut fed = Ok(());
        // the closure runs here, before the handshake is polled
        let accept = acceptor.accept_with(tcp, |tls| fed = feed(tls, &early));
        fed?;
        let tls = accept.await?;
        *self.stream.get_mut() = Stream::Tls(Box::new(TlsStream::Server(tls)));
        Ok(())
    }

    /// Switches to TLS as the client side (after sending an SSLRequest).
    /// Nothing may be buffered: the server sends nothing before the TLS
    /// handshake.
    pub async fn connect_tls(
        &mut self,
        connector: &TlsConnector,
        name: ServerName<'static>,
    ) -> Result<(), PacketError> {
        if !self.rbuf.is_empty() {
            return Err(PacketError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server sent bytes before the TLS handshake",
            )));
        }
        self.flush().await?;
        let Stream::Tcp(tcp) = std::mem::replace(self.stream.get_mut(), Stream::Switching) else {
            return Err(PacketError::Io(switching()));
        };
        let tls = connector.connect(name, tcp).await?;
        *self.stream.get_mut() = Stream::Tls(Box::new(TlsStream::Client(tls)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::{
        tune_socket, write_packets, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, PRE_AUTH_MAX_PAYLOAD,
    };
    use std::time::Duration;

    /// A connected pair: our `PacketConn` and the raw peer socket.
    async fn pair() -> (PacketConn, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (peer, ours) = tokio::join!(TcpStream::connect(addr), l.accept());
        let ours = ours.unwrap().0;
        tune_socket(&ours).unwrap();
        let sock = socket2::SockRef::from(&ours);
        assert!(sock.keepalive().unwrap() && ours.nodelay().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        (PacketConn::new(ours), peer.unwrap())
    }

    fn framed(payload: &[u8], seq: u8) -> BytesMut {
        let mut out = BytesMut::new();
        let mut seq = seq;
        write_packets(&mut out, &mut seq, payload);
        out
    }

    #[tokio::test]
    async fn refuses_from_the_header_alone() {
        let (mut conn, mut peer) = pair().await;
        conn.set_max_payload(PRE_AUTH_MAX_PAYLOAD);
        // only the header of a 16 MiB packet: nothing else ever arrives
        peer.write_all(&[0xFF, 0xFF, 0xFF, 1]).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), conn.read_packet()).await;
        match r.unwrap() {
            Err(PacketError::TooLarge { size, limit, seq }) => {
                assert_eq!((size, limit, seq), (MAX_PAYLOAD, PRE_AUTH_MAX_PAYLOAD, 1));
            }
            other => panic!("{other:?}"),
        }
        assert!(conn.rbuf.capacity() < 128 * 1024);
    }

    #[tokio::test]
    async fn small_big_and_split_payloads_round_trip() {
        let (mut conn, mut peer) = pair().await;
        let big = vec![5u8; DIRECT_READ_OVER + 3];
        let split = vec![6u8; MAX_PAYLOAD + 7];
        let mut wire = framed(b"\x03SELECT 1", 0);
        wire.extend_from_slice(&framed(&big, 0));
        wire.extend_from_slice(&framed(&split, 0));
        wire.extend_from_slice(&framed(b"\x0e", 0));
        let writer = tokio::spawn(async move {
            peer.write_all(&wire).await.unwrap();
            peer
        });
        assert_eq!(
            &conn.read_packet().await.unwrap().payload[..],
            b"\x03SELECT 1"
        );
        assert_eq!(conn.read_packet().await.unwrap().payload, big);
        let p = conn.read_packet().await.unwrap();
        assert_eq!(p.seq, 1);
        assert_eq!(p.payload.len(), split.len());
        assert!(p.payload.iter().all(|&b| b == 6));
        assert_eq!(&conn.read_packet().await.unwrap().payload[..], b"\x0e");
        drop(writer.await.unwrap());
        assert!(matches!(conn.read_packet().await, Err(PacketError::Closed)));
    }

    #[tokio::test]
    async fn split_payload_counts_in_total_and_can_be_skipped() {
        let (mut conn, mut peer) = pair().await;
        conn.set_max_payload(MAX_PAYLOAD + 6);
        let mut wire = framed(&vec![1u8; MAX_PAYLOAD + 7], 0);
        wire.extend_from_slice(&framed(b"\x0e", 0));
        let writer = tokio::spawn(async move {
            peer.write_all(&wire).await.unwrap();
            peer
        });
        match conn.read_packet().await {
            Err(PacketError::TooLarge { size, seq, .. }) => {
                assert_eq!((size, seq), (MAX_PAYLOAD + 7, 1));
            }
            other => panic!("{other:?}"),
        }
        // the rest of the refused payload is skipped; the next one is intact
        assert!(conn.discard_packet(usize::MAX).await.unwrap());
        assert_eq!(&conn.read_packet().await.unwrap().payload[..], b"\x0e");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn discard_stops_at_its_budget() {
        let (mut conn, mut peer) = pair().await;
        conn.set_max_payload(10);
        let wire = framed(&vec![0u8; 1 << 20], 0);
        let writer = tokio::spawn(async move { peer.write_all(&wire).await });
        assert!(matches!(
            conn.read_packet().await,
            Err(PacketError::TooLarge { size: 1048576, .. })
        ));
        // what is buffered is skipped, then the budget stops the reads
        assert!(!conn.discard_packet(50).await.unwrap());
        drop(conn);
        let _ = writer.await;
    }

    #[tokio::test]
    async fn truncated_packet_is_closed_not_a_panic() {
        let (mut conn, mut peer) = pair().await;
        peer.write_all(&[10, 0, 0, 0, 1, 2]).await.unwrap();
        drop(peer);
        assert!(matches!(conn.read_packet().await, Err(PacketError::Closed)));
        let (mut conn, mut peer) = pair().await;
        peer.write_all(&[0xFF, 0xFF, 0xFF, 0, 1, 2]).await.unwrap();
        drop(peer);
        assert!(matches!(conn.read_packet().await, Err(PacketError::Closed)));
    }

    /// Server and client sides of a TLS switch, with the client's SSL
    /// request and its TLS ClientHello arriving in one read.
    #[tokio::test]
    async fn tls_switch_keeps_early_bytes_and_frames_both_ways() {
        let dir = std::env::temp_dir().join(format!("cw-packet-tls-{}", std::process::id()));
        let files = causeway_sandbox::certs::generate(&dir).unwrap();
        let server = crate::tls::ServerTls::load(&causeway_config::Tls {
            cert: files.cert.to_string_lossy().into_owned(),
            key: files.key.to_string_lossy().into_owned(),
            require: true,
        })
        .unwrap();
        let client_tls = crate::tls::BackendTls::from_config(&causeway_config::BackendTls {
            mode: causeway_config::TlsMode::VerifyIdentity,
            ca: Some(files.ca.to_string_lossy().into_owned()),
        })
        .unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = PacketConn::new(TcpStream::connect(addr).await.unwrap());
            // queued, not flushed: connect_tls sends it with the ClientHello
            c.queue(&mut 1, b"ssl request");
            let name = crate::tls::BackendTls::server_name(&addr.to_string()).unwrap();
            c.connect_tls(client_tls.connector().unwrap(), name)
                .await
                .unwrap();
            assert_eq!(c.tls_version(), Some("TLSv1.3"));
            let big = vec![9u8; MAX_PAYLOAD + 10];
            c.send(&mut 2, &big).await.unwrap();
            let p = c.read_packet().await.unwrap();
            assert_eq!(&p.payload[..], b"pong");
        });
        let (tcp, _) = l.accept().await.unwrap();
        let mut s = PacketConn::new(tcp);
        // wait until the TLS ClientHello is buffered behind the request
        while s.rbuf.len() <= HEADER + 11 {
            s.fill().await.unwrap();
        }
        let req = s.read_packet().await.unwrap();
        assert_eq!(&req.payload[..], b"ssl request");
        assert!(!s.rbuf.is_empty(), "early TLS bytes are buffered");
        s.accept_tls(server.acceptor()).await.unwrap();
        assert!(s.is_tls() && s.rbuf.is_empty());
        let p = s.read_packet().await.unwrap();
        assert_eq!(p.payload.len(), MAX_PAYLOAD + 10);
        s.send(&mut 3, b"pong").await.unwrap();
        client.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
