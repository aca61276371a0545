//! Connection-phase messages: the server greeting, the client's handshake
//! response, auth-switch requests, and password scrambles.
//!
//! The proxy plays the server towards clients (greeting, verification of the
//! `caching_sha2_password` and `mysql_native_password` scrambles against the
//! configured plaintext password) and the client towards MySQL (handshake
//! response, scrambles, RSA full authentication). Parsing of server
//! greetings and the scramble functions come from mysql_common. This file
//! owns the server greeting, the backend-side handshake response, the auth
//! messages and the scrambles; parsing a client's handshake response is in
//! `response`.

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

mod response;

pub use response::{parse_client_hello, ClientHello, Reader};

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
    fn empty_password_verifies_only_empty_response() {
        let nonce = new_nonce();
        assert!(verify(CACHING_SHA2, &nonce, "", &[]));
        assert!(verify(NATIVE, &nonce, "", &[0]));
        assert!(!verify(CACHING_SHA2, &nonce, "x", &[]));
        assert!(!verify("sha256_password", &nonce, "", &[]));
    }

    #[test]
    fn nonce_has_no_nul() {
        for _ in 0..100 {
            assert!(!new_nonce().contains(&0));
        }
    }
}
