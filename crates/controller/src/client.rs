//! Talking to an agent: connect to its control socket, send one request, collect the
//! answer (the CLI, the lab and the benchmarks use this).

use std::path::Path;

use ferry_proto::{ControlReply, ControlRequest, Role};
use ferry_transport::{connect, ClientHello, Conn, Credentials, Endpoint, TransportError};

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

/// The control socket of an agent whose state directory is `state_dir`.
pub fn default_control(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("agent.sock")
}
