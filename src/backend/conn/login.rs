//! The login of one backend connection (the client side of MySQL's
//! connection phase).
//!
//! Owns connecting (TCP options per [`tune_socket`]), the TLS step per
//! `[backend_tls] mode`, the handshake response, the authentication
//! exchange (caching_sha2_password fast path, full authentication against a
//! server whose cache is cold: the cleartext password over TLS, RSA only on
//! a plaintext link, auth switch to mysql_native_password) and the session
//! setup every new connection gets ([`super::SETUP_SQL`]).

use mysql_common::constants::CapabilityFlags;
use std::time::Duration;
use tokio::net::TcpStream;

use super::{base_capabilities, BackendConn, BackendError, Identity, LinkKey, Login};
use crate::protocol::handshake::{self, ServerHello, CACHING_SHA2, NATIVE};
use crate::protocol::packet::tune_socket;
use crate::protocol::{ErrPacket, PacketConn, PacketError};
use crate::tls::BackendTls;

fn io_error(server: &str, source: PacketError) -> BackendError {
    BackendError::Io {
        server: server.to_string(),
        source,
    }
}

fn protocol(server: &str, detail: impl Into<String>) -> BackendError {
    BackendError::Protocol {
        server: server.to_string(),
        detail: detail.into(),
    }
}

fn server_error(server: &str, payload: &[u8]) -> BackendError {
    match ErrPacket::parse(payload) {
        Ok(err) => BackendError::Server {
            server: server.to_string(),
            err,
        },
        Err(e) => protocol(server, e.to_string()),
    }
}

impl BackendConn {
    /// Connects and logs in over plain TCP, bounded by `timeout` (tests
    /// and tools; the proxy's own links use [`Self::connect_with`]).
    pub async fn connect(
        server: &str,
        addr: &str,
        login: &Login,
        key: LinkKey,
        db: Option<&str>,
        timeout: Duration,
    ) -> Result<BackendConn, BackendError> {
        let plain = BackendTls::default();
        Self::connect_with(server, addr, login, (key, db), timeout, &plain).await
    }

    /// Connects and logs in, bounded by `timeout`, with TLS as `tls` says.
    pub async fn connect_with(
        server: &str,
        addr: &str,
        login: &Login,
        (key, db): (LinkKey, Option<&str>),
        timeout: Duration,
        tls: &BackendTls,
    ) -> Result<BackendConn, BackendError> {
        let inner = Self::connect_inner(server, addr, login, key, db, tls);
        match tokio::time::timeout(timeout, inner).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout {
                server: server.to_string(),
                ms: timeout.as_millis(),
            }),
        }
    }

    async fn connect_inner(
        server: &str,
        addr: &str,
        login: &Login,
        key: LinkKey,
        db: Option<&str>,
        tls: &BackendTls,
    ) -> Result<BackendConn, BackendError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| io_error(server, e.into()))?;
        if let Err(e) = tune_socket(&stream) {
            tracing::debug!(backend = %server, error = %e, "cannot enable TCP keepalive");
        }
        let mut io = PacketConn::new(stream);
        let greet = io.read_packet().await.map_err(|e| io_error(server, e))?;
        if greet.payload.first() == Some(&0xFF) {
            return Err(server_error(server, &greet.payload));
        }
        let hello = handshake::parse_server_hello(&greet.payload)
            .map_err(|e| protocol(server, e.to_string()))?;
        let caps = link_capabilities(&hello, &key);
        if !caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
            return Err(protocol(
                server,
                "server does not support CLIENT_SESSION_TRACK",
            ));
        }
        let mut auth = Auth {
            server,
            login,
            plugin: hello.plugin.clone(),
            nonce: hello.nonce.clone(),
            seq: greet.seq.wrapping_add(1),
        };
        if auth.plugin != CACHING_SHA2 && auth.plugin != NATIVE {
            auth.plugin = CACHING_SHA2.to_string();
        }
        let link = LinkTls {
            server,
            addr,
            tls,
            offered: hello.caps.contains(CapabilityFlags::CLIENT_SSL),
        };
        let hello_caps = link
            .start(&mut io, &mut auth.seq, caps, (key.collation, db.is_some()))
            .await?;
        auth.respond(&mut io, hello_caps, key.collation, db).await?;
        auth.run(&mut io).await?;
        let flavor = crate::backend::flavor::detect(&hello.version, hello.caps);
        let key_collation = key.collation;
        let who = Identity {
            caps,
            thread_id: hello.connection_id,
            server: server.to_string(),
            flavor,
            version: hello.version,
            key,
            db: db.map(str::to_string),
        };
        let mut conn = BackendConn::logged_in(io, who);
        let to_err = |err| BackendError::Server {
            server: server.to_string(),
            err,
        };
        conn.query_ok(crate::backend::flavor::setup_sql(flavor))
            .await?
            .map_err(to_err)?;
        if flavor == causeway_gtid::Flavor::Mariadb {
            // the greeting's collation id may be one MariaDB does not know
            // (utf8mb4_0900_ai_ci): name the character set explicitly
            if let Some(names) = crate::backend::flavor::set_names(flavor, key_collation) {
                conn.query_ok(&names).await?.map_err(to_err)?;
            }
        }
        Ok(conn)
    }
}

