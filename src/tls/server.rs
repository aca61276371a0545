//! TLS towards clients (`[tls]`): the certificate and key loaded into a
//! rustls server configuration. A topology snapshot holds one; a reload
//! builds a new snapshot and so re-reads the files, while connections
//! already switched to TLS keep the configuration they were accepted with.

use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

use super::{load_certs, load_key, provider, TlsError};

/// The TLS offered to clients.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    /// Refuse clients that do not switch to TLS (3159).
    pub require: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("require", &self.require)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads `cert` and `key` and builds the server configuration (TLS 1.2
    /// and 1.3, no client certificates).
    pub fn load(cfg: &causeway_config::Tls) -> Result<ServerTls, TlsError> {
        let certs = load_certs("tls.cert", &cfg.cert)?;
        let key = load_key("tls.key", &cfg.key)?;
        let rustls = |source| TlsError::Rustls {
            what: "tls.cert/tls.key",
            source,
        };
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(rustls)?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            require: cfg.require,
        })
    }

    /// The acceptor for one client's switch to TLS.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
