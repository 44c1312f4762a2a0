//! The network of a Podman or Docker container arriving here. The engine makes its
//! namespace when it restores the container (on the network the container's definition
//! names, with its address and MAC), and may configure and announce the address as soon
//! as the link is up, before CRIU restored a socket: a client's packets would then meet
//! a namespace without the connection and be reset. So from before the restore until
//! the commit, this host's bridge drops every frame from or to the container's MAC;
//! CRIU's action script also puts ferry's hold lock on the namespace before any socket
//! is restored (`ferry_containers::hold`). At the commit both locks go and the address
//! is announced.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_containers::docker::DockerEngine;
use ferry_containers::podman::PodmanEngine;
use ferry_engine::ports::network::{ContainerNetwork, Network, NetworkError, PeerWatch};
use ferry_netns::{NetLock, RealRunner};
use ferry_types::{Delivered, Held, NetSpec};

/// The engine that makes an arriving container's namespace.
#[derive(Debug, Clone)]
pub enum Maker {
    Podman(Arc<PodmanEngine>),
    Docker(Arc<DockerEngine>),
}

impl Maker {
    fn engine(&self) -> &'static str {
        match self {
            Maker::Podman(_) => "Podman",
            Maker::Docker(_) => "Docker",
        }
    }

    /// The namespace the engine made for container `name`, once it did.
    async fn sandbox(&self, name: &str) -> Option<PathBuf> {
        match self {
            Maker::Podman(p) => podman_sandbox(p, name).await,
            Maker::Docker(d) => d.netns_of(name).await,
        }
    }
}

/// The namespace Podman made: from its database, else from Podman.
async fn podman_sandbox(engine: &PodmanEngine, name: &str) -> Option<PathBuf> {
    if let Some(p) = engine.netns_of(name) {
        return Some(p);
    }
    let out = engine
        .podman()
        .run(&[
            "container",
            "inspect",
            "--format",
            "{{.NetworkSettings.SandboxKey}}",
            "--",
            name,
        ])
        .await
        .ok()?;
    let p = PathBuf::from(out.trim());
    (p.is_absolute() && p.exists()).then_some(p)
}

/// An engine's networks, for containers arriving.
#[derive(Debug, Clone)]
pub struct EngineNetworks(pub Maker);

#[async_trait]
impl Network for EngineNetworks {
    async fn prepare(
        &self,
        container: &str,
        spec: &NetSpec,
        _join: bool,
    ) -> Result<Box<dyn ContainerNetwork>, NetworkError> {
        if spec.pod.is_some() {
            return Err(NetworkError(format!(
                "container '{container}' arrives as a member of a ferry pod; a {} container keeps its engine's own network",
                self.0.engine()
            )));
        }
        let net = EngineNet {
            engine: self.0.clone(),
            name: container.to_string(),
            spec: spec.clone(),
        };
        net.bridge_lock(true).await?;
        Ok(Box::new(net))
    }

    /// What an interrupted arrival left: the bridge's lock on the container's MAC.
    async fn destroy(&self, container: &str, spec: &NetSpec) -> Result<(), NetworkError> {
        let net = EngineNet {
            engine: self.0.clone(),
            name: container.to_string(),
            spec: spec.clone(),
        };
        net.bridge_lock(false).await
    }
}

/// One arriving container's network.
#[derive(Debug)]
struct EngineNet {
    engine: Maker,
    name: String,
    spec: NetSpec,
}

impl EngineNet {
    /// The bridge lock's table: frames from or to the container's MAC are dropped.
    fn bridge_table(&self) -> String {
        format!("ferry-hold-{}", self.name)
    }

    async fn bridge_lock(&self, on: bool) -> Result<(), NetworkError> {
        let table = self.bridge_table();
        let mac = ferry_netns::parse_mac(&self.spec.mac).map_err(net_err)?;
        let mac = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let script = match on {
            true => format!(
                "table bridge {table} {{\n\tchain forward {{ type filter hook forward priority -10; policy accept; ether saddr {mac} drop; ether daddr {mac} drop; }}\n}}\n"
            ),
            false => format!("delete table bridge {table}\n"),
        };
        let cmd = ferry_netns::Cmd::new("nft", &["-f", "-"]).with_stdin(script);
        match ferry_netns::Runner::run(&RealRunner, &cmd).await {
            Ok(_) => Ok(()),
            Err(ferry_netns::NetError::Failed { stderr, .. })
                if !on && stderr.contains("No such file") =>
            {
                Ok(())
            }
            Err(e) => Err(net_err(e)),
        }
    }

    async fn netns(&self) -> Result<PathBuf, NetworkError> {
        self.engine.sandbox(&self.name).await.ok_or_else(|| {
            NetworkError(format!(
                "{} has no network namespace for container '{}'",
                self.engine.engine(),
                self.name
            ))
        })
    }
}

fn net_err(e: ferry_netns::NetError) -> NetworkError {
    NetworkError(e.to_string())
}

#[async_trait]
impl ContainerNetwork for EngineNet {
    fn spec(&self) -> &NetSpec {
        &self.spec
    }
    fn netns_path(&self) -> PathBuf {
        PathBuf::new()
    }
    async fn lock(&self) -> Result<(), NetworkError> {
        let ns = self.netns().await?;
        NetLock::ferry_hold(ns)
            .install(&RealRunner)
            .await
            .map_err(net_err)
    }
    /// Lifts the locks, and announces the address.
    async fn unlock(&self) -> Result<(), NetworkError> {
        let ns = self.netns().await?;
        NetLock::ferry_hold(ns.clone())
            .remove(&RealRunner)
            .await
            .map_err(net_err)?;
        self.bridge_lock(false).await?;
        announce(&ns, &self.spec).await
    }
    /// The engine attaches it when it restores it.
    async fn attach(&self) -> Result<(), NetworkError> {
        Ok(())
    }
    async fn detach(&self) -> Result<(), NetworkError> {
        Ok(())
    }
    /// Before the restore there is nothing to announce, and until the commit the
    /// bridge drops what it would send: the address is announced at the commit.
    async fn announce(&self) -> Result<(), NetworkError> {
        Ok(())
    }
    /// Removing the container (the engine's delete) removes its namespace; the bridge
    /// forgets its MAC here.
    async fn release(&self) -> Result<(), NetworkError> {
        self.bridge_lock(false).await
    }
    /// The bridge, not a catcher, held this side's packets: only the source's come.
    async fn deliver(&self, held: Held) -> Result<Delivered, NetworkError> {
        let ns = self.netns().await?;
        super::held::deliver(&ns, &self.spec, held).await
    }
    async fn watch_peers(&self, delivered: &Held) -> Option<Box<dyn PeerWatch>> {
        let ns = self.netns().await.ok()?;
        super::held::watch(&ns, delivered).await
    }
}

async fn announce(ns: &std::path::Path, spec: &NetSpec) -> Result<(), NetworkError> {
    let (ip, _) = ferry_netns::parse_cidr(&spec.address).map_err(net_err)?;
    let mac = ferry_netns::parse_mac(&spec.mac).map_err(net_err)?;
    ferry_netns::send_gratuitous_arp(ns, "eth0", mac, ip)
        .await
        .map_err(net_err)
}
