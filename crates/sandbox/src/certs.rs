//! Throwaway TLS certificates (rcgen): a CA and a server certificate it
//! signs, for the proxy's `[tls]` in the sandbox, tests and benches. The
//! server certificate names `localhost` and the IP address 127.0.0.1, so
//! clients can verify it with `--ssl-mode=VERIFY_IDENTITY`.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Errors generating or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The PEM files of one generated CA and server certificate.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate (what clients pass as `--ssl-ca`).
    pub ca: PathBuf,
    /// The CA's private key (to sign more certificates).
    pub ca_key: PathBuf,
    /// The server certificate, signed by the CA.
    pub cert: PathBuf,
    /// The server certificate's private key.
    pub key: PathBuf,
}

/// A CA and its key, kept to sign server certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<Ca, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses) and
    /// its private key, both in PEM.
    pub fn server_cert(&self, names: &[&str]) -> Result<(String, String), CertError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "causeway sandbox server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes the CA and a new server certificate for `localhost` and
    /// 127.0.0.1 under `dir` (created if needed): `ca.pem`, `ca-key.pem`,
    /// `server-cert.pem`, `server-key.pem`.
    pub fn write_server_files(&self, dir: &Path) -> Result<CertFiles, CertError> {
        let files = CertFiles {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert: dir.join("server-cert.pem"),
            key: dir.join("server-key.pem"),
        };
        let (cert, key) = self.server_cert(&["localhost", "127.0.0.1"])?;
        write(dir, &files.ca, &self.pem())?;
        write(dir, &files.ca_key, &self.key.serialize_pem())?;
        write(dir, &files.cert, &cert)?;
        write(dir, &files.key, &key)?;
        Ok(files)
    }
}

/// Generates a fresh CA and server certificate into `dir`.
pub fn generate(dir: &Path) -> Result<CertFiles, CertError> {
    Ca::new("causeway sandbox CA")?.write_server_files(dir)
}

fn write(dir: &Path, path: &Path, text: &str) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // write-then-rename, so a reader never sees half a file
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files() {
        let dir = std::env::temp_dir().join(format!("causeway-certs-{}", std::process::id()));
        let files = generate(&dir).unwrap();
        for p in [&files.ca, &files.ca_key, &files.cert, &files.key] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{}", p.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
