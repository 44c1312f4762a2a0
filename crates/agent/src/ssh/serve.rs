//! `ferry ssh-serve`: the destination half of a migration over SSH, started by the
//! source's ferry on this host. It takes this host's settings ([`super::hostconf`]),
//! listens on a root-only Unix socket the SSH connection forwards, says so on its
//! output, and serves until its input closes (the source is done, or its SSH connection
//! is gone), then until the migrations it takes part in have ended.

use tokio::io::AsyncReadExt;

use super::{Ephemeral, SshError};

/// Serves one run; the exit code.
pub async fn serve() -> Result<i32, SshError> {
    let args = super::hostconf::load()?;
    let host = args.name.clone().unwrap_or_else(crate::cli::hostname);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SshError::NotRoot { host });
    }
    let cfg = crate::cli::config(args).map_err(|e| SshError::HostConf {
        path: super::hostconf::path().display().to_string(),
        why: format!("{e:#}"),
    })?;
    let agent = Ephemeral::start(cfg).await?;
    println!("{}{}", super::session::READY, agent.socket.display());
    tracing::info!(socket = %agent.socket.display(), "serving a migration over SSH");
    agent
        .serve_until(async {
            let mut sink = [0u8; 256];
            let mut input = tokio::io::stdin();
            while input.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        })
        .await;
    Ok(0)
}