/// The capabilities of a link: what causeway always asks for, plus the
/// reply-shaping ones of the client it serves, as far as the server
/// offers them.
fn link_capabilities(hello: &ServerHello, key: &LinkKey) -> CapabilityFlags {
    (base_capabilities()
        | CapabilityFlags::from_bits_truncate(key.caps) & handshake::reply_shaping_capabilities())
        & (hello.caps | CapabilityFlags::CLIENT_CONNECT_WITH_DB)
}

/// The authentication exchange of one login, from the handshake response
/// to the server's OK.
struct Auth<'a> {
    server: &'a str,
    login: &'a Login,
    /// The plugin in force (the server's default, or the one it switched to).
    plugin: String,
    /// The nonce in force.
    nonce: Vec<u8>,
    /// Sequence id of the next packet causeway sends.
    seq: u8,
}

impl Auth<'_> {
    async fn send(&mut self, io: &mut PacketConn, payload: &[u8]) -> Result<(), BackendError> {
        io.send(&mut self.seq, payload)
            .await
            .map_err(|e| io_error(self.server, e))
    }

    /// Sends the handshake response.
    async fn respond(
        &mut self,
        io: &mut PacketConn,
        caps: CapabilityFlags,
        collation: u8,
        db: Option<&str>,
    ) -> Result<(), BackendError> {
        let pw = &self.login.password;
        let auth = handshake::scramble(&self.plugin, &self.nonce, pw).unwrap_or_default();
        let user = &self.login.user;
        let resp = handshake::client_hello(caps, collation, user, &auth, db, &self.plugin);
        self.send(io, &resp).await
    }

    /// Reads the server's answers until its OK.
    async fn run(&mut self, io: &mut PacketConn) -> Result<(), BackendError> {
        loop {
            let p = io
                .read_packet()
                .await
                .map_err(|e| io_error(self.server, e))?;
            self.seq = p.seq.wrapping_add(1);
            match p.payload.first().copied() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(server_error(self.server, &p.payload)),
                Some(0xFE) => {
                    self.switch(io, p.payload.get(1..).unwrap_or_default())
                        .await?
                }
                Some(0x01) if self.plugin == CACHING_SHA2 => {
                    self.caching_sha2(io, p.payload.get(1).copied()).await?;
                }
                _ => {
                    return Err(protocol(
                        self.server,
                        "unexpected packet during authentication",
                    ))
                }
            }
        }
    }

    /// An auth switch request (`body`: plugin name NUL, nonce NUL).
    async fn switch(&mut self, io: &mut PacketConn, body: &[u8]) -> Result<(), BackendError> {
        let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
        self.plugin = String::from_utf8_lossy(body.get(..end).unwrap_or_default()).into_owned();
        let mut n = body.get(end + 1..).unwrap_or_default().to_vec();
        if n.last() == Some(&0) {
            n.pop();
        }
        self.nonce = n;
        let auth = handshake::scramble(&self.plugin, &self.nonce, &self.login.password)
            .ok_or_else(|| BackendError::Server {
                server: self.server.to_string(),
                err: unsupported_plugin(&self.login.user, &self.plugin),
            })?;
        self.send(io, &auth).await
    }

    /// A caching_sha2_password state byte.
    async fn caching_sha2(
        &mut self,
        io: &mut PacketConn,
        state: Option<u8>,
    ) -> Result<(), BackendError> {
        match state {
            Some(0x03) => Ok(()), // fast auth succeeded; OK follows
            Some(0x04) if io.is_tls() => {
                // full authentication over TLS: the cleartext password, as
                // MySQL clients send it; no RSA key
                let mut pw = self.login.password.as_bytes().to_vec();
                pw.push(0);
                self.send(io, &pw).await
            }
            Some(0x04) => {
                // full authentication without TLS: ask for the RSA key
                self.send(io, &[0x02]).await?;
                let key_pkt = io
                    .read_packet()
                    .await
                    .map_err(|e| io_error(self.server, e))?;
                self.seq = key_pkt.seq.wrapping_add(1);
                let Some(pem) = key_pkt.payload.strip_prefix(&[0x01]) else {
                    return Err(protocol(self.server, "expected RSA public key"));
                };
                let plain = handshake::xor_password(&self.login.password, &self.nonce);
                let enc = mysql_common::crypto::encrypt(&plain, pem);
                self.send(io, &enc).await
            }
            _ => Err(protocol(
                self.server,
                "unexpected caching_sha2_password state",
            )),
        }
    }
}

