//! Connection-phase messages: the server greeting, the client's handshake
//! response, auth-switch requests, and password scrambles.
//!
//! The proxy plays the server towards clients (greeting, verification of the
//! `caching_sha2_password` and `mysql_native_password` scrambles against the
//! configured plaintext password) and the client towards MySQL (handshake
//! response, scrambles, RSA full authentication). Parsing of greetings and
//! responses and the scramble functions come from mysql_common.

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::HandshakePacket;
use mysql_common::proto::MySerialize;
use mysql_common::scramble::{scramble_native, scramble_sha256};
use rand::Rng;

use super::messages::put_lenenc_str;

/// `caching_sha2_password`.
pub const CACHING_SHA2: &str = "caching_sha2_password";
/// `mysql_native_password`.
pub const NATIVE: &str = "mysql_native_password";

/// Errors of the connection phase codecs.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer sent something that is not a valid handshake message.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
}

/// Capabilities causeway offers to clients.
pub fn server_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_NO_SCHEMA
        | CapabilityFlags::CLIENT_ODBC
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_IGNORE_SPACE
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_INTERACTIVE
        | CapabilityFlags::CLIENT_IGNORE_SIGPIPE
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_RESERVED
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_SESSION_TRACK
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_COMPRESS
        | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM
        | CapabilityFlags::CLIENT_QUERY_ATTRIBUTES
}

/// Client capabilities that change the shape or meaning of server replies
/// (or of the client's commands: CLIENT_QUERY_ATTRIBUTES); a backend
/// connection must carry the same ones as the client it serves.
pub fn reply_shaping_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_IGNORE_SPACE
        | CapabilityFlags::CLIENT_INTERACTIVE
        | CapabilityFlags::CLIENT_LOCAL_FILES
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_NO_SCHEMA
        | CapabilityFlags::CLIENT_ODBC
        | CapabilityFlags::CLIENT_QUERY_ATTRIBUTES
}

/// A fresh 20-byte nonce of printable, non-NUL bytes (as MySQL does).
pub fn new_nonce() -> [u8; 20] {
    let mut rng = rand::rng();
    let mut n = [0u8; 20];
    for b in n.iter_mut() {
        *b = rng.random_range(1u8..=127);
        if *b == b'$' || *b == 0 {
            *b = b'a';
        }
    }
    n
}

/// Builds the server greeting (HandshakeV10) payload; `tls` adds
/// CLIENT_SSL to the capabilities offered.
pub fn greeting(
    server_version: &str,
    connection_id: u32,
    nonce: &[u8; 20],
    collation: u8,
    plugin: &str,
    tls: bool,
) -> Vec<u8> {
    let mut caps = server_capabilities();
    if tls {
        caps |= CapabilityFlags::CLIENT_SSL;
    }
    let mut s1 = [0u8; 8];
    s1.copy_from_slice(&nonce[..8]);
    let mut s2 = nonce[8..].to_vec();
    s2.push(0);
    let pkt = HandshakePacket::new(
        10,
        server_version.as_bytes(),
        connection_id,
        s1,
        Some(s2),
        caps,
        collation,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(plugin.as_bytes()),
    );
    let mut out = Vec::with_capacity(128);
    pkt.serialize(&mut out);
    out
}

/// What a client sent in its handshake response.
#[derive(Debug, Clone)]
pub struct ClientHello {
    /// Capabilities the client asked for, already intersected with ours.
    pub caps: CapabilityFlags,
    /// Requested collation id.
    pub collation: u8,
    /// User name.
    pub user: String,
    /// Auth response bytes.
    pub auth_response: Vec<u8>,
    /// Initial schema.
    pub db: Option<String>,
    /// Auth plugin the response was computed with.
    pub plugin: String,
    /// How many connection attributes the client sent (their framing is
    /// checked; their contents are not kept).
    pub attr_count: usize,
    /// The zstd level the client asked for (with
    /// CLIENT_ZSTD_COMPRESSION_ALGORITHM), the last byte of its response.
    pub zstd_level: Option<u8>,
}

impl ClientHello {
    /// The compression the client negotiated (applied after the login's OK).
    pub fn compression(&self) -> Option<crate::protocol::compress::Algorithm> {
        crate::protocol::compress::Algorithm::negotiated(self.caps, self.zstd_level)
    }
}

/// Largest connection-attribute block accepted (MySQL's limit).
pub const MAX_ATTRS_LEN: usize = 65535;

