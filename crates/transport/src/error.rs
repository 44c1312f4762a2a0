use ferry_proto::ProtoError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TransportError {
    // The cause is in the message, not a `source`: reports print error chains whole.
    #[error("cannot connect to {endpoint}: {cause}")]
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
