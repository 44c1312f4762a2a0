//! The agent's configuration, checked up front: each problem names what is at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_transport::Credentials;
use thiserror::Error;

/// How containers' networks are attached on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// Built in: each container's veth is attached to this bridge.
    Bridge(String),
    /// A script is called at each step (see docs/network.md).
    Hook(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This host's name, as peers and reports see it.
    pub name: String,
    /// Address for peers and remote CLIs (TCP).
    pub listen: Option<SocketAddr>,
    /// Unix socket for local CLIs (root only).
    pub control: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_root: PathBuf,
    pub criu: PathBuf,
    pub runc: PathBuf,
    /// Podman, if containers it runs may move.
    pub podman: Option<PathBuf>,
    /// The runc root of Podman's containers.
    pub podman_runc_root: PathBuf,
    /// The cgroup parent of Podman containers arriving here.
    pub podman_cgroup_parent: Option<String>,
    /// Docker's client, if containers Docker runs may move.
    pub docker: Option<PathBuf>,
    /// The Docker daemon's socket.
    pub docker_socket: PathBuf,
    /// The runc root of Docker's containers.
    pub docker_runc_root: PathBuf,
    /// What this host proves itself with over TCP, and trusts peers by.
    pub creds: Credentials,
    pub net: NetMode,
    /// Prefix of the network namespaces this agent creates for containers.
    pub netns_prefix: String,
    pub allow_fault_injection: bool,
    /// Most migrations this agent takes part in at once.
    pub max_sessions: usize,
    /// Seconds an incoming session may stay silent before it is dropped.
    pub session_idle_timeout: u64,
    /// The most the images tmpfs holds, as tmpfs's `size=` takes it (`50%`, `8388608k`).
    pub images_size: String,
    /// The most a received bundle may hold, in bytes.
    pub max_bundle_bytes: u64,
    /// Keep every session's logs, not only those of failed ones.
    pub keep_logs: bool,
    /// The memory CRIU's dumps and restores may use.
    pub helper_memory: HelperMemory,
    /// What this host agrees to restore from a peer (`--restore-policy`).
    pub restore_policy: std::sync::Arc<ferry_runtime::policy::RestorePolicy>,
}

/// The number `t` gives, times its binary unit (`K`, `M`, `G`, and `T` when `max_shift`
/// reaches 40): `None` when it is not a number, `Some(None)` when it overflows.
fn scaled(t: &str, max_shift: u32) -> Option<Option<u64>> {
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) if max_shift >= 40 => (&t[..i], 40),
        _ => (t, 0),
    };
    let n: u64 = num.parse().ok()?;
    Some(n.checked_shl(shift).filter(|b| b >> shift == n))
}

/// A size with an optional binary unit: `4096`, `512M`, `64G`, `1T`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    match scaled(s.trim(), 40) {
        Some(Some(b)) if b > 0 => Ok(b),
        _ => Err(format!(
            "'{s}' is not a size: give one like 512M, 64G or 1T"
        )),
    }
}

/// The most the images tmpfs may hold (`--images-size`): a share of memory (`50%`) or a
/// size (`8G`), as tmpfs takes it.
pub fn parse_images_size(s: &str) -> Result<String, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        return match p.parse::<u8>() {
            Ok(n) if (1..=100).contains(&n) => Ok(t.to_string()),
            _ => Err(format!(
                "'{s}' is not a share of memory between 1% and 100%"
            )),
        };
    }
    parse_bytes(t).map(|b| format!("{}k", b.div_ceil(1024)))
}

/// How much memory CRIU may use (`--helper-memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HelperMemory {
    /// A quarter of the host's memory, at least 512 MiB.
    #[default]
    Auto,
    Limit(u64),
    /// No bound: CRIU is only the OOM killer's first choice.
    Off,
}

