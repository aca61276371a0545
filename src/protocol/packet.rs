//! MySQL packet framing over a byte stream.
//!
//! Owns the wire framing shared by the client side and the backend side: the
//! 4-byte header (3-byte little-endian length, 1-byte sequence id), logical
//! payloads of 16 MiB and more split into `0xFFFFFF`-byte packets, a read
//! buffer that keeps pipelined bytes for the next read, and a write buffer
//! that is flushed once per response flight.
//!
//! The relay (see `crate::relay`) works on the raw buffers directly so that
//! result rows are copied from one socket to the other without decoding.

use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest payload carried by one physical packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Size of a packet header.
pub const HEADER: usize = 4;

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// A logical payload exceeded the configured maximum.
    #[error("packet of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
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

/// A framed MySQL connection: socket plus read and write buffers.
#[derive(Debug)]
pub struct PacketConn {
    stream: TcpStream,
    /// Bytes read from the socket and not yet consumed.
    pub rbuf: BytesMut,
    /// Bytes queued for the socket.
    pub wbuf: BytesMut,
    max_payload: usize,
}

impl PacketConn {
    /// Wraps a connected socket.
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            max_payload: 1 << 30,
        }
    }

    /// Registers the socket with the calling thread's runtime (the old
    /// registration goes with a duplicate of the descriptor). Buffers are
    /// kept.
    pub fn reregister(&mut self) -> io::Result<()> {
        use std::os::fd::AsFd;
        let fd = self.stream.as_fd().try_clone_to_owned()?;
        let std = std::net::TcpStream::from(fd);
        std.set_nonblocking(true)?;
        self.stream = TcpStream::from_std(std)?;
        Ok(())
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

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

    /// Waits until the socket is readable or has buffered data. Used by the
    /// session loop to notice a closed client while idle.
    pub fn has_buffered_packet(&self) -> bool {
        complete_packet_len(&self.rbuf).is_some()
    }

    /// Reads one logical packet, reassembling payloads split over several
    /// physical packets.
    pub async fn read_packet(&mut self) -> Result<Packet, PacketError> {
        let mut payload = BytesMut::new();
        loop {
            let (len, seq) = loop {
                if let Some(h) = complete_packet_len(&self.rbuf) {
                    break h;
                }
                self.fill().await?;
            };
            if payload.len() + len > self.max_payload {
                return Err(PacketError::TooLarge(payload.len() + len, self.max_payload));
            }
            self.rbuf.advance(HEADER);
            let chunk = self.rbuf.split_to(len);
            if payload.is_empty() && len < MAX_PAYLOAD {
                return Ok(Packet {
                    seq,
                    payload: chunk,
                });
            }
            payload.extend_from_slice(&chunk);
            if len < MAX_PAYLOAD {
                return Ok(Packet { seq, payload });
            }
        }
    }

    /// Queues a logical payload starting at sequence id `*seq`; `*seq` is
    /// advanced past the packets written.
    pub fn queue(&mut self, seq: &mut u8, payload: &[u8]) {
        write_packets(&mut self.wbuf, seq, payload);
    }

    /// Queues raw, already framed bytes.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Writes everything queued to the socket.
    pub async fn flush(&mut self) -> Result<(), PacketError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Writes raw bytes straight to the socket, after anything queued.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), PacketError> {
        self.flush().await?;
        self.stream.write_all(bytes).await?;
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

/// If `buf` starts with a complete physical packet, its payload length and
/// sequence id.
pub fn complete_packet_len(buf: &[u8]) -> Option<(usize, u8)> {
    if buf.len() < HEADER {
        return None;
    }
    let len = buf[0] as usize | (buf[1] as usize) << 8 | (buf[2] as usize) << 16;
    if buf.len() < HEADER + len {
        return None;
    }
    Some((len, buf[3]))
}

/// Frames `payload` into `out`, splitting at 16 MiB, starting at `*seq`.
pub fn write_packets(out: &mut BytesMut, seq: &mut u8, payload: &[u8]) {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        out.reserve(HEADER + n);
        out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, *seq]);
        out.extend_from_slice(&rest[..n]);
        *seq = seq.wrapping_add(1);
        rest = &rest[n..];
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
    }
}
