//! A peer of a container that moves to a new address (`ferry migrate --new-ip
//! --peers`): checkpointed in place, its sockets connected to the old address pointed
//! at the new one in its images, and restored, while the moving container waits frozen
//! for its own restore. If the changed images do not restore, the unchanged ones do:
//! the peer runs again either way, and the caller hears which.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use ferry_containers::local::{self, CgroupFreeze, CheckpointRequest, RestoreRequest};
use ferry_criu::images::wire::readdress::{readdress as rewrite, Side};
use ferry_runtime::Runtime;

use crate::error::AgentError;
use crate::state::Agent;

/// What became of a readdressed peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Readdressed {
    /// Its sockets that now point at the new address.
    pub sockets: u32,
    /// From its freeze until it ran again.
    pub downtime_ms: f64,
}

fn ipv4(what: &str, s: &str) -> Result<Ipv4Addr, AgentError> {
    s.parse()
        .map_err(|_| AgentError::Readdress(format!("{what} '{s}' is not an IPv4 address")))
}

/// Checkpoints `container`, points its sockets at `from` to `to`, and restores it.
pub async fn readdress(
    agent: &Arc<Agent>,
    container: &str,
    from: &str,
    to: &str,
) -> Result<Readdressed, AgentError> {
    let (from, to) = (ipv4("the old address", from)?, ipv4("the new address", to)?);
    let _claim = agent.claim(container)?;
    let runc = agent.engine.runc();
    let state = runc.state(container).await?;
    let dir = agent
        .cfg
        .images_dir()
        .join(format!("readdress-{container}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let checkpoint = CheckpointRequest {
        container: container.to_string(),
        images: dir.clone(),
        leave_running: false,
        tcp_established: true,
        file_locks: false,
        network_lock: ferry_criu::features::host_network_lock(),
    };
    let result = async {
        local::checkpoint(runc, &CgroupFreeze, &checkpoint)
            .await
            .map_err(|e| {
                AgentError::Readdress(format!("checkpointing it failed, it keeps running: {e}"))
            })?;
        let files = dir.join("files.img");
        let kept = dir.join("files.img.before");
        std::fs::copy(&files, &kept).map_err(|e| AgentError::io("keeping its files image", e))?;
        let sockets =
            rewrite(&dir, from, to, Side::Remote).map_err(|e| AgentError::Readdress(e.to_string()));
        let restore = RestoreRequest {
            container: container.to_string(),
            images: dir.clone(),
            bundle: state.bundle.clone(),
            tcp_established: true,
            file_locks: false,
            network_lock: ferry_criu::features::host_network_lock(),
        };
        let first = match &sockets {
            Ok(_) => local::restore(runc, &restore).await.map(drop),
            Err(_) => Ok(()),
        };
        match (sockets, first) {
            (Ok(n), Ok(())) => Ok(Readdressed {
                sockets: n as u32,
                downtime_ms: ferry_types::ms(t.elapsed()),
            }),
            (sockets, first) => {
                // Back to the images as they were: the peer runs again, pointing at
                // the old address.
                let _ = runc.delete(container, true).await;
                std::fs::rename(&kept, &files)
                    .map_err(|e| AgentError::io("restoring its files image", e))?;
                local::restore(runc, &restore).await.map_err(|e| {
                    AgentError::Readdress(format!("it did not restore, changed or not: {e}"))
                })?;
                let why = match (sockets, first) {
                    (Err(e), _) => e.to_string(),
                    (_, Err(e)) => format!("the changed images did not restore: {e}"),
                    _ => String::new(),
                };
                Err(AgentError::Readdress(format!(
                    "{why}; it runs again as it was, connected to {from}"
                )))
            }
        }
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
