use std::path::PathBuf;

use ferry_transport::TransportError;
use thiserror::Error;

/// What can go wrong while driving agents. Each one is a sentence for people: the cause
/// of a failed connection is its `source`, so that error chains print it.
#[derive(Debug, Error)]
pub enum ControllerError {
    /// No connection to the agent that runs the container to move.
    #[error("cannot reach the source agent at {agent}")]
    SourceUnreachable {
        agent: String,
        #[source]
        source: TransportError,
    },
    /// No connection to an agent.
    #[error("cannot reach the agent at {agent}")]
    Unreachable {
        agent: String,
        #[source]
        source: TransportError,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The agent refused the request (`ControlReply::Error`): nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The agent answered a request with a message that does not answer it.
    #[error("unexpected answer '{0}'")]
    UnexpectedAnswer(&'static str),
    /// The source agent answered a migration with something else than a report.
    #[error("unexpected answer '{0}' from the agent")]
    NotAReport(&'static str),
    /// An agent answered a list request with something else than its containers.
    #[error("agent {agent} answered '{answer}' to a list request")]
    NotAList { agent: String, answer: &'static str },
    /// A group file that cannot be read or is not a valid group.
    #[error("{}: {reason}", path.display())]
    GroupFile { path: PathBuf, reason: String },
    /// The group cannot be laid out (pods that would wait for each other).
    #[error(transparent)]
    GroupPlan(#[from] ferry_engine::group::GroupError),
    /// A group names some containers of a pod but not all.
    #[error("container '{container}' shares the network namespace of pod '{pod}' with '{mate}', which group '{group}' does not name; a pod moves as a whole: add '{mate}' to the group")]
    PartialPod {
        container: String,
        pod: String,
        mate: String,
        group: String,
    },
    /// A group member's agent could not be reached (the cause is in the sentence: it
    /// becomes the member's reason).
    #[error("cannot reach its agent: {0}")]
    MemberUnreachable(TransportError),
    /// A group member's agent went away during its migration.
    #[error("lost its agent: {0}")]
    MemberLost(TransportError),
    /// Moving a member back needs both agents' addresses.
    #[error("ferry does not know how to reach the agents to move it back")]
    NoWayBack,
    /// A migration ran and did not succeed; its report says why.
    #[error("{0}")]
    Failed(String),
    /// A migration's task ended without an answer.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// `--new-ip` cannot be taken.
    #[error(transparent)]
    NewAddress(#[from] ferry_types::NewAddressError),
    /// The container has no address ferry knows of.
    #[error("container '{0}' has no network of ferry's, so it has no address to change; move it without --new-ip")]
    NoAddress(String),
    /// Peers follow a new address only.
    #[error("--peers follow the container to a new address: give --new-ip too")]
    PeersWithoutNewIp,
    /// The agent that moves the container went away.
    #[error("lost the source agent: {0}")]
    SourceLost(TransportError),
}
