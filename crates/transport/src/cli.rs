//! How the CLI and the agent prove themselves to remote ferry processes: mutual TLS, a
//! shared secret, or both (docs/security.md). The command-line flags that name the
//! files, for the commands of both (feature `cli`).

use std::path::PathBuf;

use thiserror::Error;

use crate::{Credentials, Secret, Tls, TlsFiles, TransportError};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct CredArgs {
    /// The CA certificate that signs every peer's certificate ('ferry certs init').
    #[arg(long, env = "FERRY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This host's (or operator's) certificate ('ferry certs issue').
    #[arg(long, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of that certificate (mode 0600).
    #[arg(long, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// A file holding a secret shared with the peers (mode 0600): defence in depth on
    /// top of TLS, or the only proof without it.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
}

/// Credentials the flags do not make.
#[derive(Debug, Error)]
pub enum CredError {
    #[error("give --tls-ca, --tls-cert and --tls-key together (or none of them)")]
    PartialTls,
    /// A file named is missing, unreadable, too open or not valid.
    #[error(transparent)]
    File(#[from] TransportError),
}

impl CredArgs {
    /// Loads and checks the files; each problem names the file at fault.
    pub fn load(&self) -> Result<Credentials, CredError> {
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(Tls::load(&TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })?),
            _ => return Err(CredError::PartialTls),
        };
        let secret = match &self.secret_file {
            Some(p) => Some(Secret::from_file(p)?),
            None => None,
        };
        Ok(Credentials {
            tls,
            secret,
            accept_from: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_no_credentials_and_tls_takes_its_three_files() {
        let none = CredArgs::default().load().expect("nothing to load");
        assert!(none.tls.is_none() && none.secret.is_none());
        let partial = CredArgs {
            tls_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            partial.load().unwrap_err().to_string(),
            "give --tls-ca, --tls-cert and --tls-key together (or none of them)"
        );
        let missing = CredArgs {
            secret_file: Some("/nonexistent/secret".into()),
            ..Default::default()
        };
        let e = missing.load().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/secret"), "{e}");
    }
}
