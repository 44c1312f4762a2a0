//! An agent for one run: the host's settings, no TCP listener, one root-only Unix
//! socket in a private directory. It serves until told to stop, then until the
//! migrations it takes part in have ended (a post-copy destination until its last page).

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;

use super::SshError;
use crate::config::AgentConfig;
use crate::state::Agent;

/// How long a stopped agent waits for its migrations to end.
const DRAIN_LIMIT: Duration = Duration::from_secs(3600);

/// A started agent and its socket.
#[derive(Debug)]
pub struct Ephemeral {
    pub agent: Arc<Agent>,
    /// Where peers and the local CLI reach it.
    pub socket: PathBuf,
    dir: PathBuf,
    listener: UnixListener,
    /// Held for the run: one run at a time uses a state directory.
    _lock: std::fs::File,
}

impl Ephemeral {
    /// Starts an agent of `cfg` (its listener and credentials are ignored).
    pub async fn start(mut cfg: AgentConfig) -> Result<Self, SshError> {
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| SshError::io(cfg.state_dir.display().to_string(), e))?;
        let lock = lock_state(&cfg.state_dir)?;
        let dir = super::private_dir()?;
        let socket = dir.join("agent.sock");
        cfg.listen = None;
        cfg.creds = ferry_transport::Credentials::default();
        cfg.control = socket.clone();
        let agent = match crate::daemon::start(cfg).await {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        let listener = UnixListener::bind(&socket)
            .map_err(|e| SshError::io(socket.display().to_string(), e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| SshError::io(socket.display().to_string(), e))?;
        }
        Ok(Self {
            agent,
            socket,
            dir,
            listener,
            _lock: lock,
        })
    }

    /// Serves connections until `stop` completes, then waits for the migrations under
    /// way to end, and removes what the run made.
    pub async fn serve_until(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                r = self.listener.accept() => {
                    if let Ok((s, _)) = r {
                        crate::daemon::serve_local(self.agent.clone(), s);
                    }
                }
                _ = &mut stop => break,
            }
        }
        self.finish().await;
    }

    /// Stops serving, waits for the migrations under way to end, and removes what the
    /// run made.
    pub async fn finish(self) {
        drop(self.listener);
        let all = self.agent.cfg.max_sessions.max(1);
        let start = Instant::now();
        while self.agent.slots.available_permits() < all && start.elapsed() < DRAIN_LIMIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(b) = &self.agent.bound {
            b.remove();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An exclusive lock on `STATE/ssh.lock`, or [`SshError::Busy`] at once.
fn lock_state(state: &std::path::Path) -> Result<std::fs::File, SshError> {
    let path = state.join("ssh.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SshError::io(path.display().to_string(), e))?;
    // SAFETY: flock on a descriptor this function owns.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(SshError::Busy {
            state: state.display().to_string(),
        });
    }
    Ok(f)
}
