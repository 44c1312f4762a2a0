//! One module per subcommand.

pub mod bench;
pub mod bundle;
pub mod certs;
pub mod check;
pub mod checkpoint;
pub mod doctor;
pub mod images;
pub mod keeper;
pub mod lab;
pub mod migrate;
pub mod probe;
pub mod restore;
pub mod resume;
pub mod standby;

use std::path::PathBuf;

use anyhow::Context;
use ferry_criu::features::CriuBinary;
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
            bound: None,
        })
    }
}

/// The local agent's control socket, where no agent is named and no lab runs.
pub const LOCAL_AGENT: &str = "/var/lib/ferry/agent.sock";

/// The agent that holds `container`: the one named (a lab host name, a Unix socket, or
/// HOST:PORT), else in a lab the host where it has `status`, else the local agent.
pub async fn agent_of(
    agent: Option<&str>,
    lab: Option<&ferry_lab::LabState>,
    container: &str,
    status: &str,
) -> anyhow::Result<ferry_transport::Endpoint> {
    use ferry_transport::Endpoint;
    Ok(match (agent, lab) {
        (Some(s), lab) => match (s.parse::<Endpoint>(), lab) {
            (Ok(ep), _) => ep,
            (Err(_), Some(l)) => Endpoint::Unix(l.host(s)?.control.clone()),
            (Err(e), None) => return Err(e.into()),
        },
        (None, Some(l)) => {
            let h = ferry_lab::host_of(l, container, status).await.with_context(|| {
                format!(
                    "no host of lab '{}' has a {status} container named '{container}'; see 'ferry lab status'",
                    l.name
                )
            })?;
            Endpoint::Unix(h.control)
        }
        (None, None) => Endpoint::Unix(PathBuf::from(LOCAL_AGENT)),
    })
}
