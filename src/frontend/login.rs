//! The connection phase towards clients: greeting, authentication against
//! the configured users, auth switch, and COM_CHANGE_USER; with `[tls]`,
//! the switch to TLS (SSLRequest, TLS handshake, then the handshake
//! response over TLS) and `require = true`'s refusal of plaintext (3159);
//! every refusal is counted in `causeway_login_failures_total{reason}`.
//! Also the one place a configured user becomes backend credentials
//! ([`backend_login`]).
//!
//! causeway knows each user's plaintext password (from its config), so the
//! `caching_sha2_password` fast path always applies: a correct scramble is
//! accepted with "fast auth success", a wrong one is refused with MySQL's
//! own 1045 / 28000 error (over TLS a wrong scramble gets MySQL's full
//! authentication instead: the client sends its cleartext password, no
//! RSA). A client that answered with another plugin than
//! the user's is switched to it with an AuthSwitchRequest, as MySQL does.

use causeway_config::{Config, User};
use mysql_common::constants::{CapabilityFlags, StatusFlags};

use crate::backend::Login;
use crate::metrics::LOGIN_FAILURES;
use crate::protocol::handshake::{self, ClientHello, Reader, CACHING_SHA2};
use crate::protocol::packet::{Packet, PRE_AUTH_MAX_PAYLOAD};
use crate::protocol::{ErrPacket, OkPacket, PacketConn, PacketError};
use crate::tls::ServerTls;

/// Errors of the connection phase.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The client socket failed.
    #[error("client i/o: {0}")]
    Io(#[from] PacketError),
    /// Authentication was refused; the client has been sent `0`.
    #[error("login refused: {0}")]
    Refused(ErrPacket),
}

/// A successfully authenticated client.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The configured user it logged in as.
    pub user: User,
    /// What the client announced.
    pub hello: ClientHello,
    /// Last scramble sent to the client (COM_CHANGE_USER signs with it).
    pub nonce: [u8; 20],
}

/// The credentials causeway logs in to backends with for `user`.
pub fn backend_login(user: &User) -> Login {
    Login {
        user: user.backend_user.clone(),
        password: user.backend_password.clone(),
    }
}

/// Why a client login (or COM_CHANGE_USER) was refused: the `reason`
/// label of `causeway_login_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A connection-phase packet over the pre-authentication limit (1153).
    TooLarge,
    /// Plaintext while `[tls] require = true` (3159).
    InsecureTransport,
    /// A handshake response that does not parse (1043, or 3159 for TLS
    /// asked of a proxy without `[tls]`).
    BadHandshake,
    /// Unknown user or wrong password (1045).
    AccessDenied,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::TooLarge => "packet_too_large",
            Refusal::InsecureTransport => "insecure_transport",
            Refusal::BadHandshake => "bad_handshake",
            Refusal::AccessDenied => "access_denied",
        }
    }
}

/// Counts a refused login by `reason` and wraps its error.
fn refused(reason: Refusal, err: ErrPacket) -> LoginError {
    metrics::counter!(LOGIN_FAILURES, "reason" => reason.label()).increment(1);
    LoginError::Refused(err)
}

/// MySQL's access-denied error.
pub fn access_denied(user: &str, host: &str, with_password: bool) -> ErrPacket {
    ErrPacket::new(
        1045,
        "28000",
        format!(
            "Access denied for user '{user}'@'{host}' (using password: {})",
            if with_password { "YES" } else { "NO" }
        ),
    )
}

/// MySQL's ER_SECURE_TRANSPORT_REQUIRED (3159 / HY000), for a client that
/// did not switch to TLS while `[tls] require = true`.
pub fn secure_transport_required() -> ErrPacket {
    ErrPacket::new(
        3159,
        "HY000",
        "Connections using insecure transport are prohibited while \
         --require_secure_transport=ON (causeway: [tls] require = true).",
    )
}

/// MySQL's error for a packet over `max_allowed_packet` (1153 / 08S01).
pub fn packet_too_large() -> ErrPacket {
    ErrPacket::new(
        1153,
        "08S01",
        "Got a packet bigger than 'max_allowed_packet' bytes",
    )
}

