//! Containers this agent did not start: any runc container in its runtime root, started
//! by someone else from their own bundle. ferry learns what it needs from runc's state,
//! the bundle's `config.json` and the container's network namespace, and moves it like
//! its own; at the destination it becomes one of ferry's.
//!
//! What ferry needs of such a container: a named network namespace (`/run/netns/NAME`,
//! as `ip netns add` makes) whose `eth0` is a veth with an IPv4 address, its other end
//! in this host's namespace on the bridge the hosts share (the agent's `--bridge`).
//! Its root file system may be anywhere: at the destination it lands in the bundle's
//! `rootfs`. Anything else is refused in one sentence, before anything is frozen.

use std::sync::Arc;

use ferry_containers::runc::RuncSubject;
use ferry_netns::{Netns, RealRunner, NETNS_DIR};

use crate::adapters::network::{AgentNetwork, ContainerNet};
use crate::config::NetMode;
use crate::error::{AgentError, Refusal};
use crate::state::Agent;

fn refuse(name: &str, why: impl Into<String>) -> AgentError {
    Refusal::Foreign {
        name: name.to_string(),
        why: why.into(),
    }
    .into()
}

/// The network of foreign container `name`, as ferry's port.
pub async fn network(
    agent: &Arc<Agent>,
    name: &str,
    inner: &RuncSubject,
) -> Result<AgentNetwork, AgentError> {
    let bundle = inner.bundle();
    let path = bundle.netns_path().ok_or_else(|| {
        refuse(
            name,
            "it has a network namespace of its own that nothing names; start it in a named one ('ip netns add NAME', and /run/netns/NAME as the bundle's network namespace path)",
        )
    })?;
    let ns_name = std::path::Path::new(&path)
        .strip_prefix(NETNS_DIR)
        .ok()
        .and_then(|p| p.to_str())
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| {
            refuse(
                name,
                format!("its network namespace {path} is not one of {NETNS_DIR}; name it with 'ip netns attach'"),
            )
        })?
        .to_string();
    let netns = Netns::new(&ns_name);
    let spec = ferry_netns::inspect(&RealRunner, &netns)
        .await
        .map_err(|e| refuse(name, format!("ferry cannot read its address: {e}")))?;
    let host_if = ferry_netns::host_peer(&RealRunner, &netns)
        .await
        .map_err(|e| refuse(name, e.to_string()))?;
    // Its address can follow only on the segment the hosts share: the agent's bridge.
    if let NetMode::Bridge(shared) = &agent.cfg.net {
        let on = ferry_netns::bridge_of(&RealRunner, &host_if)
            .await
            .map_err(|e| refuse(name, e.to_string()))?;
        if on.as_deref() != Some(shared.as_str()) {
            let on = on.map_or("no bridge".to_string(), |b| format!("bridge {b}"));
            return Err(refuse(
                name,
                format!(
                    "its link {host_if} is on {on}, not on {shared}, the segment the hosts share, so its address and connections cannot follow it; attach it to {shared}"
                ),
            ));
        }
    }
    tracing::info!(
        container = name,
        netns = %ns_name,
        address = %spec.address,
        link = %host_if,
        "moving a container this agent did not start"
    );
    Ok(AgentNetwork::new(
        agent.clone(),
        ContainerNet::foreign(&agent.cfg.net, name, netns, spec, host_if),
    ))
}
