//! `ferry lab`: several "hosts" on one machine, each a network namespace with its own
//! bridge and its own ferry agent (own state directory, runc root and images tmpfs), all
//! joined by a `fabric` namespace, plus a `client` namespace on the same fabric.
//!
//! ```text
//!   client (10.77.0.100)        containers 10.77.1.x: eth0 -- veth -- br0 of their host
//!        |
//!   [fabric: br0] ---- up0 [host a: br0 10.77.0.1, agent :7070]
//!                 ---- up0 [host b: br0 10.77.0.2, agent :7070]
//! ```
//!
//! Everything is one layer-2 domain, so a container's address and MAC can move from one
//! host's bridge to another's, as in the thesis's Figure 4.3.

pub mod docker;
pub mod engines;
mod error;
pub mod image;
pub mod resources;
mod spawn;
pub mod ssh;
mod state;
mod topology;

pub use error::LabError;
pub use state::{lab_dir, LabHost, LabState, LAB_ROOT};
pub use topology::{agent_alive, down, restart_agent, up, AgentExtras, LabSpec};

use ferry_proto::{ControlReply, ControlRequest, WireMessage};
use ferry_transport::Endpoint;
use ferry_types::{ContainerInfo, NetSpec};

/// Sends one control request to a lab host's agent.
pub async fn ask(host: &LabHost, msg: &ControlRequest) -> Result<ControlReply, LabError> {
    let ep = Endpoint::Unix(host.control.clone());
    let mut conn =
        ferry_controller::client::control(&ep, &ferry_transport::Credentials::default()).await?;
    Ok(ferry_controller::client::request(&mut conn, msg, |_| {}).await?)
}

/// Starts a container on a lab host with its own address, or in the network namespace
/// of `pod` (with the pod's address; the first member gets a new one).
pub async fn run(
    lab: &mut LabState,
    host: &str,
    name: &str,
    ip: Option<std::net::Ipv4Addr>,
    pod: Option<String>,
    args: Vec<String>,
) -> Result<ContainerInfo, LabError> {
    let h = lab.host(host)?.clone();
    let existing = match &pod {
        Some(p) => pod_spec(&h, p).await?,
        None => None,
    };
    let net = match existing {
        Some(spec) => spec,
        None => {
            let ip = match ip {
                Some(ip) => ip,
                None => lab.allocate_ip()?,
            };
            NetSpec {
                address: format!("{ip}/16"),
                mac: ferry_types::net::mac_for(ip),
                gateway: None,
                pod,
            }
        }
    };
    match ask(
        &h,
        &ControlRequest::Run {
            name: name.to_string(),
            args,
            net: Some(net),
        },
    )
    .await?
    {
        ControlReply::Ran { container } => {
            lab.save()?;
            Ok(container)
        }
        ControlReply::Error { message } => Err(LabError::Agent(message)),
        other => Err(LabError::Agent(format!("unexpected {}", other.name()))),
    }
}

/// The network of pod `pod` on a host, if a member runs there.
async fn pod_spec(h: &LabHost, pod: &str) -> Result<Option<NetSpec>, LabError> {
    match ask(h, &ControlRequest::List).await? {
        ControlReply::Containers { items } => Ok(items
            .into_iter()
            .filter_map(|c| c.net)
            .find(|n| n.pod.as_deref() == Some(pod))),
        other => Err(LabError::Agent(format!("unexpected {}", other.name()))),
    }
}

/// The containers of every host.
pub async fn containers(lab: &LabState) -> Vec<(String, Result<Vec<ContainerInfo>, String>)> {
    let mut out = Vec::new();
    for h in &lab.hosts {
        let r = match ask(h, &ControlRequest::List).await {
            Ok(ControlReply::Containers { items }) => Ok(items),
            Ok(other) => Err(format!("unexpected {}", other.name())),
            Err(e) => Err(e.to_string()),
        };
        out.push((h.name.clone(), r));
    }
    out
}

/// The standbys each host keeps and the checkpoints it holds (JSON, `null` for a host
/// whose agent does not answer).
pub async fn standbys(lab: &LabState) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for h in &lab.hosts {
        out.push(match ask(h, &ControlRequest::Standbys).await {
            Ok(ControlReply::Standbys { keeping, holding }) => {
                serde_json::json!({ "keeping": keeping, "holding": holding })
            }
            _ => serde_json::Value::Null,
        });
    }
    out
}

/// The lab host running `container`, if any.
pub async fn host_of(lab: &LabState, container: &str, status: &str) -> Option<LabHost> {
    for (host, items) in containers(lab).await {
        if items.is_ok_and(|v| v.iter().any(|c| c.name == container && c.status == status)) {
            return lab.hosts.iter().find(|h| h.name == host).cloned();
        }
    }
    None
}