impl HelperMemory {
    /// `auto`, `off`, or a size with a binary unit (`512M`, `2G`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        match t {
            "auto" => return Ok(Self::Auto),
            "off" => return Ok(Self::Off),
            _ => {}
        }
        let Some(bytes) = scaled(t, 30) else {
            return Err(format!(
                "'{s}' is not a memory size: give auto, off, or a size like 512M or 2G"
            ));
        };
        match bytes {
            Some(b) if b >= 16 << 20 => Ok(Self::Limit(b)),
            _ => Err(format!(
                "'{s}' is too little for CRIU: give at least 16M, or off"
            )),
        }
    }

    /// The bound in bytes on a host with `mem_total` bytes, if there is one.
    pub fn bytes(self, mem_total: u64) -> Option<u64> {
        match self {
            Self::Auto => Some((mem_total / 4).max(512 << 20)),
            Self::Limit(b) => Some(b),
            Self::Off => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("state directory {0}: {1}")]
    StateDir(PathBuf, String),
    #[error("runtime root {0}: {1}")]
    RuntimeRoot(PathBuf, String),
    #[error("network hook {0}: {1}")]
    Hook(PathBuf, String),
    #[error("host name '{0}' is not valid: use letters, digits, '-' and '_' (at most 32)")]
    Name(String),
    #[error("{0}")]
    Secret(String),
    #[error("--listen {0} needs mutual TLS: give --tls-ca, --tls-cert and --tls-key (a shared secret alone would leave pages in the clear; with TLS, --secret-file adds to it)")]
    NoTls(SocketAddr),
    #[error("CRIU: {0}")]
    Criu(String),
}

/// A session id as sources make them (`CONTAINER-HEX`): it names files here.
pub fn valid_session(id: &str) -> bool {
    valid_name(id, 80)
}

/// Names that become parts of file and namespace names.
pub fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl AgentConfig {
    /// Checks everything that can be checked before starting.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !valid_name(&self.name, 32) {
            return Err(ConfigError::Name(self.name.clone()));
        }
        check_dir(&self.state_dir).map_err(|e| ConfigError::StateDir(self.state_dir.clone(), e))?;
        check_dir(&self.runtime_root)
            .map_err(|e| ConfigError::RuntimeRoot(self.runtime_root.clone(), e))?;
        if let NetMode::Hook(h) = &self.net {
            use std::os::unix::fs::PermissionsExt;
            let meta =
                std::fs::metadata(h).map_err(|e| ConfigError::Hook(h.clone(), e.to_string()))?;
            if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                return Err(ConfigError::Hook(
                    h.clone(),
                    "is not an executable file".into(),
                ));
            }
        }
        if let Some(addr) = self.listen.filter(|_| self.creds.tls.is_none()) {
            return Err(ConfigError::NoTls(addr));
        }
        Ok(())
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.state_dir.join("containers")
    }
    pub fn bundles_dir(&self) -> PathBuf {
        self.state_dir.join("bundles")
    }
    /// Where checkpoint images live: a tmpfs the agent mounts.
    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// What the runc engine needs: where runc keeps its state, where bundles and CRIU's
    /// configuration files go, and this agent's cgroup parent.
    pub fn runc_settings(&self) -> ferry_containers::RuncSettings {
        ferry_containers::RuncSettings {
            runc: ferry_runtime::Runc {
                binary: self.runc.clone(),
                root: self.runtime_root.clone(),
                criu: self.criu.clone(),
                bound: None,
            },
            host: self.name.clone(),
            bundles_dir: self.bundles_dir(),
            criu_conf_dir: self.state_dir.join("criu"),
            // Unique per agent, so that several agents on one machine (the lab) never
            // share a container's cgroup.
            cgroup_parent: format!("/ferry/{}", self.netns_prefix),
            policy: self.restore_policy.clone(),
            max_bundle_bytes: self.max_bundle_bytes,
        }
    }
}

impl AgentConfig {
    /// What the Podman engine needs, if Podman is to be used.
    pub fn podman_settings(&self) -> Option<ferry_containers::podman::PodmanSettings> {
        let program = self.podman.clone()?;
        Some(ferry_containers::podman::PodmanSettings {
            podman: ferry_containers::podman::Podman {
                program,
                env: Vec::new(),
            },
            runc: ferry_runtime::Runc {
                binary: self.runc.clone(),
                root: self.podman_runc_root.clone(),
                criu: self.criu.clone(),
                bound: None,
            },
            host: self.name.clone(),
            staging: self.state_dir.join("podman"),
            criu_conf_dir: self.state_dir.join("criu"),
            cgroup_parent: self.podman_cgroup_parent.clone(),
            policy: self.restore_policy.clone(),
        })
    }