/// A cursor over client bytes: every read is bounds-checked and returns
/// `None` when the input is short.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    /// A little-endian u32.
    pub fn u32_le(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A NUL-terminated string (without its NUL).
    pub fn nul_str(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(s)
    }

    /// A length-encoded string.
    pub fn lenenc_str(&mut self) -> Option<&'a [u8]> {
        let (s, used) = super::messages::read_lenenc_str(self.0)?;
        self.0 = self.0.get(used..)?;
        Some(s)
    }

    /// Whatever is left.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn malformed(detail: &str) -> HandshakeError {
    HandshakeError::Malformed {
        what: "handshake response",
        detail: detail.to_string(),
    }
}

/// Checks the framing of a connection-attribute block (length-encoded
/// key/value pairs) and counts its pairs, without keeping them.
pub fn count_attrs(block: &[u8]) -> Option<usize> {
    if block.len() > MAX_ATTRS_LEN {
        return None;
    }
    let mut r = Reader(block);
    let mut n = 0usize;
    while !r.is_empty() {
        r.lenenc_str()?;
        r.lenenc_str()?;
        n += 1;
    }
    Some(n)
}

/// Parses a HandshakeResponse41 payload. Field presence follows the
/// capabilities the client sent, as MySQL parses it; connection
/// attributes are checked and counted, not stored.
pub fn parse_client_hello(payload: &[u8]) -> Result<ClientHello, HandshakeError> {
    let mut r = Reader(payload);
    let sent = r.u32_le().ok_or_else(|| malformed("too short"))?;
    let sent = CapabilityFlags::from_bits_truncate(sent);
    let caps = sent & server_capabilities();
    if !caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(malformed("clients must speak protocol 4.1"));
    }
    let _max_packet = r.u32_le();
    let collation = r.u8().ok_or_else(|| malformed("too short"))?;
    r.take(23).ok_or_else(|| malformed("too short"))?;
    let user = r.nul_str().ok_or_else(|| malformed("no user name"))?;
    let auth = if sent.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
        r.lenenc_str()
    } else if sent.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        r.u8().and_then(|n| r.take(usize::from(n)))
    } else {
        r.nul_str()
    }
    .ok_or_else(|| malformed("truncated auth response"))?;
    let mut db = None;
    if sent.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB) && !r.is_empty() {
        db = Some(
            r.nul_str()
                .ok_or_else(|| malformed("unterminated schema"))?,
        );
    }
    let mut plugin = None;
    if sent.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !r.is_empty() {
        plugin = Some(
            r.nul_str()
                .ok_or_else(|| malformed("unterminated plugin name"))?,
        );
    }
    let mut attr_count = 0;
    if sent.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) && !r.is_empty() {
        attr_count = r
            .lenenc_str()
            .and_then(count_attrs)
            .ok_or_else(|| malformed("bad connection attributes"))?;
    }
    let zstd_level = if sent.contains(CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM) {
        r.u8()
    } else {
        None
    };
    Ok(ClientHello {
        caps,
        collation,
        user: String::from_utf8_lossy(user).into_owned(),
        auth_response: auth.to_vec(),
        db: db
            .filter(|d| !d.is_empty())
            .map(|d| String::from_utf8_lossy(d).into_owned()),
        plugin: plugin.filter(|p| !p.is_empty()).map_or_else(
            || NATIVE.to_string(),
            |p| String::from_utf8_lossy(p).into_owned(),
        ),
        attr_count,
        zstd_level,
    })
}

/// Computes the auth response for `plugin` (empty for an empty password).
pub fn scramble(plugin: &str, nonce: &[u8], password: &str) -> Option<Vec<u8>> {
    let pw = password.as_bytes();
    match plugin {
        CACHING_SHA2 => Some(
            scramble_sha256(nonce, pw)
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        ),
        NATIVE => Some(
            scramble_native(nonce, pw)
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        ),
        _ => None,
    }
}

