//! The compressed protocol towards clients (CLIENT_COMPRESS with zlib,
//! CLIENT_ZSTD_COMPRESSION_ALGORITHM with zstd), as a byte-stream layer
//! under the packet framing.
//!
//! [`Compress`] wraps the stream under `super::packet::PacketConn`. It is
//! a pass-through until [`Compress::start`] turns it on (after the login's
//! OK, as MySQL does); from then on reads decompress the client's
//! compressed packets into the ordinary packet stream, and every write
//! (PacketConn writes once per flush) goes out as compressed packets. So
//! the packet layer and the relay work on plain packets either way.
//!
//! A compressed packet has a 7-byte header: 3-byte length of what follows,
//! 1-byte compressed sequence id, 3-byte uncompressed length (0: the bytes
//! follow as they are; payloads under [`MIN_COMPRESS_LEN`] bytes, or that
//! do not shrink, are sent that way). The compressed sequence id is
//! independent of the packets' own: it restarts with each command (the
//! client's first compressed packet of a command has id 0) and the replies
//! continue from the client's last id, as MySQL's `net_flush` does.
//!
//! Client bytes are hostile: a compressed packet announcing more than the
//! packet limit, or whose data inflates past what it announced, is refused
//! ([`CompressError::TooLarge`], answered with 1153 by the session); data
//! that does not decompress is [`CompressError::Corrupt`] (answered with
//! 1157, [`uncompress_error`]). Either error is sticky: the stream yields
//! it on every later read, and the session closes.

use bytes::{Buf, BytesMut};
use mysql_common::constants::CapabilityFlags;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Size of a compressed packet's header.
pub const COMP_HEADER: usize = 7;
/// Largest payload (compressed or not) of one compressed packet.
pub const MAX_COMP_PAYLOAD: usize = 0xFF_FFFF;
/// Payloads shorter than this are sent uncompressed (MySQL's
/// `MIN_COMPRESS_LENGTH`).
pub const MIN_COMPRESS_LEN: usize = 50;
/// zstd level used when a client asked for zstd without sending a level
/// (MySQL's default `zstd_compression_level`).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Highest zstd level causeway compresses with; a client asking for more
/// gets this one. Measured on a 16 MiB flight: a compression context takes
/// about 8 MB of memory at level 9, 41 MB at 12, 263 MB at 22 (one per
/// client connection).
pub const MAX_ZSTD_LEVEL: i32 = 9;
/// Room above the packet limit a compressed packet may announce: the
/// 4-byte header of the packet it carries.
const LIMIT_SLACK: usize = 4;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// The compression algorithm a client negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// CLIENT_COMPRESS: zlib (deflate with zlib framing).
    Zlib,
    /// CLIENT_ZSTD_COMPRESSION_ALGORITHM at this level (1..=22).
    Zstd(i32),
}

impl Algorithm {
    /// What a client negotiated with its capabilities and the zstd level
    /// byte of its handshake response (out of 1..=22, or absent, means
    /// [`DEFAULT_ZSTD_LEVEL`]; above [`MAX_ZSTD_LEVEL`] means that). zlib
    /// wins when both flags are set, as in MySQL.
    pub fn negotiated(caps: CapabilityFlags, zstd_level: Option<u8>) -> Option<Algorithm> {
        if caps.contains(CapabilityFlags::CLIENT_COMPRESS) {
            Some(Algorithm::Zlib)
        } else if caps.contains(CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM) {
            let level = zstd_level
                .map(i32::from)
                .filter(|l| (1..=22).contains(l))
                .map_or(DEFAULT_ZSTD_LEVEL, |l| l.min(MAX_ZSTD_LEVEL));
            Some(Algorithm::Zstd(level))
        } else {
            None
        }
    }

    /// Short name for logs ("zlib", "zstd").
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Zlib => "zlib",
            Algorithm::Zstd(_) => "zstd",
        }
    }
}

/// Errors of the compressed protocol.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CompressError {
    /// A compressed packet announced, or inflated to, more than allowed.
    #[error("compressed packet of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes announced or produced.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The compressed data is not valid for the algorithm, or does not
    /// decompress to the length its header announced.
    #[error("corrupt compressed packet: {0}")]
    Corrupt(String),
    /// The compressor failed (should not happen).
    #[error("compression failed: {0}")]
    Compress(String),
}

