//! The network port: attaching containers to the network, and moving their address
//! between hosts.
//!
//! Built in is the bridge topology: each container's namespace has an `eth0` with a
//! fixed address and MAC, the other end of its veth on the host's bridge. Other
//! topologies plug in through a hook script called at each step (docs/network.md).
//! A pod's members share one namespace, which goes with the last of them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ferry_engine::ports::network::{ContainerNetwork, Network, NetworkError, PeerWatch};
use ferry_netns::{
    send_gratuitous_arp, ContainerLink, NetError, NetLock, Netns, RealRunner, Runner,
};
use ferry_types::{Delivered, Held, NetSpec};

use super::held::Keeper;

use crate::config::NetMode;
use crate::state::Agent;

/// The steps of a container's network life, as hooks see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    /// Create the namespace and its link, not yet reachable.
    Create,
    /// Make it reachable.
    Up,
    /// Make it unreachable (the source, once frozen and dumped).
    Down,
    /// Remove it.
    Destroy,
}

impl HookPhase {
    fn name(self) -> &'static str {
        match self {
            HookPhase::Create => "create",
            HookPhase::Up => "up",
            HookPhase::Down => "down",
            HookPhase::Destroy => "destroy",
        }
    }
}

/// One container's network on this host.
#[derive(Debug, Clone)]
pub struct ContainerNet {
    pub container: String,
    pub netns: Netns,
    pub spec: NetSpec,
    mode: NetMode,
    link: Option<ContainerLink>,
    /// A container ferry did not start: the host's end of its veth. Its namespace and
    /// link are its owner's: ferry only takes the link down and up, and removes nothing.
    foreign: Option<String>,
}

impl ContainerNet {
    pub fn new(
        mode: &NetMode,
        prefix: &str,
        container: &str,
        spec: NetSpec,
    ) -> Result<Self, NetError> {
        // A pod's members share one namespace and link, named after the pod.
        let owner = spec.owner(container).to_string();
        let link = match mode {
            NetMode::Bridge(br) => Some(ContainerLink::new(prefix, &owner, br, spec.clone())?),
            NetMode::Hook(_) => {
                ferry_netns::validate_spec(&spec)?;
                None
            }
        };
        let netns = Netns::new(&format!("{prefix}-{owner}"));
        Ok(Self {
            container: container.to_string(),
            netns,
            spec,
            mode: mode.clone(),
            link,
            foreign: None,
        })
    }

    /// The network of a container someone else started in namespace `netns`, whose
    /// `eth0` has `spec`, reached through `host_if` on this host.
    pub fn foreign(
        mode: &NetMode,
        container: &str,
        netns: Netns,
        spec: NetSpec,
        host_if: String,
    ) -> Self {
        Self {
            container: container.to_string(),
            netns,
            spec,
            mode: mode.clone(),
            link: None,
            foreign: Some(host_if),
        }
    }

    pub fn netns_path(&self) -> PathBuf {
        self.netns.path()
    }

