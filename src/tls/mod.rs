//! TLS material and settings: the rustls crypto provider, PEM loading,
//! the server side offered to clients (`[tls]`, see [`server`]) and the
//! client side used towards MySQL servers (`[backend_tls]`, see
//! [`client`]). The switch of a connection to TLS is
//! `crate::protocol::packet`'s; when to switch is the login code's.

pub mod client;
pub mod server;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub use client::BackendTls;
pub use server::ServerTls;

#[cfg(all(feature = "ring", feature = "aws-lc-rs"))]
compile_error!("enable exactly one of the features `ring` and `aws-lc-rs`");
#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
compile_error!("enable one of the features `ring` (default) and `aws-lc-rs`");

/// Errors loading TLS material or building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        /// Which setting named it.
        what: &'static str,
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file held no usable PEM item.
    #[error("{what} file {path}: {detail}")]
    Pem {
        /// Which setting named it.
        what: &'static str,
        /// The path.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the material (e.g. a key that does not match the
    /// certificate).
    #[error("{what}: {source}")]
    Rustls {
        /// What was being built.
        what: &'static str,
        /// Cause.
        #[source]
        source: rustls::Error,
    },
    /// The CA certificates could not be used for verification.
    #[error("backend_tls.ca {path}: {detail}")]
    Verifier {
        /// The path.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// The crypto provider selected at build time (`ring` by default,
/// `aws-lc-rs` with that feature).
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let p = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

fn read(what: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(Path::new(path)).map_err(|source| TlsError::Read {
        what,
        path: path.to_string(),
        source,
    })
}

/// Every certificate of a PEM file, in order. At least one.
pub fn load_certs(
    what: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let pem = |detail: String| TlsError::Pem {
        what,
        path: path.to_string(),
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(what: &'static str, path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        what,
        path: path.to_string(),
        detail: format!("no usable private key ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let e = load_certs("tls.cert", "/nonexistent/x.pem").unwrap_err();
        assert!(e.to_string().contains("tls.cert") && e.to_string().contains("/nonexistent/x.pem"));
        let dir = std::env::temp_dir().join(format!("causeway-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let p = empty.to_string_lossy().into_owned();
        assert!(load_certs("tls.cert", &p)
            .unwrap_err()
            .to_string()
            .contains("no CERTIFICATE"));
        assert!(load_key("tls.key", &p)
            .unwrap_err()
            .to_string()
            .contains("private key"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