/// The TLS step of one backend login.
struct LinkTls<'a> {
    server: &'a str,
    addr: &'a str,
    tls: &'a BackendTls,
    /// The server's greeting announced CLIENT_SSL.
    offered: bool,
}

impl LinkTls<'_> {
    fn error(&self, detail: String) -> BackendError {
        BackendError::Tls {
            server: self.server.to_string(),
            mode: self.tls.mode,
            detail,
        }
    }

    /// Switches `io` to TLS when the mode asks for it and the server
    /// offers it (an SSLRequest, then the TLS handshake); refuses when the
    /// mode requires TLS and the server does not offer it. Returns the
    /// capabilities the handshake response must carry.
    async fn start(
        &self,
        io: &mut PacketConn,
        seq: &mut u8,
        caps: CapabilityFlags,
        (collation, with_db): (u8, bool),
    ) -> Result<CapabilityFlags, BackendError> {
        let Some(connector) = self.tls.connector() else {
            return Ok(caps);
        };
        if !self.offered {
            if self.tls.mode.requires() {
                return Err(self.error("the server does not offer TLS".into()));
            }
            return Ok(caps);
        }
        let name = BackendTls::server_name(self.addr)
            .ok_or_else(|| self.error(format!("no host name or IP address in '{}'", self.addr)))?;
        let caps = caps | CapabilityFlags::CLIENT_SSL;
        // the same capabilities as the handshake response that follows
        // (MySQL refuses a mismatch with 1043)
        let mut sent = caps;
        sent.set(CapabilityFlags::CLIENT_CONNECT_WITH_DB, with_db);
        let mut req = Vec::with_capacity(32);
        req.extend_from_slice(&sent.bits().to_le_bytes());
        req.extend_from_slice(&(1u32 << 30).to_le_bytes());
        req.push(collation);
        req.extend_from_slice(&[0u8; 23]);
        io.send(seq, &req)
            .await
            .map_err(|source| BackendError::Io {
                server: self.server.to_string(),
                source,
            })?;
        io.connect_tls(connector, name)
            .await
            .map_err(|e| self.error(format!("handshake failed: {}", tls_cause(&e))))?;
        Ok(caps)
    }
}

/// The innermost cause of a failed TLS handshake (rustls' own error,
/// e.g. "invalid peer certificate: UnknownIssuer").
fn tls_cause(e: &PacketError) -> String {
    match e {
        PacketError::Io(io) => io
            .get_ref()
            .map_or_else(|| io.to_string(), |inner| inner.to_string()),
        other => other.to_string(),
    }
}

/// The error for a backend account whose authentication plugin causeway
/// cannot speak (ER_NOT_SUPPORTED_AUTH_MODE, 1251 / 08004), naming the
/// account and the plugin. `sha256_password` needs TLS or an RSA exchange
/// causeway does not implement towards backends.
pub fn unsupported_plugin(user: &str, plugin: &str) -> ErrPacket {
    let why = if plugin == "sha256_password" {
        "which causeway does not support without TLS to backends"
    } else {
        "which causeway does not support"
    };
    if plugin == "client_ed25519" || plugin == "ed25519" {
        // MariaDB's ed25519 (the server asks for it by its client name)
        return ErrPacket::new(
            1251,
            "08004",
            format!(
                "backend account '{user}' uses MariaDB's ed25519 authentication plugin \
                 ({plugin}), {why}; use mysql_native_password on MariaDB \
                 (ALTER USER ... IDENTIFIED VIA mysql_native_password USING PASSWORD('...'))"
            ),
        );
    }
    ErrPacket::new(
        1251,
        "08004",
        format!(
            "backend account '{user}' uses authentication plugin {plugin}, {why}; \
             use caching_sha2_password (ALTER USER ... IDENTIFIED WITH caching_sha2_password)"
        ),
    )
}

#[cfg(test)]
mod plugin_tests {
    #[test]
    fn ed25519_is_refused_by_name() {
        let e = super::unsupported_plugin("m", "client_ed25519");
        assert_eq!((e.code, &e.state), (1251, b"08004"));
        assert!(
            e.message.contains("ed25519") && e.message.contains("mysql_native_password"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unsupported_plugins_are_named() {
        let e = super::unsupported_plugin("x", "sha256_password");
        assert_eq!(e.code, 1251);
        assert_eq!(&e.state, b"08004");
        assert!(
            e.message.contains("'x'")
                && e.message.contains("sha256_password")
                && e.message.contains("without TLS")
                && e.message.contains("caching_sha2_password"),
            "{}",
            e.message
        );
    }
}