impl CompressError {
    /// The error as an `io::Error` carrying it (see [`Self::from_io`]).
    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The compression error an `io::Error` carries, if any.
    pub fn from_io(e: &io::Error) -> Option<&CompressError> {
        e.get_ref()?.downcast_ref::<CompressError>()
    }
}

/// MySQL's error for a compressed packet that does not decompress
/// (ER_NET_UNCOMPRESS_ERROR, 1157 / 08S01), sent before the close.
pub fn uncompress_error() -> super::ErrPacket {
    super::ErrPacket::new(1157, "08S01", "Couldn't uncompress communication packet")
}

/// Whether a read failed on a compressed packet that does not decompress.
pub fn is_corrupt(e: &super::PacketError) -> bool {
    matches!(e, super::PacketError::Io(io)
        if matches!(CompressError::from_io(io), Some(CompressError::Corrupt(_))))
}

/// The header of a compressed packet at the start of `buf`: payload
/// length, compressed sequence id, uncompressed length.
pub fn comp_header(buf: &[u8]) -> Option<(usize, u8, usize)> {
    match *buf.get(..COMP_HEADER)? {
        [a, b, c, seq, d, e, f] => Some((u24(a, b, c), seq, u24(d, e, f))),
        _ => None,
    }
}

fn u24(a: u8, b: u8, c: u8) -> usize {
    usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16
}

fn put_header(out: &mut BytesMut, len: usize, seq: u8, uncompressed: usize) {
    out.extend_from_slice(&[
        len as u8,
        (len >> 8) as u8,
        (len >> 16) as u8,
        seq,
        uncompressed as u8,
        (uncompressed >> 8) as u8,
        (uncompressed >> 16) as u8,
    ]);
}

/// The compressed protocol without I/O: turns compressed packets into
/// plain bytes and plain bytes into compressed packets.
pub struct Codec {
    algorithm: Algorithm,
    /// Compressed sequence id of the next packet written.
    write_seq: u8,
    /// Largest uncompressed length a client's compressed packet may have.
    limit: usize,
    // compression states, made at first use and reused (a deflate state
    // is a few hundred KiB: not one per flush)
    zlib_in: Option<flate2::Decompress>,
    zlib_out: Option<flate2::Compress>,
    zstd_in: Option<zstd::bulk::Decompressor<'static>>,
    zstd_out: Option<zstd::bulk::Compressor<'static>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("algorithm", &self.algorithm)
            .field("write_seq", &self.write_seq)
            .field("limit", &self.limit)
            .finish()
    }
}

impl Codec {
    /// A codec for `algorithm`; `limit` bounds a client packet's
    /// uncompressed length (see [`Self::set_limit`]).
    pub fn new(algorithm: Algorithm, limit: usize) -> Self {
        Self {
            algorithm,
            write_seq: 0,
            limit,
            zlib_in: None,
            zlib_out: None,
            zstd_in: None,
            zstd_out: None,
        }
    }