/// Whether `response` proves knowledge of `password` for `plugin`.
pub fn verify(plugin: &str, nonce: &[u8], password: &str, response: &[u8]) -> bool {
    // Clients terminate an empty response with a NUL in some paths.
    let response = if response == [0] { &[][..] } else { response };
    match scramble(plugin, nonce, password) {
        Some(expected) => constant_time_eq(&expected, response),
        None => false,
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Builds an AuthSwitchRequest payload.
pub fn auth_switch_request(plugin: &str, nonce: &[u8; 20]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + 21);
    out.push(0xFE);
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    out.extend_from_slice(nonce);
    out.push(0);
    out
}

/// Parsed server greeting, as seen by the proxy's backend side.
#[derive(Debug, Clone)]
pub struct ServerHello {
    /// Server version string.
    pub version: String,
    /// Backend connection id.
    pub connection_id: u32,
    /// Auth nonce.
    pub nonce: Vec<u8>,
    /// Server capabilities.
    pub caps: CapabilityFlags,
    /// Default auth plugin.
    pub plugin: String,
}

/// Parses a server greeting.
pub fn parse_server_hello(payload: &[u8]) -> Result<ServerHello, HandshakeError> {
    let pkt: HandshakePacket<'_> =
        ParseBuf(payload)
            .parse(())
            .map_err(|e| HandshakeError::Malformed {
                what: "server greeting",
                detail: e.to_string(),
            })?;
    Ok(ServerHello {
        version: pkt.server_version_str().into_owned(),
        connection_id: pkt.connection_id(),
        nonce: pkt.nonce(),
        caps: pkt.capabilities(),
        plugin: pkt
            .auth_plugin()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .unwrap_or_else(|| NATIVE.to_string()),
    })
}

/// Builds a HandshakeResponse41 payload for a backend login (never with
/// compression).
pub fn client_hello(
    caps: CapabilityFlags,
    collation: u8,
    user: &str,
    auth_response: &[u8],
    db: Option<&str>,
    plugin: &str,
) -> Vec<u8> {
    let mut caps = caps;
    // causeway never compresses towards a backend
    caps.remove(
        CapabilityFlags::CLIENT_COMPRESS | CapabilityFlags::CLIENT_ZSTD_COMPRESSION_ALGORITHM,
    );
    if db.is_some() {
        caps |= CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    } else {
        caps.remove(CapabilityFlags::CLIENT_CONNECT_WITH_DB);
    }
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&caps.bits().to_le_bytes());
    out.extend_from_slice(&(1u32 << 30).to_le_bytes());
    out.push(collation);
    out.extend_from_slice(&[0u8; 23]);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    put_lenenc_str(&mut out, auth_response);
    if let Some(db) = db {
        out.extend_from_slice(db.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(plugin.as_bytes());
    out.push(0);
    if caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) {
        let mut attrs = Vec::new();
        for (k, v) in [("_client_name", "causeway"), ("program_name", "causeway")] {
            put_lenenc_str(&mut attrs, k.as_bytes());
            put_lenenc_str(&mut attrs, v.as_bytes());
        }
        put_lenenc_str(&mut out, &attrs);
    }
    out
}

/// `(password + NUL) XOR nonce`, the plaintext of RSA full authentication.
pub fn xor_password(password: &str, nonce: &[u8]) -> Vec<u8> {
    let mut pw = password.as_bytes().to_vec();
    pw.push(0);
    if !nonce.is_empty() {
        for (i, b) in pw.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
    }
    pw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::put_lenenc;

    #[test]
    fn greeting_parses_back() {
        let nonce = new_nonce();
        let g = greeting("9.7.4-causeway", 42, &nonce, 255, CACHING_SHA2, false);
        let hello = parse_server_hello(&g).unwrap();
        assert_eq!(hello.version, "9.7.4-causeway");
        assert_eq!(hello.connection_id, 42);
        assert_eq!(hello.nonce, nonce.to_vec());
        assert_eq!(hello.plugin, CACHING_SHA2);
        assert!(hello.caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK));
        assert!(!hello.caps.contains(CapabilityFlags::CLIENT_SSL));
        let g = greeting("9.7.4-causeway", 42, &nonce, 255, CACHING_SHA2, true);
        let hello = parse_server_hello(&g).unwrap();
        assert!(hello.caps.contains(CapabilityFlags::CLIENT_SSL));
    }

    #[test]
    fn client_hello_parses_back_and_verifies() {
        let nonce = new_nonce();
        let resp = scramble(CACHING_SHA2, &nonce, "apppw").unwrap();
        let caps = server_capabilities() | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        let p = client_hello(caps, 255, "app", &resp, Some("db1"), CACHING_SHA2);
        let hello = parse_client_hello(&p).unwrap();
        assert_eq!(hello.user, "app");
        assert_eq!(hello.db.as_deref(), Some("db1"));
        assert_eq!(hello.collation, 255);
        assert!(verify(&hello.plugin, &nonce, "apppw", &hello.auth_response));
        assert!(!verify(
            &hello.plugin,
            &nonce,
            "wrong",
            &hello.auth_response
        ));
        assert!(!verify(NATIVE, &nonce, "apppw", &hello.auth_response));
    }

    #[test]
    fn empty_password_verifies_only_empty_response() {
        let nonce = new_nonce();
        assert!(verify(CACHING_SHA2, &nonce, "", &[]));
        assert!(verify(NATIVE, &nonce, "", &[0]));
        assert!(!verify(CACHING_SHA2, &nonce, "x", &[]));
        assert!(!verify("sha256_password", &nonce, "", &[]));
    }

    fn hello_with_attrs(attrs: &[u8]) -> Vec<u8> {
        let caps = server_capabilities() | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        let mut p = client_hello(caps, 255, "app", &[7; 32], Some("db1"), CACHING_SHA2);
        // replace the attribute block client_hello wrote
        let ours = {
            let mut v = Vec::new();
            for (k, val) in [("_client_name", "causeway"), ("program_name", "causeway")] {
                put_lenenc_str(&mut v, k.as_bytes());
                put_lenenc_str(&mut v, val.as_bytes());
            }
            let mut framed = Vec::new();
            put_lenenc_str(&mut framed, &v);
            framed
        };
        p.truncate(p.len() - ours.len());
        p.extend_from_slice(attrs);
        p
    }

    #[test]
    fn attributes_are_counted_not_kept() {
        let full = client_hello(
            server_capabilities(),
            255,
            "app",
            &[1; 32],
            None,
            CACHING_SHA2,
        );
        assert_eq!(parse_client_hello(&full).unwrap().attr_count, 2);
        // a block that claims more than the packet holds
        let mut bad = Vec::new();
        put_lenenc(&mut bad, 1 << 40);
        assert!(parse_client_hello(&hello_with_attrs(&bad)).is_err());
        // a pair cut in the middle
        let mut block = Vec::new();
        put_lenenc_str(&mut block, b"key");
        block.push(9);
        let mut framed = Vec::new();
        put_lenenc_str(&mut framed, &block);
        assert!(parse_client_hello(&hello_with_attrs(&framed)).is_err());
        // more than MySQL's 64 KiB of attributes
        let mut block = Vec::new();
        while block.len() <= MAX_ATTRS_LEN {
            let key = format!("k{}", block.len());
            put_lenenc_str(&mut block, key.as_bytes());
            put_lenenc_str(&mut block, b"v");
        }
        let mut framed = Vec::new();
        put_lenenc_str(&mut framed, &block);
        assert!(parse_client_hello(&hello_with_attrs(&framed)).is_err());
        // an empty block is fine
        assert_eq!(
            parse_client_hello(&hello_with_attrs(&[0]))
                .unwrap()
                .attr_count,
            0
        );
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_parse() {
        let p = client_hello(
            server_capabilities() | CapabilityFlags::CLIENT_CONNECT_WITH_DB,
            255,
            "app",
            &[3; 32],
            Some("db1"),
            CACHING_SHA2,
        );
        for n in 0..p.len() {
            // must not panic; short ones are errors
            let r = parse_client_hello(&p[..n]);
            if n < 37 {
                assert!(r.is_err(), "{n}");
            }
        }
        // an SSL request (32 bytes) is not a login
        let mut ssl = (server_capabilities() | CapabilityFlags::CLIENT_SSL)
            .bits()
            .to_le_bytes()
            .to_vec();
        ssl.extend_from_slice(&[0; 28]);
        assert!(parse_client_hello(&ssl).is_err());
        // without protocol 4.1
        let mut old = p.clone();
        old[1] &= !((CapabilityFlags::CLIENT_PROTOCOL_41.bits() >> 8) as u8);
        assert!(parse_client_hello(&old).is_err());
    }

    #[test]
    fn reader_is_total() {
        let mut r = Reader(b"ab\0c");
        assert_eq!(r.take(5), None);
        assert_eq!(r.nul_str(), Some(&b"ab"[..]));
        assert_eq!(r.nul_str(), None);
        assert_eq!(r.u32_le(), None);
        assert_eq!(r.u8(), Some(b'c'));
        assert_eq!(r.u8(), None);
        assert_eq!(r.lenenc_str(), None);
        assert!(r.is_empty());
        assert_eq!(Reader(&[0xFC, 0xFF]).lenenc_str(), None);
        assert_eq!(
            Reader(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).lenenc_str(),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_client_hello(&bytes);
            let _ = count_attrs(&bytes);
        }

        #[test]
        fn garbage_after_a_valid_header_never_panics(
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            caps in proptest::num::u32::ANY,
        ) {
            let mut p = (caps | CapabilityFlags::CLIENT_PROTOCOL_41.bits()).to_le_bytes().to_vec();
            p.extend_from_slice(&[0; 28]);
            p.extend_from_slice(&tail);
            let _ = parse_client_hello(&p);
        }
    }

    #[test]
    fn nonce_has_no_nul() {
        for _ in 0..100 {
            assert!(!new_nonce().contains(&0));
        }
    }
}
