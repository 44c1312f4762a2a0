//! Standby checkpoints and failover, as the CLI asks for them (docs/standby.md).

use ferry_proto::{ControlReply, ControlRequest, WireMessage};
use ferry_transport::{Credentials, Endpoint};
use ferry_types::standby::{Failover, StandbyCheckpoint, StandbyRound, StandbyStatus};

use crate::client::ask;
use crate::ControllerError;

/// Asks the agent at `source` to keep a standby of `container` at `dest` (a peer
/// address), every `every_ms`; the first round, once stored.
pub async fn start(
    source: &Endpoint,
    creds: &Credentials,
    container: &str,
    dest: &str,
    every_ms: u64,
) -> Result<StandbyRound, ControllerError> {
    let msg = ControlRequest::Standby {
        container: container.to_string(),
        dest: dest.to_string(),
        every_ms,
    };
    match ask(source, creds, &msg).await? {
        ControlReply::StandbyStarted { round } => Ok(round),
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}

/// Stops the standby the agent at `source` keeps of `container`.
pub async fn stop(
    source: &Endpoint,
    creds: &Credentials,
    container: &str,
) -> Result<(), ControllerError> {
    let msg = ControlRequest::StandbyStop {
        container: container.to_string(),
    };
    match ask(source, creds, &msg).await? {
        ControlReply::StandbyStopped => Ok(()),
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}

/// The standbys the agent at `agent` keeps, and the checkpoints it holds.
pub async fn list(
    agent: &Endpoint,
    creds: &Credentials,
) -> Result<(Vec<StandbyStatus>, Vec<StandbyCheckpoint>), ControllerError> {
    match ask(agent, creds, &ControlRequest::Standbys).await? {
        ControlReply::Standbys { keeping, holding } => Ok((keeping, holding)),
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}

/// Asks the agent at `on` to restore `container` from its newest standby checkpoint.
pub async fn failover(
    on: &Endpoint,
    creds: &Credentials,
    container: &str,
) -> Result<Failover, ControllerError> {
    let msg = ControlRequest::Failover {
        container: container.to_string(),
    };
    match ask(on, creds, &msg).await? {
        ControlReply::FailedOver { failover } => Ok(*failover),
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}
