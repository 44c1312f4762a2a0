//! The agent's main loop: listeners, authentication, dispatch by role.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use ferry_criu::bound::MemoryBound;
use ferry_criu::features::{ensure_pipe_max_size, CriuBinary, KDAT_DIR};
use ferry_proto::Role;
use ferry_transport::{accept, accept_tcp, Auth, Stream};
use tokio::net::{TcpListener, UnixListener};

use crate::adapters::peer::ConnLink;
use crate::config::AgentConfig;
use crate::registry::Registry;
use crate::state::{Abilities, Agent};
use crate::{control, recover, tmpfs, AgentError};

/// Bundles (with the containers' environments), records and images are root's only:
/// the state directory 0700, the images on a 0700 tmpfs of the agent's own.
fn private_state(cfg: &AgentConfig) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| AgentError::io("state directory", e))?;
    tmpfs::ensure_tmpfs(&cfg.images_dir(), &cfg.images_size)
        .map_err(|e| AgentError::io("images directory", e))
}

/// Runs an agent until SIGTERM or SIGINT.
pub async fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    let agent = start(cfg).await?;
    serve_listeners(agent).await
}

/// Checks the configuration, probes this host, opens the agent's records and settles
/// what a previous run left half-way: an agent ready to serve connections.
pub async fn start(cfg: AgentConfig) -> Result<Arc<Agent>, AgentError> {
    cfg.check()?;
    private_state(&cfg)?;
    let criu = CriuBinary::probe(&cfg.criu)
        .map_err(|e| crate::config::ConfigError::Criu(e.to_string()))?;
    let nft = criu.check_feature("network_lock_nftables").ok
        && ["/usr/sbin/nft", "/sbin/nft"]
            .iter()
            .any(|p| std::path::Path::new(p).exists());
    tracing::info!(nftables = nft, "network lock back end");
    // CRIU caches what it learns about the kernel in a tmpfs file; without it each dump
    // and restore spends ~30 ms finding out again.
    if let Err(e) =
        tmpfs::ensure_tmpfs_sized(std::path::Path::new(KDAT_DIR), "ferry-criu-cache", "1m")
    {
        tracing::warn!(
            "CRIU cannot cache kernel facts ({e}); every dump and restore takes ~30 ms longer"
        );
    }
    // Lazy pages (post-copy, and lazy restores of cold migrations) need userfaultfd and
    // pipes big enough for CRIU's page pipes.
    let lazy = criu.check_feature("uffd-noncoop").ok
        && match ensure_pipe_max_size() {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("lazy pages disabled (post-copy refused, restores eager): {e}");
                false
            }
        };
    let registry = Registry::new(&cfg.containers_dir())
        .map_err(|e| AgentError::io("container registry", e))?;
    let version =
        (criu.version >= ferry_criu::features::MIN_VERSION).then(|| criu.version.to_string());
    let bound = memory_bound(&cfg);
    let can = Abilities {
        lazy_pages: lazy,
        criu_version: version,
        bound,
    };
    let outcomes = crate::outcomes::Outcomes::open(&cfg.state_dir)
        .map_err(|e| AgentError::io("session outcomes", e))?;
    outcomes.after_restart();
    let agent = Arc::new(Agent::new(cfg, registry, outcomes, can));
    recover::recover(&agent).await;
    Ok(agent)
}

