//! TLS towards MySQL servers (`[backend_tls]`): one rustls client
//! configuration per mode, MySQL's `--ssl-mode` meanings:
//! `preferred` and `required` encrypt without checking the certificate,
//! `verify_ca` checks the chain against `ca` (any name), `verify_identity`
//! also checks the name against the backend address's host. The monitor's
//! driver (mysql_async) gets the same mode through [`monitor_opts`].

use causeway_config::TlsMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_rustls::TlsConnector;

use super::{load_certs, provider, TlsError};

/// The backend TLS settings in force and the connector built from them.
#[derive(Clone)]
pub struct BackendTls {
    /// The mode.
    pub mode: TlsMode,
    /// The CA file, for `verify_*`.
    pub ca: Option<String>,
    connector: Option<TlsConnector>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("mode", &self.mode)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// Same settings (the connector follows from them).
impl PartialEq for BackendTls {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode && self.ca == other.ca
    }
}

impl Default for BackendTls {
    /// No TLS (for tests and tools that build pools by hand).
    fn default() -> Self {
        BackendTls {
            mode: TlsMode::Disabled,
            ca: None,
            connector: None,
        }
    }
}

impl BackendTls {
    /// Builds the connector for `cfg`; reads `ca` for `verify_*`.
    pub fn from_config(cfg: &causeway_config::BackendTls) -> Result<BackendTls, TlsError> {
        let verifier: Option<Arc<dyn ServerCertVerifier>> = match cfg.mode {
            TlsMode::Disabled => None,
            TlsMode::Preferred | TlsMode::Required => Some(Arc::new(Unverified)),
            TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
                let path = cfg.ca.as_deref().unwrap_or_default();
                let webpki = webpki_verifier(path)?;
                if cfg.mode == TlsMode::VerifyCa {
                    Some(Arc::new(AnyName(webpki)))
                } else {
                    Some(webpki)
                }
            }
        };
        let connector = match verifier {
            None => None,
            Some(v) => {
                let config = rustls::ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|source| TlsError::Rustls {
                        what: "backend_tls",
                        source,
                    })?
                    .dangerous()
                    .with_custom_certificate_verifier(v)
                    .with_no_client_auth();
                Some(TlsConnector::from(Arc::new(config)))
            }
        };
        Ok(BackendTls {
            mode: cfg.mode,
            ca: cfg.ca.clone(),
            connector,
        })
    }

    /// The connector, unless the mode is `disabled`.
    pub fn connector(&self) -> Option<&TlsConnector> {
        self.connector.as_ref()
    }

    /// The name a backend's certificate is checked against: the host of
    /// its `host:port` address (an IP address or a DNS name).
    pub fn server_name(addr: &str) -> Option<ServerName<'static>> {
        let (host, _) = causeway_config::split_host_port(addr).ok()?;
        ServerName::try_from(host.trim_matches(['[', ']']))
            .ok()
            .map(|n| n.to_owned())
    }
}

/// The monitor's driver options for `cfg`'s mode; `None` for plaintext.
/// (`preferred` starts with TLS; the monitor falls back to plaintext when
/// the server does not offer it.)
pub fn monitor_opts(cfg: &causeway_config::BackendTls) -> Option<mysql_async::SslOpts> {
    let opts = mysql_async::SslOpts::default().with_disable_built_in_roots(true);
    match cfg.mode {
        TlsMode::Disabled => None,
        TlsMode::Preferred | TlsMode::Required => Some(opts.with_danger_accept_invalid_certs(true)),
        TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
            let ca = cfg.ca.clone().unwrap_or_default();
            let opts = opts.with_root_certs(vec![std::path::PathBuf::from(ca).into()]);
            Some(opts.with_danger_skip_domain_validation(cfg.mode == TlsMode::VerifyCa))
        }
    }
}

fn webpki_verifier(path: &str) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("backend_tls.ca", path)? {
        roots.add(cert).map_err(|e| TlsError::Verifier {
            path: path.to_string(),
            detail: e.to_string(),
        })?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Verifier {
            path: path.to_string(),
            detail: e.to_string(),
        })
}

/// The handshake signature checks every verifier shares.
fn algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// `preferred` / `required`: the link is encrypted, the certificate is not
/// checked (MySQL's meaning of those modes). Handshake signatures still are.
#[derive(Debug)]
struct Unverified;

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// `verify_ca`: the full WebPKI check except the name.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_address() {
        assert_eq!(
            BackendTls::server_name("127.0.0.1:3306").map(|n| n.to_str().into_owned()),
            Some("127.0.0.1".to_string())
        );
        assert_eq!(
            BackendTls::server_name("db.example.com:3306").map(|n| n.to_str().into_owned()),
            Some("db.example.com".to_string())
        );
        assert!(BackendTls::server_name("[::1]:3306").is_some());
    }

    #[test]
    fn modes_build_connectors() {
        let off = causeway_config::BackendTls {
            mode: TlsMode::Disabled,
            ca: None,
        };
        let plain = BackendTls::from_config(&off).unwrap();
        assert!(plain.connector().is_none() && monitor_opts(&off).is_none());
        let on = causeway_config::BackendTls::default();
        let pref = BackendTls::from_config(&on).unwrap();
        assert!(pref.connector().is_some() && monitor_opts(&on).is_some());
        let e = BackendTls::from_config(&causeway_config::BackendTls {
            mode: TlsMode::VerifyCa,
            ca: Some("/nonexistent/ca.pem".into()),
        })
        .unwrap_err();
        assert!(e.to_string().contains("backend_tls.ca"), "{e}");
    }
}
