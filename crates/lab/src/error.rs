use thiserror::Error;

#[derive(Debug, Error)]
pub enum LabError {
    #[error("no lab named '{0}' is up; start one with 'ferry lab up'")]
    NotUp(String),
    #[error("a lab named '{0}' is already up; use it, or 'ferry lab down' first")]
    AlreadyUp(String),
    #[error("the lab has no host '{0}' (hosts: {1})")]
    NoHost(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agent: {0}")]
    Agent(String),
    #[error(transparent)]
    Transport(#[from] ferry_transport::TransportError),
    #[error(transparent)]
    Net(#[from] ferry_netns::NetError),
}

impl LabError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
