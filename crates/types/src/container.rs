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
