//! One module per subcommand.

pub mod agent;
pub mod bench;
pub mod bundle;
pub mod checkpoint;
pub mod doctor;
pub mod lab;
pub mod migrate;
pub mod probe;
pub mod restore;

use std::path::PathBuf;

use ferry_criu::features::CriuBinary;
use ferry_criu::plan::NetworkLock;
use ferry_runtime::Runc;

/// Options every command that drives runc shares.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeOpts {
    /// runc's state directory (its --root).
    #[arg(long, default_value = ferry_runtime::DEFAULT_ROOT)]
    pub runtime_root: PathBuf,
    /// The CRIU binary (default: FERRY_CRIU, then /usr/local/sbin/criu, then others).
    #[arg(long)]
    pub criu: Option<PathBuf>,
    /// The runc binary.
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,
}

impl RuntimeOpts {
    pub fn runc(&self) -> anyhow::Result<Runc> {
        let criu = CriuBinary::locate(self.criu.as_deref())?;
        Ok(Runc {
            binary: self.runc.clone(),
            root: self.runtime_root.clone(),
            criu: criu.path,
        })
    }
}

/// nftables when CRIU and the host support it (CRIU unlocks it faster), else iptables.
pub fn network_lock() -> NetworkLock {
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if nft {
        NetworkLock::Nftables
    } else {
        NetworkLock::Iptables
    }
}
