//! The byte stream under the packet framing (`super::packet`): plain TCP,
//! or TLS over TCP (either side) once a connection switched. Reads and
//! writes dispatch with one `match`, so plain TCP costs what it did before.
//! Also owns handing bytes read before a switch to the TLS layer ([`feed`]),
//! and the bound every stream under the framing meets ([`ByteStream`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// Any byte stream the framing can run over: [`Stream`] in the proxy,
/// in-memory streams (`tokio::io::duplex`) in unit tests.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> ByteStream for T {}

/// The byte stream under the framing: plain TCP, or TLS over TCP once
/// the connection switched.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP, either side (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the stream is moved into a TLS handshake; every use
    /// fails with `NotConnected`.
    Switching,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            Stream::Tls(s) => f.debug_tuple("Tls").field(s.get_ref().0).finish(),
            Stream::Switching => f.write_str("Switching"),
        }
    }
}

pub(super) fn switching() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream is switching to TLS")
}

impl Stream {
    /// The TCP socket under the stream.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref().0),
            Stream::Switching => None,
        }
    }

    pub(super) fn tcp_mut(&mut self) -> Option<&mut TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(s) => Some(s.get_mut().0),
            Stream::Switching => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Switching => Poll::Ready(Err(switching())),
        }
    }
}

/// Hands bytes already read from the socket to a TLS server connection
/// (the start of the client's handshake) and processes them, as if they
/// had been read by the TLS layer itself.
pub(super) fn feed(tls: &mut rustls::ServerConnection, mut early: &[u8]) -> io::Result<()> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    // each read_tls takes at most one buffer's worth; a ClientHello fits
    for _ in 0..8 {
        if early.is_empty() {
            return Ok(());
        }
        if tls.read_tls(&mut early)? == 0 {
            break;
        }
        tls.process_new_packets()
            .map_err(|e| invalid(e.to_string()))?;
    }
    if early.is_empty() {
        Ok(())
    } else {
        Err(invalid("too many bytes before the TLS handshake".into()))
    }
}