    /// Sets the packet limit (the session's `max_client_packet`); a
    /// compressed packet may carry that plus one packet header.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    fn max_uncompressed(&self) -> usize {
        self.limit.saturating_add(LIMIT_SLACK).min(MAX_COMP_PAYLOAD)
    }

    /// Decodes the compressed packet at the start of `raw` into `out`, if
    /// it is complete. Returns whether one was decoded (its bytes are
    /// consumed from `raw`). The reply sequence continues from its id.
    pub fn decode(
        &mut self,
        raw: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, CompressError> {
        let Some((len, seq, uncompressed)) = comp_header(raw) else {
            return Ok(false);
        };
        let max = self.max_uncompressed();
        // a stored payload counts as its own uncompressed length
        let size = if uncompressed == 0 { len } else { uncompressed };
        if size > max {
            return Err(CompressError::TooLarge { size, limit: max });
        }
        if uncompressed != 0 && len > max.saturating_add(1024) {
            return Err(CompressError::TooLarge {
                size: len,
                limit: max,
            });
        }
        if raw.len() < COMP_HEADER + len {
            raw.reserve(COMP_HEADER + len - raw.len());
            return Ok(false);
        }
        raw.advance(COMP_HEADER);
        let data = raw.split_to(len);
        self.write_seq = seq.wrapping_add(1);
        if uncompressed == 0 {
            out.extend_from_slice(&data);
            return Ok(true);
        }
        out.reserve(uncompressed);
        let produced = match self.algorithm {
            Algorithm::Zlib => {
                let z = self
                    .zlib_in
                    .get_or_insert_with(|| flate2::Decompress::new(true));
                inflate(z, &data, uncompressed, out)?
            }
            Algorithm::Zstd(_) => {
                let d = match &mut self.zstd_in {
                    Some(d) => d,
                    None => self.zstd_in.insert(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| CompressError::Corrupt(e.to_string()))?,
                    ),
                };
                unzstd(d, &data, uncompressed, out)?
            }
        };
        if produced != uncompressed {
            return Err(CompressError::Corrupt(format!(
                "{produced} bytes where the header announced {uncompressed}"
            )));
        }
        Ok(true)
    }

    /// Appends `plain` to `out` as compressed packets (at most 16 MiB of
    /// plain bytes each), numbered from the current compressed sequence id.
    pub fn encode(&mut self, plain: &[u8], out: &mut BytesMut) -> Result<(), CompressError> {
        let mut rest = plain;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_COMP_PAYLOAD));
            rest = tail;
            let packed = if chunk.len() < MIN_COMPRESS_LEN {
                None
            } else {
                self.pack(chunk)?.filter(|p| p.len() < chunk.len())
            };
            let seq = self.write_seq;
            self.write_seq = seq.wrapping_add(1);
            match packed {
                Some(p) => {
                    out.reserve(COMP_HEADER + p.len());
                    put_header(out, p.len(), seq, chunk.len());
                    out.extend_from_slice(&p);
                }
                None => {
                    out.reserve(COMP_HEADER + chunk.len());
                    put_header(out, chunk.len(), seq, 0);
                    out.extend_from_slice(chunk);
                }
            }
        }
        Ok(())
    }

    /// `chunk` compressed, or None when that would not make it smaller.
    fn pack(&mut self, chunk: &[u8]) -> Result<Option<Vec<u8>>, CompressError> {
        let packed = match self.algorithm {
            Algorithm::Zlib => {
                let z = self.zlib_out.get_or_insert_with(|| {
                    flate2::Compress::new(flate2::Compression::default(), true)
                });
                return deflate(z, chunk);
            }
            Algorithm::Zstd(level) => {
                let c = match &mut self.zstd_out {
                    Some(c) => c,
                    None => self.zstd_out.insert(
                        zstd::bulk::Compressor::new(level)
                            .map_err(|e| CompressError::Compress(e.to_string()))?,
                    ),
                };
                // at most the chunk's size (not zstd's bound, larger): what
                // does not fit goes uncompressed
                let mut out = Vec::with_capacity(chunk.len());
                match c.compress_to_buffer(chunk, &mut out) {
                    Ok(_) => out,
                    Err(_) => return Ok(None),
                }
            }
        };
        Ok(Some(packed).filter(|p| p.len() <= MAX_COMP_PAYLOAD))
    }
}

/// Deflates `chunk` (zlib framing) with the reused state `z`; None when
/// the result would not be smaller than `chunk`.
fn deflate(z: &mut flate2::Compress, chunk: &[u8]) -> Result<Option<Vec<u8>>, CompressError> {
    z.reset();
    let mut out = Vec::with_capacity(chunk.len() / 2 + 64);
    // bounded: each round grows the output or ends; the output is capped
    // at the input's size
    loop {
        let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX);
        let input = chunk.get(consumed..).unwrap_or_default();
        let progress = (z.total_in(), z.total_out());
        let status = z
            .compress_vec(input, &mut out, flate2::FlushCompress::Finish)
            .map_err(|e| CompressError::Compress(e.to_string()))?;
        if status == flate2::Status::StreamEnd {
            return Ok(Some(out).filter(|o| o.len() < chunk.len()));
        }
        if progress == (z.total_in(), z.total_out()) && out.len() < out.capacity() {
            return Err(CompressError::Compress("deflate made no progress".into()));
        }
        if out.len() >= chunk.len() {
            return Ok(None);
        }
        if out.len() == out.capacity() {
            out.reserve(chunk.len().saturating_sub(out.len()).max(64));
        }
    }
}

