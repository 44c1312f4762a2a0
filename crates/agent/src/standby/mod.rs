//! Standby checkpoints and failover (`ferry standby`, `ferry failover`).
//!
//! The host that runs a container keeps an up-to-date checkpoint of it on another host
//! while it runs: every period, a checkpoint that leaves it running, whose page files
//! travel as references to the pages the standby host holds from the checkpoint before
//! (only what changed travels). The standby host keeps the newest complete one; when the
//! source is gone, `ferry failover` restores it there.
//!
//! - [`pagewire`]: pages as hashes and references;
//! - [`source`]: one round at the source; [`keeping`]: the rounds, every period;
//! - [`store`], [`receive`]: the standby host's checkpoints, and receiving one;
//! - [`failover`]: restoring the newest.

pub mod failover;
pub mod keeping;
pub mod kept;
pub mod pagewire;
pub mod receive;
pub mod source;
pub mod store;

pub use kept::Keeping;

use thiserror::Error;

/// Why a standby round, or a failover, did not happen; one sentence each.
#[derive(Debug, Error)]
pub enum StandbyError {
    #[error("a standby every {0} ms is too often: give --every 1s or more")]
    TooOften(u64),
    #[error("'{container}' already has a standby at {to}; stop it first ('ferry standby {container} --stop')")]
    AlreadyKept { container: String, to: String },
    #[error("no standby of '{container}' is kept on {host}")]
    NotKept { container: String, host: String },
    #[error("a standby keeps runc containers, and this one runs under {0}")]
    Engine(ferry_types::EngineKind),
    #[error("the checkpoint failed, and the container keeps running: {0}")]
    Checkpoint(String),
    #[error("a container named '{container}' runs on {host}: a standby of it there would be a second copy")]
    RunsHere { container: String, host: String },
    #[error("{host} holds a standby of '{container}' from {from}; a standby of another container of that name cannot replace it (fail it over or remove STATE/standby/{container} there first)")]
    OtherSource {
        container: String,
        host: String,
        from: String,
    },
    #[error("{host} holds no complete standby checkpoint of '{container}'; see 'ferry lab status' or 'ferry standby --list'")]
    NoCheckpoint { container: String, host: String },
    #[error("the standby checkpoint of '{0}' lacks its bundle; keep a standby again before failing over")]
    NoBundle(String),
    #[error("the standby checkpoint did not restore: {0}")]
    Restore(String),
    #[error("a standby checkpoint would exceed the agent's --max-bundle-bytes ({0} bytes)")]
    TooBig(u64),
    #[error("the standby host refused it: {0}")]
    Refused(String),
    #[error("standby protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Agent(#[from] crate::AgentError),
    #[error(transparent)]
    Transport(#[from] ferry_transport::TransportError),
    #[error(transparent)]
    Net(#[from] ferry_netns::NetError),
    #[error(transparent)]
    Container(#[from] ferry_engine::ports::container::ContainerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<crate::Refusal> for StandbyError {
    fn from(r: crate::Refusal) -> Self {
        StandbyError::Agent(r.into())
    }
}

impl From<crate::state::Busy> for StandbyError {
    fn from(b: crate::state::Busy) -> Self {
        StandbyError::Agent(crate::Refusal::Busy(b).into())
    }
}

impl StandbyError {
    /// The container is not on this host any more (it moved, or was removed).
    pub fn container_gone(&self) -> bool {
        use ferry_engine::ports::container::ContainerError::NotFound;
        matches!(
            self,
            StandbyError::Agent(crate::AgentError::Refused(crate::Refusal::Unknown { .. }))
                | StandbyError::Agent(crate::AgentError::Container(NotFound { .. }))
                | StandbyError::Container(NotFound { .. })
        )
    }
}

/// The answer to a standby request from the CLI.
pub async fn answer(
    agent: &std::sync::Arc<crate::state::Agent>,
    msg: ferry_proto::ControlRequest,
) -> ferry_proto::ControlReply {
    use ferry_proto::{ControlReply, ControlRequest};
    let result =
        match msg {
            ControlRequest::Standby {
                container,
                dest,
                every_ms,
            } => keeping::start(agent, &container, &dest, every_ms)
                .await
                .map(|round| ControlReply::StandbyStarted { round }),
            ControlRequest::StandbyStop { container } => {
                keeping::stop(agent, &container).map(|()| ControlReply::StandbyStopped)
            }
            ControlRequest::Standbys => Ok(ControlReply::Standbys {
                keeping: agent.standbys.list(),
                holding: store::Store::all(&agent.cfg.state_dir)
                    .iter()
                    .map(|(m, _)| failover::checkpoint_of(m))
                    .collect(),
            }),
            ControlRequest::Failover { container } => failover::failover(agent, &container)
                .await
                .map(|f| ControlReply::FailedOver {
                    failover: Box::new(f),
                }),
            other => Err(StandbyError::Protocol(format!(
                "'{}' is not a standby request",
                ferry_proto::WireMessage::name(&other)
            ))),
        };
    result.unwrap_or_else(|e| ControlReply::Error {
        message: e.to_string(),
    })
}
