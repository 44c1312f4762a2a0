//! What agents say about the containers they hold and the migrations they receive.

use serde::{Deserialize, Serialize};

use crate::NetSpec;

/// A container as an agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub name: String,
    pub status: String,
    pub pid: Option<u32>,
    pub bundle: String,
    #[serde(default)]
    pub net: Option<NetSpec>,
    /// The engine that runs it.
    #[serde(default)]
    pub engine: EngineKind,
}

/// Where the destination's copy of a migration stands, as it answers the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The destination committed: the container runs there.
    Committed,
    /// The destination dropped its copy (or never had one).
    Dropped,
    /// The destination has not decided yet.
    Pending,
    /// The destination does not know this session.
    Unknown,
}

/// The container engine that runs a container, and that the destination restores it
/// with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// runc: ferry's own containers, and any other in the agent's runc root.
    #[default]
    Runc,
    /// Podman (rootful, with runc).
    Podman,
    /// Docker (its daemon, with containerd and runc).
    Docker,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Runc => "runc",
            Self::Podman => "podman",
            Self::Docker => "docker",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A container's established TCP connections, as its network namespace has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConnections {
    pub container: String,
    /// `(local, remote)` address and port of each, IPv4 (`10.77.1.10:6379`).
    pub established: Vec<(String, String)>,
}
