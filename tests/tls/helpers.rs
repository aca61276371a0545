//! Helpers of tests/tls.rs: certificates where the chrooted `mysql` CLI
//! sees them, `[tls]` / `[backend_tls]` config text, client processes and
//! options (mysql_async, the `mysql` CLI) that verify the certificate, and
//! a raw protocol client that switches to TLS itself (to see the peer
//! certificate and to drive caching_sha2 full authentication by hand).
#![allow(dead_code)]

use causeway_sandbox::{Ca, CertFiles};
use mysql_async::{Opts, OptsBuilder, SslOpts};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support;

/// Certificates under the sandbox's work dir (inside the chroot, so the
/// chrooted CLI can read them).
pub struct Certs {
    /// Host paths.
    pub files: CertFiles,
    /// The CA that signed them (to sign a replacement).
    pub ca: Ca,
    dir: PathBuf,
}

impl Certs {
    /// A fresh CA and server certificate (localhost, 127.0.0.1).
    pub fn new(tag: &str) -> Certs {
        let dir = support::topology().dist().work_dir().join(format!(
            "tls-{}-{}",
            std::process::id(),
            support::unique_db(tag)
        ));
        let ca = Ca::new(&format!("causeway test CA {tag}")).unwrap();
        let files = ca.write_server_files(&dir).unwrap();
        Certs { files, ca, dir }
    }

    /// The path the chrooted CLI sees for a host path.
    pub fn inner(&self, host: &Path) -> String {
        support::topology()
            .dist()
            .inner_path(host)
            .to_string_lossy()
            .into_owned()
    }

    /// The `[tls]` section for these files.
    pub fn section(&self, require: bool) -> String {
        format!(
            "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\nrequire = {require}\n",
            self.files.cert.display(),
            self.files.key.display()
        )
    }

    /// The server certificate now in the file, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        let pem = std::fs::read(&self.files.cert).unwrap();
        CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `[backend_tls]` section.
pub fn backend_section(mode: &str, ca: Option<&Path>) -> String {
    let mut s = format!("\n[backend_tls]\nmode = \"{mode}\"\n");
    if let Some(ca) = ca {
        s.push_str(&format!("ca = \"{}\"\n", ca.display()));
    }
    s
}

/// Output of one client process.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a client process (bounded, 120 s).
pub async fn run(mut cmd: tokio::process::Command) -> Run {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("client process timed out")
        .expect("starting client process");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A rustls client configuration trusting only `ca`.
pub fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(causeway::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Reads one packet: (sequence id, payload).
pub async fn read_packet<S: AsyncRead + Unpin>(s: &mut S) -> (u8, Vec<u8>) {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).await.unwrap();
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).await.unwrap();
    (h[3], p)
}

/// Writes one packet.
pub async fn write_packet<S: AsyncWrite + Unpin>(s: &mut S, seq: u8, payload: &[u8]) {
    let n = payload.len();
    let mut out = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
    out.extend_from_slice(payload);
    s.write_all(&out).await.unwrap();
    s.flush().await.unwrap();
}

/// Capabilities of the raw client.
pub fn raw_caps() -> mysql_common::constants::CapabilityFlags {
    use mysql_common::constants::CapabilityFlags as C;
    C::CLIENT_PROTOCOL_41
        | C::CLIENT_SECURE_CONNECTION
        | C::CLIENT_PLUGIN_AUTH
        | C::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | C::CLIENT_TRANSACTIONS
        | C::CLIENT_DEPRECATE_EOF
        | C::CLIENT_SSL
}

/// Connects, reads the greeting, sends an SSLRequest and switches to TLS
/// verifying the certificate against `ca`. Returns the TLS stream (the
/// next packet to send has sequence id 2) and the greeting's payload.
pub async fn raw_tls(
    port: u16,
    ca: &Path,
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (_, greeting) = read_packet(&mut tcp).await;
    let mut req = raw_caps().bits().to_le_bytes().to_vec();
    req.extend_from_slice(&(1u32 << 24).to_le_bytes());
    req.push(255);
    req.extend_from_slice(&[0u8; 23]);
    write_packet(&mut tcp, 1, &req).await;
    let connector = tokio_rustls::TlsConnector::from(client_config(ca));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    (tls, greeting)
}

/// The DER of the certificate a TLS client was shown.
pub fn peer_cert(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// mysql_async options through `port` over TLS trusting `ca`.
pub fn tls_opts(port: u16, ca: &Path) -> Opts {
    let ssl = SslOpts::default()
        .with_disable_built_in_roots(true)
        .with_root_certs(vec![ca.to_path_buf().into()]);
    OptsBuilder::from_opts(support::opts(port, "app", "apppw", None))
        .ssl_opts(ssl)
        .into()
}

/// The `mysql` CLI as app against `port` with `extra` flags.
pub async fn mysql_cli(port: u16, extra: &[String], sql: &str) -> Run {
    let mut cmd = support::topology().dist().mysql_client_tokio_command();
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("-h127.0.0.1")
        .arg(format!("-P{port}"))
        .arg("-uapp")
        .arg("-papppw")
        .arg("--max-allowed-packet=64M")
        .args(extra)
        .arg("-N")
        .arg("-e")
        .arg(sql);
    run(cmd).await
}

/// Lower-case hex sha256 of `der`.
pub fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
