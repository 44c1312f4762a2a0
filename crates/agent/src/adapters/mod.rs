//! The real implementations of the engine's ports on this host.
//!
//! | port | adapter |
//! |---|---|
//! | container engine | [`container`]: runc (`ferry-containers`) and the agent's records |
//! | container engine | [`ferry_containers::podman`], with [`podman_net`] for its network |
//! | network | [`network`]: network namespaces on the host's bridge, or a hook script |
//! | peer | [`peer`]: transport connections between agents |
//! | page channel | [`pages_source`], [`pages_dest`]: ferry's data plane (`ferry-pages`) |
//! | host | [`host`]: admission, sessions and records at the destination |

pub mod container;
pub mod host;
pub mod network;
pub mod pages_dest;
pub mod pages_source;
pub mod peer;
pub mod podman_net;

use std::sync::Arc;

use ferry_engine::dest::{DestPorts, EnginePorts};
use ferry_types::EngineKind;

use crate::state::Agent;

/// The destination's ports on this host.
pub fn dest_ports(agent: &Arc<Agent>) -> DestPorts {
    DestPorts {
        engine: agent.engine.clone(),
        network: Arc::new(network::AgentNetworks(agent.clone())),
        host: Arc::new(host::AgentHost(agent.clone())),
        others: agent
            .podman
            .iter()
            .map(|p| EnginePorts {
                kind: EngineKind::Podman,
                engine: p.clone(),
                network: Arc::new(podman_net::PodmanNetworks(p.clone())),
            })
            .collect(),
    }
}
