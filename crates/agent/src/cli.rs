//! `ferry agent`: the daemon every host runs. Its command-line arguments, and the setup
//! from them to a running daemon; the `ferry` binary puts them under its command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use ferry_criu::features::CriuBinary;

use crate::config::{AgentConfig, HelperMemory, NetMode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What this host agrees to restore from a peer: hooks, host mounts, capabilities,
    /// namespaces (docs/security.md#restore-policy). Default: none of them beyond what
    /// container engines grant by default.
    #[arg(long, value_name = "FILE")]
    pub restore_policy: Option<PathBuf>,
    /// Address peers and remote CLIs connect to (needs --tls-ca, --tls-cert, --tls-key).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// State directory: container records, bundles, and a tmpfs for images.
    #[arg(long, default_value = "/var/lib/ferry")]
    pub state_dir: PathBuf,
    /// runc's state directory (its --root).
    #[arg(long, default_value = ferry_runtime::DEFAULT_ROOT)]
    pub runtime_root: PathBuf,
    /// This host's name (default: the system host name).
    #[arg(long)]
    pub name: Option<String>,
    /// The Unix socket local CLIs use (root only). Default: STATE_DIR/agent.sock.
    #[arg(long)]
    pub control: Option<PathBuf>,
    #[command(flatten)]
    pub creds: ferry_transport::cli::CredArgs,
    /// Bridge containers' veths attach to (the built-in topology).
    #[arg(long, default_value = "br0")]
    pub bridge: String,
    /// A script that sets up containers' networks instead (see docs/network.md).
    #[arg(long, conflicts_with = "bridge")]
    pub net_hook: Option<PathBuf>,
    /// Prefix of the network namespaces made for containers (default: ferry-NAME).
    #[arg(long)]
    pub netns_prefix: Option<String>,
    /// Enter this network namespace (a name under /run/netns) before starting.
    #[arg(long)]
    pub netns: Option<String>,
    /// CRIU binary.
    #[arg(long)]
    pub criu: Option<PathBuf>,
    /// runc binary.
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,
    /// Podman binary; containers Podman runs move too when it is found (`none`: never).
    #[arg(long, default_value = "podman")]
    pub podman: PathBuf,
    /// The runc root Podman's containers live in (Podman's runtime root).
    #[arg(long, default_value = "/run/runc")]
    pub podman_runc_root: PathBuf,
    /// The cgroup parent of Podman containers arriving here (default: the one they had).
    #[arg(long)]
    pub podman_cgroup_parent: Option<String>,
    /// Docker client; containers Docker runs move too when it and the daemon's socket
    /// are found (`none`: never).
    #[arg(long, default_value = "docker")]
    pub docker: PathBuf,
    /// The Docker daemon's socket (default: the one `DOCKER_HOST` names, or Docker's own).
    #[arg(long)]
    pub docker_socket: Option<PathBuf>,
    /// The runc root Docker's containers live in (`EXEC_ROOT/runtime-runc/moby`).
    #[arg(long, default_value = "/run/docker/runtime-runc/moby")]
    pub docker_runc_root: PathBuf,
    /// Most migrations this agent takes part in at once (the last one given counts).
    #[arg(long, default_value_t = 4, overrides_with = "max_sessions")]
    pub max_sessions: usize,
    /// The hosts whose agents may send this one containers (comma-separated or
    /// repeated; names as their certificates carry them). Default: every host the CA
    /// signed.
    #[arg(long, value_delimiter = ',', value_name = "HOST")]
    pub accept_from: Vec<String>,
    /// Seconds an incoming migration's control connection may stay silent before this
    /// agent drops what it built (pages and images travel on channels of their own, so
    /// keep it above the longest transfer; and above the 600 s a group may hold a member
    /// before its freeze).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub session_idle_timeout: u64,
    /// The most the images tmpfs may hold: a share of memory (`50%`) or a size (`8G`).
    /// Checkpoint images of every migration at once live there.
    #[arg(long, default_value = "50%", value_parser = crate::config::parse_images_size, value_name = "SIZE|PCT%")]
    pub images_size: String,
    /// The most a received bundle (config.json and root file system) may hold.
    #[arg(long, default_value = "64G", value_parser = crate::config::parse_bytes, value_name = "SIZE")]
    pub max_bundle_bytes: u64,
    /// Honour fault-injection requests (tests only).
    #[arg(long, hide = true)]
    pub allow_fault_injection: bool,
    /// Announce these protocol versions, MIN-MAX, instead of the ones spoken (tests
    /// only: a peer of an incompatible version).
    #[arg(long, hide = true)]
    pub announce_versions: Option<String>,
    /// Keep the CRIU and runc logs of every session under STATE_DIR/logs, not only those
    /// of sessions that failed.
    #[arg(long, env = "FERRY_KEEP_LOGS", value_parser = clap::builder::FalseyValueParser::new())]
    pub keep_logs: bool,
    /// Memory CRIU's dumps and restores may use, in their own cgroup: `auto` (a quarter
    /// of the host's memory, at least 512M), a size (`512M`, `2G`), or `off`. A dump
    /// that needs more is stopped and the container keeps running.
    #[arg(long, env = "FERRY_HELPER_MEMORY", default_value = "auto", value_parser = HelperMemory::parse)]
    pub helper_memory: HelperMemory,
}

