//! The real implementations of the engine's ports on this host.
//!
//! | port | adapter |
//! |---|---|
//! | container engine | [`container`]: runc (`ferry-containers`) and the agent's records |
//! | container engine | [`ferry_containers::podman`], [`ferry_containers::docker`], with [`engine_net`] for their networks |
//! | network | [`network`]: network namespaces on the host's bridge, or a hook script |
//! | peer | [`peer`]: transport connections between agents |
//! | page channel | [`pages_source`], [`pages_dest`]: ferry's data plane (`ferry-pages`) |
//! | host | [`host`]: admission, sessions and records at the destination |

pub mod container;
pub mod engine_net;
pub mod held;
pub mod host;
pub mod network;
pub mod pages_dest;
pub mod pages_source;
pub mod peer;

use std::sync::Arc;

use ferry_engine::dest::{DestPorts, EnginePorts};
use ferry_types::EngineKind;

use crate::state::Agent;
use engine_net::{EngineNetworks, Maker};

/// The destination's ports on this host.
pub fn dest_ports(agent: &Arc<Agent>) -> DestPorts {
    DestPorts {
        engine: agent.engine.clone(),
        network: Arc::new(network::AgentNetworks(agent.clone())),
        host: Arc::new(host::AgentHost(agent.clone())),
        others: engine_ports(agent),
    }
}

/// The ports of the engines besides runc that this host has.
fn engine_ports(agent: &Agent) -> Vec<EnginePorts> {
    let mut out = Vec::new();
    if let Some(p) = &agent.podman {
        out.push(EnginePorts {
            kind: EngineKind::Podman,
            engine: p.clone(),
            network: Arc::new(EngineNetworks(Maker::Podman(p.clone()))),
        });
    }
    if let Some(d) = &agent.docker {
        out.push(EnginePorts {
            kind: EngineKind::Docker,
            engine: d.clone(),
            network: Arc::new(EngineNetworks(Maker::Docker(d.clone()))),
        });
    }
    out
}