    async fn hook(&self, path: &Path, phase: HookPhase) -> Result<(), NetError> {
        let out = tokio::process::Command::new(path)
            .arg(phase.name())
            .env("FERRY_CONTAINER", &self.container)
            .env("FERRY_POD", self.spec.pod.as_deref().unwrap_or(""))
            .env("FERRY_NETNS", self.netns.path())
            .env("FERRY_NETNS_NAME", &self.netns.name)
            .env("FERRY_ADDRESS", &self.spec.address)
            .env("FERRY_MAC", &self.spec.mac)
            .env("FERRY_GATEWAY", self.spec.gateway.as_deref().unwrap_or(""))
            .output()
            .await
            .map_err(|source| NetError::Spawn {
                program: path.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(NetError::Failed {
                command: format!("{} {}", path.display(), phase.name()),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    async fn step(&self, phase: HookPhase) -> Result<(), NetError> {
        let r = RealRunner;
        if let Some(host_if) = &self.foreign {
            let state = match phase {
                HookPhase::Create => return Ok(()),
                HookPhase::Up => "up",
                HookPhase::Down | HookPhase::Destroy => "down",
            };
            let done = r
                .run(&ferry_netns::Cmd::new(
                    "ip",
                    &["link", "set", host_if, state],
                ))
                .await;
            // The link goes with its namespace once the container is gone.
            return match (phase, done) {
                (HookPhase::Destroy, Err(_)) | (_, Ok(_)) => Ok(()),
                (_, Err(e)) => Err(e),
            };
        }
        match (&self.mode, &self.link) {
            (NetMode::Hook(h), _) => self.hook(h, phase).await,
            (NetMode::Bridge(_), Some(link)) => match phase {
                HookPhase::Create => link.create(&r).await,
                HookPhase::Up => link.up(&r).await,
                HookPhase::Down => link.down(&r).await,
                HookPhase::Destroy => link.destroy(&r).await,
            },
            (NetMode::Bridge(_), None) => Ok(()),
        }
    }

    /// Creates the namespace and link, unreachable.
    pub async fn create(&self) -> Result<(), NetError> {
        self.step(HookPhase::Create).await
    }
    pub async fn up(&self) -> Result<(), NetError> {
        self.step(HookPhase::Up).await
    }
    pub async fn down(&self) -> Result<(), NetError> {
        self.step(HookPhase::Down).await
    }
    pub async fn destroy(&self) -> Result<(), NetError> {
        self.step(HookPhase::Destroy).await
    }

    /// ferry's own lock on this namespace.
    pub fn hold_lock(&self) -> NetLock {
        NetLock::ferry_hold(self.netns.path())
    }

    /// Announces the address from inside the namespace.
    pub async fn announce(&self) -> Result<(), NetError> {
        let (ip, _) = ferry_netns::parse_cidr(&self.spec.address)?;
        let mac = ferry_netns::parse_mac(&self.spec.mac)?;
        announce(&self.netns.path(), mac, ip).await
    }
}

async fn announce(netns: &Path, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), NetError> {
    send_gratuitous_arp(netns, "eth0", mac, ip).await
}

fn net_err(e: NetError) -> NetworkError {
    NetworkError(e.to_string())
}

/// The network of a container on this agent.
pub fn container_net(agent: &Agent, name: &str, spec: &NetSpec) -> Result<ContainerNet, NetError> {
    ContainerNet::new(&agent.cfg.net, &agent.cfg.netns_prefix, name, spec.clone())
}

/// A container's network, as the engine's port: pod-aware when it is released.
#[derive(Debug, Clone)]
pub struct AgentNetwork {
    pub agent: Arc<Agent>,
    pub net: ContainerNet,
    held: Keeper,
}

impl AgentNetwork {
    pub fn new(agent: Arc<Agent>, net: ContainerNet) -> Self {
        Self {
            agent,
            net,
            held: Keeper::default(),
        }
    }

    /// The network of a registered container on this agent.
    pub fn of(agent: &Arc<Agent>, name: &str, spec: &NetSpec) -> Result<Self, NetError> {
        Ok(Self::new(agent.clone(), container_net(agent, name, spec)?))
    }
}

#[async_trait]
impl ContainerNetwork for AgentNetwork {
    fn spec(&self) -> &NetSpec {
        &self.net.spec
    }
    fn netns_path(&self) -> PathBuf {
        self.net.netns_path()
    }
    async fn lock(&self) -> Result<(), NetworkError> {
        self.net
            .hold_lock()
            .install(&RealRunner)
            .await
            .map_err(net_err)?;
        self.held.start(self.net.netns_path()).await;
        Ok(())
    }
    async fn unlock(&self) -> Result<(), NetworkError> {
        self.net
            .hold_lock()
            .remove(&RealRunner)
            .await
            .map_err(net_err)
    }
    async fn attach(&self) -> Result<(), NetworkError> {
        self.net.up().await.map_err(net_err)
    }
    async fn detach(&self) -> Result<(), NetworkError> {
        self.net.down().await.map_err(net_err)
    }
    async fn announce(&self) -> Result<(), NetworkError> {
        self.net.announce().await.map_err(net_err)
    }
    async fn release(&self) -> Result<(), NetworkError> {
        release_net(&self.agent, &self.net).await.map_err(net_err)
    }
    async fn take_held(&self) -> Held {
        self.held.take().await
    }
    async fn deliver(&self, held: Held) -> Result<Delivered, NetworkError> {
        super::held::deliver(&self.net.netns_path(), &self.net.spec, held).await
    }
    async fn watch_peers(&self, delivered: &Held) -> Option<Box<dyn PeerWatch>> {
        super::held::watch(&self.net.netns_path(), delivered).await
    }
}

/// Removes a container's network namespace, unless it is a pod's and another member
/// still needs it (or a member that left before removed it already): a pod's namespace
/// goes with its last member.
pub async fn release_net(agent: &Agent, net: &ContainerNet) -> Result<(), NetError> {
    if let Some(p) = &net.spec.pod {
        let in_use =
            !agent.registry.pod_members(p, &net.container).is_empty() || agent.pods.arriving(p);
        if in_use || !net.netns.exists() {
            return Ok(());
        }
    }
    net.destroy().await
}

/// This host's networks for arriving containers.
#[derive(Debug, Clone)]
pub struct AgentNetworks(pub Arc<Agent>);

#[async_trait]
impl Network for AgentNetworks {
    async fn prepare(
        &self,
        container: &str,
        spec: &NetSpec,
        join: bool,
    ) -> Result<Box<dyn ContainerNetwork>, NetworkError> {
        let n = AgentNetwork::of(&self.0, container, spec).map_err(net_err)?;
        // A pod's namespace is built by its first arriving member; the others join it.
        if !join {
            if n.net.netns.exists() {
                n.net.destroy().await.map_err(net_err)?;
            }
            n.net.create().await.map_err(net_err)?;
        }
        if let Err(e) = n.lock().await {
            if !join {
                let _ = n.net.destroy().await;
            }
            return Err(e);
        }
        Ok(Box::new(n))
    }

    async fn destroy(&self, container: &str, spec: &NetSpec) -> Result<(), NetworkError> {
        let n = AgentNetwork::of(&self.0, container, spec).map_err(net_err)?;
        n.net.destroy().await.map_err(net_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_follow_addresses() {
        let mac = ferry_types::net::mac_for("10.0.0.1".parse().unwrap());
        assert!(ferry_netns::parse_mac(&mac).is_ok());
    }

    #[tokio::test]
    async fn hooks_get_the_phase_and_the_container_identity() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let hook = d.path().join("hook");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\necho \"$1 $FERRY_CONTAINER $FERRY_ADDRESS $FERRY_MAC\" >> {}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = NetSpec {
            address: "10.77.1.10/16".into(),
            mac: "02:42:0a:4d:01:0a".into(),
            gateway: None,
            pod: None,
        };
        let n = ContainerNet::new(&NetMode::Hook(hook), "ferry-a", "redis", spec).unwrap();
        n.create().await.unwrap();
        n.up().await.unwrap();
        n.down().await.unwrap();
        n.destroy().await.unwrap();
        let text = std::fs::read_to_string(log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "create redis 10.77.1.10/16 02:42:0a:4d:01:0a");
        assert_eq!(
            lines
                .iter()
                .map(|l| l.split(' ').next().unwrap())
                .collect::<Vec<_>>(),
            ["create", "up", "down", "destroy"]
        );
    }
}