/// Reads one packet of the connection phase: at most
/// [`PRE_AUTH_MAX_PAYLOAD`] bytes, refused from its header with 1153.
async fn read_unauthenticated(client: &mut PacketConn) -> Result<Packet, LoginError> {
    client.set_max_payload(PRE_AUTH_MAX_PAYLOAD);
    match client.read_packet().await {
        Ok(p) => Ok(p),
        Err(PacketError::TooLarge { seq, .. }) => {
            let err = packet_too_large();
            let mut seq = seq.wrapping_add(1);
            let refusal = refused(Refusal::TooLarge, err.clone());
            client.send(&mut seq, &err.encode()).await?;
            Err(refusal)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether a handshake response that did not parse asked for TLS.
fn wants_tls(payload: &[u8]) -> bool {
    Reader(payload)
        .u32_le()
        .is_some_and(|caps| caps & CapabilityFlags::CLIENT_SSL.bits() != 0)
}

/// Runs the connection phase. On success the client has NOT yet been sent
/// its OK: the caller sends it (after checking the initial schema).
pub async fn login(
    client: &mut PacketConn,
    (config, tls): (&Config, Option<&ServerTls>),
    connection_id: u32,
    server_version: &str,
    peer_host: &str,
) -> Result<(Authenticated, u8), LoginError> {
    let mut nonce = handshake::new_nonce();
    let mut seq = 0u8;
    let greet = handshake::greeting(
        server_version,
        connection_id,
        &nonce,
        255,
        CACHING_SHA2,
        tls.is_some(),
    );
    client.send(&mut seq, &greet).await?;
    let mut p = read_unauthenticated(client).await?;
    if let Some(tls) = tls.filter(|_| wants_tls(&p.payload)) {
        client.accept_tls(tls.acceptor()).await?;
        p = read_unauthenticated(client).await?;
    }
    seq = p.seq.wrapping_add(1);
    if tls.is_some_and(|t| t.require) && !client.is_tls() {
        let err = secure_transport_required();
        let refusal = refused(Refusal::InsecureTransport, err.clone());
        client.send(&mut seq, &err.encode()).await?;
        return Err(refusal);
    }
    let hello = match handshake::parse_client_hello(&p.payload) {
        Ok(h) => h,
        Err(e) => {
            let err = if wants_tls(&p.payload) {
                ErrPacket::new(
                    3159,
                    "HY000",
                    "causeway is not configured for TLS (no [tls] section); connect with ssl-mode=DISABLED",
                )
            } else {
                ErrPacket::new(1043, "08S01", format!("Bad handshake: {e}"))
            };
            let refusal = refused(Refusal::BadHandshake, err.clone());
            client.send(&mut seq, &err.encode()).await?;
            return Err(refusal);
        }
    };
    let user = config.user(&hello.user).cloned();
    let (response, plugin) = authenticate(
        client,
        &mut seq,
        &mut nonce,
        (hello.plugin.as_str(), CACHING_SHA2),
        &hello.auth_response,
        user.as_ref(),
    )
    .await?;
    let mut ok = user
        .as_ref()
        .is_some_and(|u| handshake::verify(plugin, &nonce, &u.password, &response));
    let mut fast = true;
    if !ok && plugin == CACHING_SHA2 && client.is_tls() && !is_empty_response(&response) {
        fast = false;
        ok = full_auth(client, &mut seq, user.as_ref()).await?;
    }
    match user {
        Some(user) if ok => {
            if fast && plugin == CACHING_SHA2 && !is_empty_response(&response) {
                client.queue(&mut seq, &[0x01, 0x03]);
            }
            Ok((Authenticated { user, hello, nonce }, seq))
        }
        _ => {
            let err = access_denied(&hello.user, peer_host, !is_empty_response(&response));
            let refusal = refused(Refusal::AccessDenied, err.clone());
            client.send(&mut seq, &err.encode()).await?;
            Err(refusal)
        }
    }
}

/// Gets a response computed with the user's plugin, switching the client to
/// it when it answered with another one. Returns the response and plugin.
async fn authenticate(
    client: &mut PacketConn,
    seq: &mut u8,
    nonce: &mut [u8; 20],
    (client_plugin, nonce_plugin): (&str, &str),
    first_response: &[u8],
    user: Option<&User>,
) -> Result<(Vec<u8>, &'static str), LoginError> {
    let wanted = user.map(|u| u.auth_plugin.as_str()).unwrap_or(CACHING_SHA2);
    // A client whose plugin differs from the one our scramble was sent for
    // may have answered empty, waiting for an AuthSwitchRequest (MySQL sends
    // one): switch unless its answer is usable as it is.
    let usable = client_plugin == wanted
        && (client_plugin == nonce_plugin || !is_empty_response(first_response));
    if usable {
        return Ok((first_response.to_vec(), wanted));
    }
    *nonce = handshake::new_nonce();
    client
        .send(seq, &handshake::auth_switch_request(wanted, nonce))
        .await?;
    let p = read_unauthenticated(client).await?;
    *seq = p.seq.wrapping_add(1);
    Ok((p.payload.to_vec(), wanted))
}

/// caching_sha2_password's full authentication over TLS: asks for the
/// password, which the client sends in clear (NUL-terminated) inside the
/// TLS link, and compares it with the user's. Never used on plaintext.
async fn full_auth(
    client: &mut PacketConn,
    seq: &mut u8,
    user: Option<&User>,
) -> Result<bool, LoginError> {
    client.send(seq, &[0x01, 0x04]).await?;
    let p = read_unauthenticated(client).await?;
    *seq = p.seq.wrapping_add(1);
    let pw = p.payload.strip_suffix(&[0]).unwrap_or(&p.payload);
    Ok(user.is_some_and(|u| handshake::constant_time_eq(pw, u.password.as_bytes())))
}

fn is_empty_response(r: &[u8]) -> bool {
    r.is_empty() || r == [0]
}

/// Builds the OK that ends a successful login or change-user.
pub fn login_ok(caps: CapabilityFlags) -> Vec<u8> {
    OkPacket {
        status: StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits(),
        ..OkPacket::default()
    }
    .encode(0x00, caps)
}

/// A parsed COM_CHANGE_USER request.
#[derive(Debug, Clone)]
pub struct ChangeUser {
    /// New user.
    pub user: String,
    /// Auth response.
    pub auth_response: Vec<u8>,
    /// New schema.
    pub db: Option<String>,
    /// Collation, if sent.
    pub collation: Option<u8>,
    /// Plugin the response was computed with.
    pub plugin: String,
}

/// Parses a COM_CHANGE_USER payload (including its command byte). Every
/// read is bounds-checked: short or garbled input gives `None`.
pub fn parse_change_user(payload: &[u8], caps: CapabilityFlags) -> Option<ChangeUser> {
    let mut r = Reader(payload);
    r.u8()?;
    let user = String::from_utf8_lossy(r.nul_str()?).into_owned();
    let auth_response = if caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let n = r.u8()?;
        r.take(usize::from(n))?.to_vec()
    } else {
        r.nul_str()?.to_vec()
    };
    let db = r
        .nul_str()
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(d).into_owned());
    let mut collation = None;
    if let Some(cs) = r.take(2) {
        collation = cs.first().copied();
    }
    let mut plugin = handshake::NATIVE.to_string();
    if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
        if let Some(p) = r.nul_str() {
            plugin = String::from_utf8_lossy(p).into_owned();
        }
    }
    // connection attributes, if any, are ignored (COM_CHANGE_USER comes
    // after login, so max_client_packet bounds them)
    Some(ChangeUser {
        user,
        auth_response,
        db,
        collation,
        plugin,
    })
}