/// Inflates zlib `data` into `out` with the reused state `z`, producing at
/// most `max` bytes; more is a decompression bomb.
fn inflate(
    z: &mut flate2::Decompress,
    data: &[u8],
    max: usize,
    out: &mut BytesMut,
) -> Result<usize, CompressError> {
    z.reset(true);
    let start = out.len();
    out.resize(start + max, 0);
    let r = z.decompress(
        data,
        out.get_mut(start..).unwrap_or_default(),
        flate2::FlushDecompress::Finish,
    );
    let produced = usize::try_from(z.total_out())
        .unwrap_or(usize::MAX)
        .min(max);
    out.truncate(start + produced);
    match r {
        Ok(flate2::Status::StreamEnd) => Ok(produced),
        Ok(_) if produced == max => Err(CompressError::TooLarge {
            size: max.saturating_add(1),
            limit: max,
        }),
        Ok(_) => Err(CompressError::Corrupt("truncated zlib stream".into())),
        Err(e) => Err(CompressError::Corrupt(e.to_string())),
    }
}

/// Decompresses zstd `data` into `out`, producing at most `max` bytes.
fn unzstd(
    d: &mut zstd::bulk::Decompressor<'static>,
    data: &[u8],
    max: usize,
    out: &mut BytesMut,
) -> Result<usize, CompressError> {
    let start = out.len();
    out.resize(start + max, 0);
    let r = d.decompress_to_buffer(data, out.get_mut(start..).unwrap_or_default());
    match r {
        Ok(n) => {
            out.truncate(start + n);
            Ok(n)
        }
        Err(e) => {
            out.truncate(start);
            // zstd reports "Destination buffer is too small" for a bomb
            if e.to_string().contains("too small") {
                Err(CompressError::TooLarge {
                    size: max.saturating_add(1),
                    limit: max,
                })
            } else {
                Err(CompressError::Corrupt(e.to_string()))
            }
        }
    }
}

/// The stream under the packet framing, compressed once [`Self::start`]
/// turned it on, a pass-through before.
#[derive(Debug)]
pub struct Compress<S> {
    inner: S,
    codec: Option<Box<Codec>>,
    /// Compressed bytes read and not yet decoded.
    raw_in: BytesMut,
    /// Decoded bytes not yet read.
    plain_in: BytesMut,
    /// Compressed bytes not yet written.
    raw_out: BytesMut,
    /// The first error of the compressed read side, yielded ever after.
    failed: Option<CompressError>,
}

impl<S> Compress<S> {
    /// A pass-through over `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            codec: None,
            raw_in: BytesMut::new(),
            plain_in: BytesMut::new(),
            raw_out: BytesMut::new(),
            failed: None,
        }
    }

    /// Turns compression on. `early` holds bytes already read from the
    /// stream that belong to the compressed protocol (a pipelined first
    /// command); they are decoded first.
    pub fn start(&mut self, algorithm: Algorithm, limit: usize, early: BytesMut) {
        self.codec = Some(Box::new(Codec::new(algorithm, limit)));
        self.raw_in = early;
    }

    /// The algorithm in force, if compression is on.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.codec.as_ref().map(|c| c.algorithm)
    }

    /// Sets the limit on a client packet's uncompressed length.
    pub fn set_limit(&mut self, limit: usize) {
        if let Some(c) = &mut self.codec {
            c.set_limit(limit);
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncWrite + Unpin> Compress<S> {
    /// Writes queued compressed bytes to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.raw_out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.raw_out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.raw_out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Compress<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(codec) = &mut this.codec else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if let Some(e) = &this.failed {
            return Poll::Ready(Err(e.clone().into_io()));
        }
        // bounded: each round consumes a packet or reads from the socket
        loop {
            if !this.plain_in.is_empty() {
                let n = this.plain_in.len().min(buf.remaining());
                buf.put_slice(this.plain_in.get(..n).unwrap_or_default());
                this.plain_in.advance(n);
                return Poll::Ready(Ok(()));
            }
            match codec.decode(&mut this.raw_in, &mut this.plain_in) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    this.failed = Some(e.clone());
                    return Poll::Ready(Err(e.into_io()));
                }
            }
            let before = this.raw_in.len();
            this.raw_in.resize(before + READ_CHUNK, 0);
            let mut rb = ReadBuf::new(this.raw_in.get_mut(before..).unwrap_or_default());
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            this.raw_in.truncate(before + n);
            ready!(polled)?;
            if n == 0 {
                // end of stream (a truncated packet is dropped with it)
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Compress<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.codec.is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        // what an earlier write compressed goes out first
        ready!(this.poll_drain(cx))?;
        if let Some(codec) = &mut this.codec {
            codec
                .encode(buf, &mut this.raw_out)
                .map_err(CompressError::into_io)?;
        }
        // start sending; the rest goes at the next write or flush
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
