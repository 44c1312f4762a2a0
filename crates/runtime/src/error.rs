use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("container '{id}' does not exist in runtime root {root}; check the name with 'runc --root {root} list'")]
    NotFound { id: String, root: PathBuf },
    #[error("runtime root {0} does not exist; pass the right --runtime-root (runc's --root)")]
    RootMissing(PathBuf),
    #[error("container '{id}' is {status}, not running")]
    NotRunning { id: String, status: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot parse what {program} printed: {detail}")]
    BadOutput { program: String, detail: String },
    #[error("bundle {path}: {detail}")]
    Bundle { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CRIU ran out of memory during the {what}: it reached its bound of {} (the agent's --helper-memory)", human(*limit))]
    HelperOutOfMemory { what: String, limit: u64 },
    #[error("cgroup freezer: {0}")]
    Freezer(String),
    #[error("unsafe path in bundle: {0}")]
    UnsafePath(String),
}

fn human(b: u64) -> String {
    ferry_types::report::human_bytes(b)
}

impl RuntimeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
