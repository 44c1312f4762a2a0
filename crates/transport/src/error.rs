use ferry_proto::ProtoError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TransportError {
    // The cause is in the message, not a `source`: reports print error chains whole.
    #[error("cannot connect to {endpoint}: {cause}{}", connect_hint(.cause))]
    Connect {
        endpoint: String,
        cause: std::io::Error,
    },
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    #[error("the peer refused the connection: {0}")]
    Refused(String),
    #[error("the peer closed the connection")]
    Closed,
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, &'static str),
    #[error("invalid address '{0}': use HOST:PORT or a Unix socket path")]
    BadEndpoint(String),
    #[error("secret file {path}: {detail}")]
    Secret { path: String, detail: String },
    #[error("{path}: {detail}")]
    Tls { path: String, detail: String },
}

/// What to do about a connection that failed, after the cause.
fn connect_hint(cause: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match cause.kind() {
        NotFound | ConnectionRefused => {
            "; no agent listens there: start 'ferry agent' on that host, or name the one that runs with --agent"
        }
        PermissionDenied => "; only root may use an agent's Unix socket: run ferry as root",
        TimedOut | HostUnreachable | NetworkUnreachable => {
            "; check that the host is up and its agent's port is reachable from here"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_connection_says_what_to_do() {
        let e = TransportError::Connect {
            endpoint: "/var/lib/ferry/agent.sock".into(),
            cause: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(e.to_string().contains("start 'ferry agent'"), "{e}");
        let e = TransportError::Connect {
            endpoint: "x".into(),
            cause: std::io::Error::other("odd"),
        };
        assert_eq!(e.to_string(), "cannot connect to x: odd");
    }
}
