//! Why a local operation failed.

use ferry_criu::images::ImageError;
use ferry_criu::log::CriuFailure;
use ferry_runtime::RuntimeError;
use thiserror::Error;

/// Why a local operation (`ferry checkpoint`, `ferry restore`) failed, in terms a user
/// can act on.
#[derive(Debug, Error)]
pub enum OpError {
    /// Bad input: nothing was changed.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{context}: {failure}")]
    Criu {
        context: String,
        failure: Box<CriuFailure>,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl OpError {
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }
}
