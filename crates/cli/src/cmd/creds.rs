//! How the CLI and the agent prove themselves to remote ferry processes: mutual TLS, a
//! shared secret, or both (docs/security.md).

use std::path::PathBuf;

use ferry_transport::{Credentials, Secret, Tls, TlsFiles};

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

impl CredArgs {
    /// Loads and checks the files; each problem names the file at fault.
    pub fn load(&self) -> anyhow::Result<Credentials> {
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(Tls::load(&TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })?),
            _ => {
                anyhow::bail!("give --tls-ca, --tls-cert and --tls-key together (or none of them)")
            }
        };
        let secret = match &self.secret_file {
            Some(p) => Some(Secret::from_file(p)?),
            None => None,
        };
        Ok(Credentials { tls, secret })
    }
}
