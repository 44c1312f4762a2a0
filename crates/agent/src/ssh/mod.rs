//! ferry without agents, over SSH: `ferry migrate NAME --to ssh://[USER@]HOST`.
//!
//! The side that runs `ferry migrate` opens one SSH connection (a master connection
//! whose channels carry everything else), makes sure the destination has this very
//! build of ferry (copying it there when it lacks it), and starts it there as the
//! destination half (`ferry ssh-serve`): an agent for this one run, reachable only
//! through a root-only Unix socket that the SSH connection forwards. On this side an
//! agent for this one run too holds the container. Both speak ferry's protocol as two
//! agents do, over the forwarded socket: every strategy works, and SSH does what mutual
//! TLS does between agents (who the peer is, and encryption), so neither side needs a
//! CA. What each side may do comes from its own settings file ([`hostconf`]).
//!
//! - [`target`]: `ssh://USER@HOST:PORT` (user and port optional);
//! - [`hostconf`]: this host's settings, as `ferry agent`'s arguments;
//! - [`session`]: the SSH connection, the binary on the far side, the forwarded socket;
//! - [`ephemeral`]: an agent for one run, on a Unix socket;
//! - [`run`]: the source half, `ferry migrate --to ssh://…`;
//! - [`serve`]: the destination half, `ferry ssh-serve`;
//! - [`build_id`]: which build a binary is.

pub mod build_id;
pub mod ephemeral;
pub mod hostconf;
pub mod run;
pub mod serve;
pub mod session;
pub mod target;

pub use ephemeral::Ephemeral;
pub use session::{Remote, SshSession};
pub use target::SshTarget;

use thiserror::Error;

/// What went wrong on the way to, or at, the far side; one sentence each.
#[derive(Debug, Error)]
pub enum SshError {
    #[error("'{to}' is not an SSH destination: {why}; write ssh://[USER@]HOST[:PORT]")]
    BadTarget { to: String, why: String },
    #[error("{path}: {why}; its lines are 'ferry agent' arguments, one per line (docs/ssh.md)")]
    HostConf { path: String, why: String },
    #[error("cannot run ssh: {0}; install OpenSSH's client (openssh-client)")]
    NoSsh(String),
    #[error("cannot reach {target} over SSH: {why}; check that 'ssh {host} true' works without a prompt (ferry runs ssh in batch mode)")]
    Connect {
        target: String,
        host: String,
        why: String,
    },
    #[error("{target} is {remote}, and this ferry is built for {local}; install a ferry built for {remote} there")]
    Arch {
        target: String,
        remote: String,
        local: String,
    },
    #[error("cannot copy ferry to {target}: {why}")]
    Copy { target: String, why: String },
    #[error("ferry did not start on {target}: {why}")]
    RemoteStart { target: String, why: String },
    #[error("cannot forward ferry's socket over the SSH connection to {target}: {why}; the SSH server must allow local forwarding (AllowTcpForwarding and AllowStreamLocalForwarding: yes or local)")]
    Forward { target: String, why: String },
    #[error("another ferry over SSH is using {state} on this host; wait for it to end")]
    Busy { state: String },
    #[error("ferry over SSH needs root on {host}: CRIU checkpoints and restores as root only; connect as root (ssh://root@HOST)")]
    NotRoot { host: String },
    #[error("{what}: {cause}")]
    Io {
        what: String,
        #[source]
        cause: std::io::Error,
    },
    #[error(transparent)]
    Agent(#[from] crate::AgentError),
}

impl SshError {
    pub(crate) fn io(what: impl Into<String>, cause: std::io::Error) -> Self {
        SshError::Io {
            what: what.into(),
            cause,
        }
    }
}

/// A private directory for this run's sockets (mode 0700), under `/run/ferry/ssh`.
pub(crate) fn private_dir() -> Result<std::path::PathBuf, SshError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut raw = [0u8; 8];
    getrandom::getrandom(&mut raw)
        .map_err(|e| SshError::io("randomness", std::io::Error::other(e.to_string())))?;
    let base = std::path::Path::new(RUN_DIR);
    std::fs::create_dir_all(base).map_err(|e| SshError::io(RUN_DIR, e))?;
    let dir = base.join(hex::encode(raw));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| SshError::io(dir.display().to_string(), e))?;
    Ok(dir)
}

/// Where each run's sockets live.
pub const RUN_DIR: &str = "/run/ferry/ssh";
