//! Talking to an agent: connect to its control socket, send one request, collect the
//! answer (the CLI, the lab and the benchmarks use this).

use std::path::Path;

use ferry_proto::{ControlReply, ControlRequest, Role};
use ferry_transport::{connect, ClientHello, Conn, Credentials, Endpoint, TransportError};

use crate::ControllerError;

/// Connects to an agent for control requests.
pub async fn control(endpoint: &Endpoint, creds: &Credentials) -> Result<Conn, TransportError> {
    let host = format!("cli-{}", std::process::id());
    connect(
        endpoint,
        ClientHello {
            role: Role::Control,
            host,
            session: None,
        },
        creds,
    )
    .await
}

/// Sends one request and collects the answer; `on_event` sees progress on the way.
pub async fn request(
    conn: &mut Conn,
    msg: &ControlRequest,
    mut on_event: impl FnMut(&ControlReply),
) -> Result<ControlReply, TransportError> {
    conn.send(msg).await?;
    loop {
        let m = conn.recv_msg::<ControlReply>().await?;
        match m {
            ControlReply::Progress { .. } => on_event(&m),
            other => return Ok(other),
        }
    }
}

/// An agent's last word on a request: its refusal becomes [`ControllerError::Refused`].
pub fn refused(reply: ControlReply) -> Result<ControlReply, ControllerError> {
    match reply {
        ControlReply::Error { message } => Err(ControllerError::Refused(message)),
        other => Ok(other),
    }
}

/// Sends one request on `conn` and returns the answer, or the agent's refusal.
pub async fn answer(
    conn: &mut Conn,
    msg: &ControlRequest,
    on_event: impl FnMut(&ControlReply),
) -> Result<ControlReply, ControllerError> {
    refused(request(conn, msg, on_event).await?)
}

/// Connects to the agent at `agent`, asks it one thing, and returns the answer, or the
/// agent's refusal; a failed connection is [`ControllerError::Unreachable`].
pub async fn ask(
    agent: &Endpoint,
    creds: &Credentials,
    msg: &ControlRequest,
) -> Result<ControlReply, ControllerError> {
    let mut conn = control(agent, creds)
        .await
        .map_err(|e| ControllerError::Unreachable {
            agent: agent.to_string(),
            source: e,
        })?;
    answer(&mut conn, msg, |_| {}).await
}

/// The control connection to the agent that runs the container to move; a failed
/// connection is [`ControllerError::SourceUnreachable`].
pub async fn source(source: &Endpoint, creds: &Credentials) -> Result<Conn, ControllerError> {
    control(source, creds)
        .await
        .map_err(|e| ControllerError::SourceUnreachable {
            agent: source.to_string(),
            source: e,
        })
}

/// The control socket of an agent whose state directory is `state_dir`.
pub fn default_control(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("agent.sock")
}