/// Serves the control socket and the TCP listener until SIGTERM or SIGINT.
async fn serve_listeners(agent: Arc<Agent>) -> Result<(), AgentError> {
    let lazy = agent.lazy_pages;
    let control_path = agent.cfg.control.clone();
    if let Some(dir) = control_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::io(dir.display().to_string(), e))?;
    }
    let _ = std::fs::remove_file(&control_path);
    let unix = UnixListener::bind(&control_path)
        .map_err(|e| AgentError::io(control_path.display().to_string(), e))?;
    std::fs::set_permissions(&control_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| AgentError::io(control_path.display().to_string(), e))?;
    let tcp = match agent.cfg.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| AgentError::io(format!("listening on {addr}"), e))?,
        ),
        None => None,
    };
    tracing::info!(
        host = %agent.cfg.name,
        control = %control_path.display(),
        listen = ?agent.cfg.listen,
        lazy_pages = lazy,
        "ferry agent ready"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::io("signal handler", e))?;
    loop {
        tokio::select! {
            r = unix.accept() => {
                if let Ok((s, _)) = r {
                    serve_local(agent.clone(), s);
                }
            }
            r = async { match &tcp { Some(l) => l.accept().await, None => std::future::pending().await } } => {
                if let Ok((s, _)) = r {
                    tokio::spawn(handle_tcp(agent.clone(), s));
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let _ = std::fs::remove_file(&control_path);
    if let Some(b) = &agent.bound {
        b.remove();
    }
    tracing::info!("ferry agent stopped");
    Ok(())
}

/// The cgroup CRIU runs in, with its limit; none if the host has no memory controller.
fn memory_bound(cfg: &AgentConfig) -> Option<Arc<MemoryBound>> {
    let total = ferry_host::procfs::host(&cfg.name, None, false).mem_total;
    let limit = cfg.helper_memory.bytes(total)?;
    match MemoryBound::create(&cfg.netns_prefix, limit) {
        Ok(b) => {
            tracing::info!(limit, "CRIU runs in a memory bound");
            Some(Arc::new(b))
        }
        Err(e) => {
            tracing::warn!(
                "CRIU runs without a memory bound ({e}); it is still the OOM killer's first choice"
            );
            None
        }
    }
}

/// Serves one connection on a root-only Unix socket, on a task of its own.
pub fn serve_local(agent: Arc<Agent>, s: tokio::net::UnixStream) {
    tokio::spawn(handle(agent, Stream::Unix(s), Auth::PeerCredentials));
}

async fn handle(agent: Arc<Agent>, stream: Stream, auth: Auth) {
    let uid = stream.peer_uid();
    let peer = stream.peer();
    match accept(stream, &agent.cfg.name, &auth, uid).await {
        Ok(acc) => serve(agent, acc).await,
        Err(e) => tracing::warn!(%peer, "refused a connection: {e}"),
    }
}

/// A TCP peer: mutual TLS (when configured), then the ferry handshake.
async fn handle_tcp(agent: Arc<Agent>, tcp: tokio::net::TcpStream) {
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    match accept_tcp(tcp, &agent.cfg.name, &agent.cfg.creds).await {
        Ok(acc) => serve(agent, acc).await,
        Err(e) => tracing::warn!(%peer, "refused a connection: {e}"),
    }
}

async fn serve(agent: Arc<Agent>, acc: ferry_transport::Accepted) {
    match &acc.identity {
        ferry_transport::Identity::LocalRoot => {}
        who => tracing::debug!(%who, role = ?acc.role, "accepted a connection"),
    }
    match acc.role {
        Role::Control => control::serve(agent, acc.conn).await,
        Role::Standby => crate::standby::receive::serve(agent, acc.conn).await,
        Role::Peer => {
            let link = Box::new(ConnLink(acc.conn));
            ferry_engine::dest::serve(
                crate::adapters::dest_ports(&agent),
                agent.host_settings(),
                link,
            )
            .await
        }
        role @ (Role::Pages | Role::UrgentPages) => {
            let Some(id) = acc.session else { return };
            let slot = agent.sessions.lock().ok().and_then(|mut s| {
                s.get_mut(&id).and_then(|e| match role {
                    Role::UrgentPages => e.urgent.take(),
                    _ => e.pages.take(),
                })
            });
            match slot {
                Some(tx) => {
                    let stream = acc.conn.into_stream();
                    stream.mark(crate::adapters::pages_source::traffic(role));
                    let _ = tx.send(stream);
                }
                None => {
                    tracing::warn!(session = %id, "a page channel for an unknown session was refused")
                }
            }
        }
    }
}
