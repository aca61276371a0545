//! The client's handshake response (HandshakeResponse41), as the proxy
//! reads it when it plays the server: field presence follows the
//! capabilities the client sent, every read is bounds-checked ([`Reader`]),
//! and connection attributes are checked and counted, not kept.

use mysql_common::constants::CapabilityFlags;

use super::{server_capabilities, HandshakeError, NATIVE};

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
        let (s, used) = crate::protocol::messages::read_lenenc_str(self.0)?;
        self.0 = self.0.get(used..)?;
        Some(s)
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
    // connection attributes: their framing is checked, their contents are
    // not kept
    if sent.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) && !r.is_empty() {
        r.lenenc_str()
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
        zstd_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::{client_hello, new_nonce, scramble, verify, CACHING_SHA2};
    use crate::protocol::messages::{put_lenenc, put_lenenc_str};

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
        assert!(parse_client_hello(&full).is_ok());
        let mut two = Vec::new();
        for kv in [b"_client_name", b"_os_version_"] {
            put_lenenc_str(&mut two, kv);
            put_lenenc_str(&mut two, b"v");
        }
        assert_eq!(count_attrs(&two), Some(2));
        assert!(parse_client_hello(&hello_with_attrs(&{
            let mut framed = Vec::new();
            put_lenenc_str(&mut framed, &two);
            framed
        }))
        .is_ok());
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
        assert!(parse_client_hello(&hello_with_attrs(&[0])).is_ok());
        assert_eq!(count_attrs(&[]), Some(0));
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
}