    /// What the Docker engine needs, if Docker is to be used.
    pub fn docker_settings(&self) -> Option<ferry_containers::docker::DockerSettings> {
        let program = self.docker.clone()?;
        Some(ferry_containers::docker::DockerSettings {
            docker: ferry_containers::docker::Docker {
                program,
                socket: self.docker_socket.clone(),
            },
            runc: ferry_runtime::Runc {
                binary: self.runc.clone(),
                root: self.docker_runc_root.clone(),
                criu: self.criu.clone(),
                bound: None,
            },
            host: self.name.clone(),
            staging: self.state_dir.join("docker"),
            policy: self.restore_policy.clone(),
        })
    }
}

fn check_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let probe = dir.join(".ferry-write-test");
    std::fs::write(&probe, b"x").map_err(|e| format!("cannot write in it: {e}"))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> AgentConfig {
        AgentConfig {
            name: "a".into(),
            listen: None,
            control: dir.join("agent.sock"),
            state_dir: dir.join("state"),
            runtime_root: dir.join("runc"),
            criu: "/usr/local/sbin/criu".into(),
            runc: "runc".into(),
            podman: None,
            podman_runc_root: "/run/runc".into(),
            podman_cgroup_parent: None,
            docker: None,
            docker_socket: "/var/run/docker.sock".into(),
            docker_runc_root: "/run/docker/runtime-runc/moby".into(),
            creds: Credentials::default(),
            net: NetMode::Bridge("br0".into()),
            netns_prefix: "ferry-a".into(),
            allow_fault_injection: false,
            max_sessions: 4,
            session_idle_timeout: 3600,
            images_size: "50%".into(),
            max_bundle_bytes: 64 << 30,
            helper_memory: HelperMemory::Auto,
            keep_logs: false,
            restore_policy: Default::default(),
        }
    }

    #[test]
    fn sizes_and_shares_of_memory_parse_or_say_what_is_wrong() {
        assert_eq!(parse_bytes("64G"), Ok(64 << 30));
        assert_eq!(parse_bytes("1K"), Ok(1024));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        for bad in ["", "0", "G", "12X", "99999999999T"] {
            assert!(
                parse_bytes(bad).unwrap_err().contains("not a size"),
                "{bad}"
            );
        }
        assert_eq!(parse_images_size("50%").unwrap(), "50%");
        assert_eq!(parse_images_size("8G").unwrap(), "8388608k");
        assert!(parse_images_size("0%").is_err() && parse_images_size("101%").is_err());
    }

    #[test]
    fn helper_memory_takes_sizes_auto_and_off() {
        assert_eq!(HelperMemory::parse("auto"), Ok(HelperMemory::Auto));
        assert_eq!(HelperMemory::parse("off"), Ok(HelperMemory::Off));
        assert_eq!(
            HelperMemory::parse("64M"),
            Ok(HelperMemory::Limit(64 << 20))
        );
        assert_eq!(HelperMemory::parse("2G"), Ok(HelperMemory::Limit(2 << 30)));
        assert!(HelperMemory::parse("1M")
            .unwrap_err()
            .contains("at least 16M"));
        assert!(HelperMemory::parse("lots")
            .unwrap_err()
            .contains("not a memory size"));
        assert!(HelperMemory::parse("99999999999G").is_err());
        assert_eq!(HelperMemory::Auto.bytes(24 << 30), Some(6 << 30));
        assert_eq!(HelperMemory::Auto.bytes(1 << 30), Some(512 << 20));
        assert_eq!(HelperMemory::Off.bytes(1 << 30), None);
    }

    #[test]
    fn each_problem_names_what_is_at_fault() {
        let d = tempfile::tempdir().unwrap();
        assert!(base(d.path()).check().is_ok());
        let mut c = base(d.path());
        c.state_dir = "/proc/ferry-cannot".into();
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("/proc/ferry-cannot"));
        let mut c = base(d.path());
        c.listen = Some("127.0.0.1:7070".parse().unwrap());
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("--tls-cert"), "{e}");
        c.creds.secret = Some(ferry_transport::Secret::new(vec![7; 32]).unwrap());
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("needs mutual TLS"), "{e}");
        let mut c = base(d.path());
        c.net = NetMode::Hook(d.path().join("nohook"));
        assert!(c.check().unwrap_err().to_string().contains("nohook"));
        let mut c = base(d.path());
        c.name = "a/b".into();
        assert!(c.check().is_err());
    }
}
