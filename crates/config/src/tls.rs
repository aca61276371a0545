//! The `[tls]` (towards clients) and `[backend_tls]` (towards MySQL
//! servers) sections: their shape, defaults and semantic checks. Loading
//! the files they name is the proxy's business, not this crate's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Seg;
use crate::model::{string_enum, ParseEnumError};
use crate::validate::Problem;

/// `[tls]`: TLS offered to clients. Absent = clients cannot switch to TLS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain, leaf first. Re-read on SIGHUP.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC). Re-read on SIGHUP.
    pub key: String,
    /// A client that does not switch to TLS is refused with 3159 / HY000
    /// (ER_SECURE_TRANSPORT_REQUIRED) and closed.
    #[serde(default)]
    pub require: bool,
}

/// `[backend_tls]`: TLS towards the MySQL servers (primary, replicas and
/// the monitor's connections alike).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendTls {
    /// How TLS is negotiated, with MySQL's `--ssl-mode` meanings.
    pub mode: TlsMode,
    /// PEM file of the CA certificate(s) a server's certificate must chain
    /// to; required for `verify_ca` and `verify_identity`. May hold several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

/// MySQL's `--ssl-mode`, towards backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Never TLS.
    Disabled,
    /// TLS when the server offers it, certificate not verified.
    #[default]
    Preferred,
    /// TLS or no connection; certificate not verified.
    Required,
    /// TLS, and the certificate must chain to `ca` (any host name).
    VerifyCa,
    /// As `verify_ca`, and the certificate must name the host of the
    /// backend's address (DNS name or IP address).
    VerifyIdentity,
}

string_enum!(TlsMode, "mode", "disabled, preferred, required, verify_ca, verify_identity",
    Disabled => "disabled", Preferred => "preferred", Required => "required",
    VerifyCa => "verify_ca", VerifyIdentity => "verify_identity");

impl TlsMode {
    /// Whether the server's certificate is checked against `ca`.
    pub fn verifies(&self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyIdentity)
    }

    /// Whether a connection without TLS is refused.
    pub fn requires(&self) -> bool {
        !matches!(self, TlsMode::Disabled | TlsMode::Preferred)
    }
}

fn key(parts: &[&str]) -> Vec<Seg> {
    parts.iter().map(|p| Seg::Key(p.to_string())).collect()
}

fn fail(path: &[&str], message: impl Into<String>) -> Result<(), Problem> {
    Err(Problem {
        path: key(path),
        message: message.into(),
    })
}

/// The rules of both sections: non-empty paths, `ca` with `verify_*`.
pub(crate) fn validate(tls: Option<&Tls>, backend: &BackendTls) -> Result<(), Problem> {
    if let Some(t) = tls {
        if t.cert.trim().is_empty() {
            return fail(&["tls", "cert"], "must name a PEM certificate file");
        }
        if t.key.trim().is_empty() {
            return fail(&["tls", "key"], "must name a PEM private key file");
        }
    }
    match backend.ca.as_deref() {
        Some(ca) if ca.trim().is_empty() => {
            fail(&["backend_tls", "ca"], "must name a PEM file of CA certificates")
        }
        None if backend.mode.verifies() => fail(
            &["backend_tls", "mode"],
            format!(
                "'{}' needs backend_tls.ca (the CA certificates the servers' certificates must chain to)",
                backend.mode
            ),
        ),
        Some(_) if backend.mode == TlsMode::Disabled => fail(
            &["backend_tls", "ca"],
            "is set but mode = \"disabled\" never uses it",
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_case_insensitively() {
        assert_eq!("VERIFY_CA".parse::<TlsMode>().unwrap(), TlsMode::VerifyCa);
        assert_eq!(TlsMode::default(), TlsMode::Preferred);
        for m in TlsMode::ALL {
            assert_eq!(m.as_str().parse::<TlsMode>().unwrap(), *m);
        }
        let e = "verify".parse::<TlsMode>().unwrap_err();
        assert!(e.to_string().contains("verify_identity"), "{e}");
        assert!(TlsMode::VerifyIdentity.verifies() && TlsMode::VerifyCa.requires());
        assert!(!TlsMode::Preferred.requires() && !TlsMode::Required.verifies());
    }
}
