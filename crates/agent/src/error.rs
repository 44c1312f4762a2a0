//! Why the agent refused or failed a request, one sentence each.

use std::path::PathBuf;

use ferry_engine::error::{PrepareError, RollbackError};
use ferry_engine::policy::auto::StrategyError;
use ferry_engine::ports::container::ContainerError;
use ferry_netns::NetError;
use ferry_runtime::RuntimeError;
use ferry_transport::TransportError;
use thiserror::Error;

/// Another operation holds the container.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("another operation on '{name}' is in progress on {host}; wait for it to finish")]
pub struct Busy {
    pub name: String,
    pub host: String,
}

/// A request the agent refuses: nothing changed.
#[derive(Debug, Error)]
pub enum Refusal {
    #[error("'{0}' is not a valid container name: use letters, digits, '-' and '_' (at most 40)")]
    BadName(String),
    #[error("'{0}' is not a valid pod name: use letters, digits, '-' and '_' (at most 40)")]
    BadPodName(String),
    #[error("give the command to run after --")]
    NoCommand,
    #[error("a container named '{name}' already exists on {host}")]
    Exists { name: String, host: String },
    #[error("no container named '{name}' on {host}")]
    Unknown { name: String, host: String },
    #[error("container '{0}' is still receiving its memory from its last migration; try again when it is done")]
    StillReceiving(String),
    #[error("container '{name}' was not started by ferry, and {why}")]
    Foreign { name: String, why: String },
    #[error("container '{name}' does not join its network namespace {netns}; ferry cannot move its address")]
    OutsideNetns { name: String, netns: PathBuf },
    #[error("container '{container}' belongs to group '{recorded}', and group '{asked}' claims it too; a container can be in one group only: remove it from one of the group files")]
    OtherGroup {
        container: String,
        recorded: String,
        asked: String,
    },
    /// A pod member would leave its mates behind (`left` lists them, quoted).
    #[error("container '{container}' shares the network namespace of pod '{pod}' with {left}; a pod moves as a whole: name all its containers in a group file and use 'ferry migrate --group' (docs/groups.md)")]
    PodLeftBehind {
        container: String,
        pod: String,
        left: String,
    },
    #[error("container '{name}' is {status}, not frozen; there is nothing to resume")]
    NotFrozen { name: String, status: String },
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The preflight found what cannot move.
    #[error("container '{container}' cannot be moved: {subject}: {sentence}")]
    Preflight {
        container: String,
        subject: String,
        sentence: String,
    },
    #[error("{strategy} does not fit container '{container}': {why}; use another --strategy (see 'ferry check {container}')")]
    DoesNotFit {
        container: String,
        strategy: ferry_types::Strategy,
        why: String,
    },
    #[error("cannot ask {dest} what it can take: {why}; check that its agent runs and listens at that address")]
    Unreachable { dest: String, why: String },
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("resuming '{name}' failed: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Resume {
        name: String,
        errors: Vec<RollbackError>,
    },
    #[error("readdressing the container: {0}")]
    Readdress(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<Busy> for AgentError {
    fn from(e: Busy) -> Self {
        Refusal::Busy(e).into()
    }
}
