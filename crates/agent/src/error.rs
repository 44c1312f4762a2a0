use ferry_engine::OpError;
use ferry_netns::NetError;
use ferry_runtime::RuntimeError;
use ferry_transport::TransportError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AgentError {
    /// Bad input: nothing changed.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