/// Authenticates a COM_CHANGE_USER. `seq` continues the command's sequence.
/// On success returns the user and the scramble now in force.
pub async fn change_user(
    client: &mut PacketConn,
    seq: &mut u8,
    config: &Config,
    req: &ChangeUser,
    nonce: &mut [u8; 20],
    peer_host: &str,
) -> Result<User, LoginError> {
    let user = config.user(&req.user).cloned();
    let (response, plugin) = authenticate(
        client,
        seq,
        nonce,
        (req.plugin.as_str(), req.plugin.as_str()),
        &req.auth_response,
        user.as_ref(),
    )
    .await?;
    match user {
        Some(u) if handshake::verify(plugin, nonce, &u.password, &response) => {
            if plugin == CACHING_SHA2 && !is_empty_response(&response) {
                client.queue(seq, &[0x01, 0x03]);
            }
            Ok(u)
        }
        _ => {
            let err = access_denied(&req.user, peer_host, !is_empty_response(&response));
            let refusal = refused(Refusal::AccessDenied, err.clone());
            client.send(seq, &err.encode()).await?;
            Err(refusal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_user_payload_parses() {
        let caps = CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PROTOCOL_41;
        let mut p = vec![0x11];
        p.extend_from_slice(b"bob\0");
        p.push(3);
        p.extend_from_slice(&[1, 2, 3]);
        p.extend_from_slice(b"db1\0");
        p.extend_from_slice(&[255, 0]);
        p.extend_from_slice(b"caching_sha2_password\0");
        let c = parse_change_user(&p, caps).unwrap();
        assert_eq!(c.user, "bob");
        assert_eq!(c.auth_response, vec![1, 2, 3]);
        assert_eq!(c.db.as_deref(), Some("db1"));
        assert_eq!(c.collation, Some(255));
        assert_eq!(c.plugin, "caching_sha2_password");
    }

    #[test]
    fn change_user_garbage_is_refused_not_a_panic() {
        let caps = CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PROTOCOL_41;
        assert!(parse_change_user(&[], caps).is_none());
        assert!(parse_change_user(&[0x11], caps).is_none());
        assert!(parse_change_user(b"\x11bob", caps).is_none());
        // auth response length past the end (the old `rest[1 + n..]`)
        assert!(parse_change_user(b"\x11bob\0\xff\x01\x02", caps).is_none());
        assert!(parse_change_user(b"\x11bob\0\x03", caps).is_none());
        // exactly enough: no schema, no collation, no plugin
        let c = parse_change_user(b"\x11bob\0\x01\x07", caps).unwrap();
        assert_eq!((c.auth_response, c.db, c.collation), (vec![7], None, None));
        assert_eq!(c.plugin, handshake::NATIVE);
        // one byte of collation only
        let c = parse_change_user(b"\x11bob\0\x00db\0\x21", caps).unwrap();
        assert_eq!((c.db.as_deref(), c.collation), (Some("db"), None));
        // without CLIENT_SECURE_CONNECTION the response is NUL-terminated
        let c = parse_change_user(b"\x11bob\0pw\0", CapabilityFlags::CLIENT_PROTOCOL_41).unwrap();
        assert_eq!(c.auth_response, b"pw");
        assert!(parse_change_user(b"\x11bob\0pw", CapabilityFlags::CLIENT_PROTOCOL_41).is_none());
    }

    proptest::proptest! {
        #[test]
        fn change_user_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
            caps in proptest::num::u32::ANY,
        ) {
            let _ = parse_change_user(&bytes, CapabilityFlags::from_bits_truncate(caps));
        }
    }

    #[test]
    fn tls_requests_are_recognised_from_any_length() {
        assert!(!wants_tls(&[]));
        assert!(!wants_tls(&[0xFF, 0xFF]));
        assert!(wants_tls(&CapabilityFlags::CLIENT_SSL.bits().to_le_bytes()));
        assert!(!wants_tls(
            &CapabilityFlags::CLIENT_PROTOCOL_41.bits().to_le_bytes()
        ));
    }

    #[test]
    fn packet_too_large_matches_mysql() {
        let e = packet_too_large();
        assert_eq!((e.code, e.sqlstate()), (1153, "08S01"));
        assert_eq!(
            e.message,
            "Got a packet bigger than 'max_allowed_packet' bytes"
        );
    }

    /// Runs the connection phase against a client that answers the
    /// greeting with `response`; returns the client's next packet.
    async fn login_with(cfg: &Config, response: Vec<u8>) -> (Result<(), LoginError>, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn read(s: &mut tokio::net::TcpStream) -> Vec<u8> {
            let mut hdr = [0u8; 4];
            s.read_exact(&mut hdr).await.unwrap();
            let len = usize::from(hdr[0]) | usize::from(hdr[1]) << 8 | usize::from(hdr[2]) << 16;
            let mut body = vec![0; len];
            s.read_exact(&mut body).await.unwrap();
            body
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            read(&mut s).await;
            let len = u32::try_from(response.len()).unwrap().to_le_bytes();
            s.write_all(&[len[0], len[1], len[2], 1]).await.unwrap();
            s.write_all(&response).await.unwrap();
            read(&mut s).await
        });
        let (sock, _) = listener.accept().await.unwrap();
        let mut conn = PacketConn::new(sock);
        let r = login(&mut conn, (cfg, None), 1, "8.0.0", "127.0.0.1").await;
        (r.map(|_| ()), client.await.unwrap())
    }

    #[tokio::test]
    async fn refused_logins_are_counted_by_reason() {
        let rec = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = rec.handle();
        let _local = metrics::set_default_local_recorder(&rec);
        let cfg = Config::from_str_named(
            "[[users]]\nname='app'\npassword='pw'\n[primary]\nname='p'\naddress='127.0.0.1:1'\n[monitor]\nuser='m'\n",
            "t",
        )
        .unwrap();
        let (r, reply) = login_with(&cfg, vec![0x01, 0x02]).await;
        assert!(
            matches!(r, Err(LoginError::Refused(ref e)) if e.code == 1043),
            "{r:?}"
        );
        assert_eq!(reply.first(), Some(&0xFF));
        let caps = handshake::server_capabilities() | CapabilityFlags::CLIENT_PROTOCOL_41;
        for user in ["nobody", "app"] {
            let hello = handshake::client_hello(caps, 255, user, &[1; 32], None, CACHING_SHA2);
            let (r, reply) = login_with(&cfg, hello).await;
            assert!(
                matches!(r, Err(LoginError::Refused(ref e)) if e.code == 1045),
                "{r:?}"
            );
            assert_eq!(reply.first(), Some(&0xFF));
        }
        let text = handle.render();
        let count = |reason: &str| {
            let line = format!("{LOGIN_FAILURES}{{reason=\"{reason}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .map(str::to_string)
        };
        assert_eq!(count("bad_handshake").as_deref(), Some("1"), "{text}");
        assert_eq!(count("access_denied").as_deref(), Some("2"), "{text}");
        assert_eq!(count("packet_too_large"), None, "{text}");
    }

    #[test]
    fn access_denied_matches_mysql() {
        let e = access_denied("app", "127.0.0.1", true);
        assert_eq!(e.code, 1045);
        assert_eq!(e.sqlstate(), "28000");
        assert_eq!(
            e.message,
            "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        );
    }
}
