//! What the source needs to know about a container before moving it.

use std::sync::Arc;

use ferry_criu::plan::CriuConfigTarget;
use ferry_runtime::bundle::Bundle;
use ferry_runtime::freezer::Freezer;
use ferry_runtime::{ContainerState, Runtime, RuntimeError};
use ferry_types::NetSpec;

use crate::containers::container_net;
use crate::network::ContainerNet;
use crate::state::Agent;
use crate::AgentError;

/// A container ready to be moved.
#[derive(Debug)]
pub struct Facts {
    pub state: ContainerState,
    pub bundle: Bundle,
    pub config_target: CriuConfigTarget,
    pub freezer: Freezer,
    pub spec: NetSpec,
    pub net: ContainerNet,
}

pub async fn inspect(agent: &Arc<Agent>, name: &str) -> Result<Facts, AgentError> {
    let state = agent.runc.state(name).await.map_err(|e| match e {
        RuntimeError::NotFound { .. } => AgentError::Input(format!(
            "no container named '{name}' runs on {}",
            agent.cfg.name
        )),
        other => other.into(),
    })?;
    if state.status != "running" {
        return Err(AgentError::Input(format!(
            "container '{name}' is {}, not running; only running containers can be migrated",
            state.status
        )));
    }
    let bundle = Bundle::load(&state.bundle)?;
    let config_target = state.criu_config_target();
    if config_target == CriuConfigTarget::Disabled {
        return Err(AgentError::Input(format!(
            "container '{name}' disables CRIU configuration files (empty org.criu.config annotation); ferry needs one to stream its pages"
        )));
    }
    let spec = agent.registry.get(name).and_then(|r| r.net).ok_or_else(|| {
        AgentError::Input(format!(
            "the network of container '{name}' is not managed by this agent; start it with 'ferry lab run' or the agent's Run request so ferry knows its address"
        ))
    })?;
    let net = container_net(agent, name, &spec)?;
    if bundle.netns_path().as_deref() != Some(net.netns_path().to_string_lossy().as_ref()) {
        return Err(AgentError::Input(format!(
            "container '{name}' does not join its network namespace {}; ferry cannot move its address",
            net.netns_path().display()
        )));
    }
    let freezer = Freezer::for_pid(state.pid)?;
    Ok(Facts {
        state,
        bundle,
        config_target,
        freezer,
        spec,
        net,
    })
}

/// Resident memory of the container's processes, an estimate of what the dump sends.
pub fn resident_bytes(freezer: &Freezer) -> u64 {
    freezer
        .procs()
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}
