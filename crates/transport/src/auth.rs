//! Shared-secret authentication.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::TransportError;

/// A shared secret. It never appears in `Debug` output, logs or reports.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Shortest secret ferry accepts.
pub const MIN_SECRET_LEN: usize = 16;

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Result<Self, TransportError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(TransportError::Secret {
                path: "<memory>".into(),
                detail: format!("a secret needs at least {MIN_SECRET_LEN} bytes"),
            });
        }
        Ok(Self(bytes))
    }

    /// Reads a secret file (trailing whitespace ignored). The file must not be readable
    /// by group or others.
    pub fn from_file(path: &Path) -> Result<Self, TransportError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |detail: String| TransportError::Secret {
            path: path.display().to_string(),
            detail,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(
                "it is readable by group or others; run 'chmod 600' on it".into(),
            ));
        }
        let text = std::fs::read(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let trimmed: Vec<u8> = text.trim_ascii_end().to_vec();
        if trimmed.len() < MIN_SECRET_LEN {
            return Err(err(format!("it holds fewer than {MIN_SECRET_LEN} bytes")));
        }
        Ok(Self(trimmed))
    }

    /// Writes a new random secret to `path` (mode 0600).
    pub fn generate(path: &Path) -> Result<Self, TransportError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).map_err(|e| TransportError::Secret {
            path: path.display().to_string(),
            detail: format!("no randomness: {e}"),
        })?;
        let text = hex::encode(raw);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| TransportError::Secret {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        f.write_all(text.as_bytes())
            .map_err(|e| TransportError::Secret {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        Ok(Self(text.into_bytes()))
    }

    fn mac(&self, label: &str, first: &[u8], second: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(first);
        mac.update(&[0]);
        mac.update(second);
        mac
    }

    pub(crate) fn proof(&self, label: &str, first: &[u8], second: &[u8]) -> Vec<u8> {
        self.mac(label, first, second)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    pub(crate) fn verify(&self, label: &str, first: &[u8], second: &[u8], proof: &[u8]) -> bool {
        self.mac(label, first, second).verify_slice(proof).is_ok()
    }
}

/// How a server decides whether to trust a client.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Both sides prove they hold this secret.
    Secret(Secret),
    /// Unix sockets only: trust a client running as root (checked with SO_PEERCRED).
    PeerCredentials,
    /// The client's certificate passed mutual TLS; it must also be valid for the host
    /// name the client announces (control clients excepted), and with a secret, both
    /// sides prove they hold it too.
    Tls {
        peer_cert: Option<rustls_pki_types::CertificateDer<'static>>,
        secret: Option<Secret>,
        /// Hosts allowed as peers (see [`Credentials::accept_from`]).
        accept_from: Option<Vec<String>>,
    },
}

/// What a ferry process proves itself with over TCP: a TLS identity, a shared secret,
/// or both.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub tls: Option<crate::Tls>,
    pub secret: Option<Secret>,
    /// The hosts whose agents may send this one migrations and pages; none: every host
    /// the CA signed.
    pub accept_from: Option<Vec<String>>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.tls.is_none() && self.secret.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_label_nonces_and_secret() {
        let s = Secret::new(vec![7; 32]).unwrap();
        let p = s.proof("client", b"a", b"b");
        assert!(s.verify("client", b"a", b"b", &p));
        assert!(!s.verify("server", b"a", b"b", &p));
        assert!(!s.verify("client", b"b", b"a", &p));
        let other = Secret::new(vec![8; 32]).unwrap();
        assert!(!other.verify("client", b"a", b"b", &p));
    }

    #[test]
    fn secrets_are_never_printed() {
        let s = Secret::new(b"supersecretvalue-123".to_vec()).unwrap();
        assert!(!format!("{s:?}").contains("supersecret"));
    }

    #[test]
    fn short_or_world_readable_secret_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        std::fs::write(&p, "short").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Secret::from_file(&p)
            .unwrap_err()
            .to_string()
            .contains("fewer than"));
        std::fs::write(&p, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Secret::from_file(&p)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        let g = d.path().join("gen");
        Secret::generate(&g).unwrap();
        assert!(Secret::from_file(&g).is_ok());
    }
}