/// Enters a named network namespace (`--netns`); must run before any thread is started.
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = ferry_netns::netns_path(name);
    let f = std::fs::File::open(&path)
        .map_err(|e| anyhow::anyhow!("network namespace {}: {e}", path.display()))?;
    // SAFETY: setns on a valid descriptor, from the only thread of the process.
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    if r != 0 {
        anyhow::bail!(
            "cannot enter network namespace {name}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Runs the agent until it is told to stop.
pub async fn run(a: Args) -> anyhow::Result<i32> {
    crate::daemon::run(config(a)?).await?;
    Ok(0)
}

/// The agent's configuration from its arguments (files they name are read here).
pub fn config(a: Args) -> anyhow::Result<AgentConfig> {
    let name = a.name.unwrap_or_else(hostname);
    let criu = CriuBinary::locate(a.criu.as_deref())?;
    let mut creds = a.creds.load()?;
    creds.accept_from = (!a.accept_from.is_empty()).then_some(a.accept_from);
    if let Some(v) = &a.announce_versions {
        let (min, max) = v
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("--announce-versions takes MIN-MAX, e.g. 7-9"))?;
        ferry_proto::announce_versions(min, max);
    }
    let cfg = AgentConfig {
        netns_prefix: a.netns_prefix.unwrap_or_else(|| format!("ferry-{name}")),
        name,
        listen: a.listen,
        control: a.control.unwrap_or_else(|| a.state_dir.join("agent.sock")),
        state_dir: a.state_dir,
        runtime_root: a.runtime_root,
        criu: criu.path,
        runc: a.runc,
        podman: (a.podman != std::path::Path::new("none")).then_some(a.podman),
        podman_runc_root: a.podman_runc_root,
        podman_cgroup_parent: a.podman_cgroup_parent,
        docker: (a.docker != std::path::Path::new("none")).then_some(a.docker),
        docker_socket: a.docker_socket.unwrap_or_else(default_docker_socket),
        docker_runc_root: a.docker_runc_root,
        creds,
        net: match a.net_hook {
            Some(h) => NetMode::Hook(h),
            None => NetMode::Bridge(a.bridge),
        },
        allow_fault_injection: a.allow_fault_injection,
        max_sessions: a.max_sessions,
        session_idle_timeout: a.session_idle_timeout,
        images_size: a.images_size,
        max_bundle_bytes: a.max_bundle_bytes,
        keep_logs: a.keep_logs,
        helper_memory: a.helper_memory,
        restore_policy: std::sync::Arc::new(match &a.restore_policy {
            Some(p) => ferry_runtime::policy::RestorePolicy::load(p)?,
            None => ferry_runtime::policy::RestorePolicy::default(),
        }),
    };
    Ok(cfg)
}

/// The socket `DOCKER_HOST` names (`unix://PATH`), or Docker's own.
fn default_docker_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}
