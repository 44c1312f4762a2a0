//! The probes: CRIU, runc, the kernel, its features and the network-lock back ends.
//! Each notes what is missing in `problems`, in the order `ferry doctor` prints them.

use std::path::Path;
use std::process::Command;

use ferry_criu::features::{pipe_max_size, CriuBinary, PIPE_MAX_SIZE_NEEDED};

use super::{CriuInfo, Features, KernelInfo, NetworkLockInfo, Problem, ToolInfo};

fn which(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(Into::into))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_string())
}

/// `v1`, `v2` or `hybrid`, from the mounts under /sys/fs/cgroup.
pub fn cgroup_mode(mountinfo: &str) -> String {
    let mut v1 = false;
    let mut v2_root = false;
    let mut v2_any = false;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mount = pre.split(' ').nth(4).unwrap_or("");
        let fstype = post.split(' ').next().unwrap_or("");
        if !mount.starts_with("/sys/fs/cgroup") {
            continue;
        }
        match fstype {
            "cgroup" => v1 = true,
            "cgroup2" => {
                v2_any = true;
                v2_root |= mount == "/sys/fs/cgroup";
            }
            _ => {}
        }
    }
    match (v1, v2_any, v2_root) {
        (false, true, true) => "v2",
        (true, true, _) => "hybrid",
        (true, false, _) => "v1",
        _ => "unknown",
    }
    .to_string()
}

/// Whether this process may put a TCP socket into repair mode (CRIU's TCP dump needs it).
pub fn tcp_repair_available() -> bool {
    // SAFETY: plain socket/setsockopt/close calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return false;
        }
        let on: libc::c_int = 1;
        const TCP_REPAIR: libc::c_int = 19;
        let r = libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            TCP_REPAIR,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
        libc::close(fd);
        r == 0
    }
}

/// Whether the effective capability set holds CAP_SYS_RESOURCE (bit 24).
pub(crate) fn has_cap_sys_resource(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// What the CRIU probe found.
pub(super) struct Criu {
    pub info: CriuInfo,
    /// The binary, when one was found.
    pub binary: Option<CriuBinary>,
    /// `criu check` passes.
    pub check_ok: bool,
}

/// CRIU: where it is, its version, and `criu check`.
pub(super) fn criu(problems: &mut Vec<Problem>) -> Criu {
    let (info, binary) = match CriuBinary::locate(None) {
        Ok(b) => (
            CriuInfo {
                path: Some(b.path.display().to_string()),
                version: Some(b.version.to_string()),
                ok: true,
            },
            Some(b),
        ),
        Err(e) => {
            problems.push(Problem::error(
                e.to_string(),
                "run scripts/install-deps.sh as root",
            ));
            let info = CriuInfo {
                path: None,
                version: None,
                ok: false,
            };
            (info, None)
        }
    };
    let basic = binary.as_ref().map(|b| b.check_basic());
    if let Some(p) = &basic {
        if !p.ok {
            problems.push(Problem::error(
                format!(
                    "'criu check' fails: {}",
                    p.detail.clone().unwrap_or_default()
                ),
                "run 'criu check' for details; the kernel lacks features CRIU needs",
            ));
        }
    }
    Criu {
        info,
        binary,
        check_ok: basic.as_ref().is_some_and(|p| p.ok),
    }
}

/// runc: where it is and its version.
pub(super) fn runc(problems: &mut Vec<Problem>) -> ToolInfo {
    let path = which("runc");
    let version = path.as_ref().and_then(|p| first_line(p, &["--version"]));
    if path.is_none() {
        problems.push(Problem::error(
            "runc is not installed",
            "run scripts/install-deps.sh as root",
        ));
    }
    ToolInfo {
        ok: path.is_some(),
        path,
        version,
    }
}

/// The kernel's release and cgroup mode.
pub(super) fn kernel() -> KernelInfo {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    KernelInfo {
        release,
        cgroup_mode: cgroup_mode(&mountinfo),
    }
}

/// Whether CRIU (if found) says the kernel has feature `name`.
fn criu_feature(criu: Option<&CriuBinary>, name: &str) -> bool {
    criu.map(|b| b.check_feature(name).ok).unwrap_or(false)
}

/// The kernel features the strategies need.
pub(super) fn features(
    criu: Option<&CriuBinary>,
    root: bool,
    problems: &mut Vec<Problem>,
) -> Features {
    let dirty_tracking = criu_feature(criu, "mem_dirty_track");
    let userfaultfd = criu_feature(criu, "uffd-noncoop");
    let pipe = pipe_max_size().unwrap_or(0);
    // Root can raise the pipe limit itself; ferry does so before a lazy restore.
    let lazy_pages = userfaultfd && (pipe >= PIPE_MAX_SIZE_NEEDED || root);
    let tcp_repair = tcp_repair_available();
    if !tcp_repair {
        problems.push(Problem::error(
            "TCP repair mode is not available",
            "run as root with CAP_NET_ADMIN; established connections cannot move without it",
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    Features {
        dirty_tracking,
        userfaultfd,
        lazy_pages,
        pipe_max_size: pipe,
        tcp_repair,
        checkpoint_non_root: has_cap_sys_resource(&status),
        process_memory_read: Path::new("/proc/self/pagemap").exists(),
    }
}

/// The back ends that can lock a container's network during a migration.
pub(super) fn network_lock(
    criu: Option<&CriuBinary>,
    problems: &mut Vec<Problem>,
) -> NetworkLockInfo {
    let iptables = which("iptables").is_some();
    let nftables = which("nft").is_some() && criu_feature(criu, "network_lock_nftables");
    if !iptables && !nftables {
        problems.push(Problem::error(
            "neither nftables nor iptables is usable to lock a container's network",
            "run scripts/install-deps.sh as root",
        ));
    }
    NetworkLockInfo {
        iptables,
        nftables,
        preferred: if nftables {
            Some("nftables".into())
        } else if iptables {
            Some("iptables".into())
        } else {
            None
        },
    }
}

/// The container engines ferry moves containers of, and what it does with each.
pub(super) fn engines(runc: &ToolInfo, details: &[super::StrategyInfo]) -> Vec<super::EngineInfo> {
    let supported = |except: &[&str]| -> Vec<String> {
        details
            .iter()
            .filter(|d| d.supported && d.implemented && !except.contains(&d.name.as_str()))
            .map(|d| d.name.clone())
            .collect()
    };
    let podman = which("podman");
    let podman_version = podman
        .as_ref()
        .and_then(|p| first_line(p, &["version", "--format", "{{.Client.Version}}"]));
    let docker = which("dockerd");
    let docker_version = docker.as_ref().and_then(|p| first_line(p, &["--version"]));
    vec![
        super::EngineInfo {
            name: "runc".into(),
            version: runc.version.clone(),
            found: runc.ok,
            strategies: supported(&[]),
            note: "ferry's own containers, and any other in the agent's runc root (docs/engines.md)".into(),
        },
        super::EngineInfo {
            name: "podman".into(),
            found: podman.is_some(),
            strategies: match podman {
                Some(_) => supported(&["postcopy", "hybrid"]),
                None => Vec::new(),
            },
            version: podman_version,
            note: "rootful, with runc; restored by 'podman container restore --import', which takes complete images only: no post-copy or hybrid".into(),
        },
        super::EngineInfo {
            name: "docker".into(),
            found: docker.is_some(),
            strategies: match docker {
                Some(_) => supported(&["postcopy", "hybrid"]),
                None => Vec::new(),
            },
            version: docker_version,
            note: docker_note(),
        },
    ]
}

/// How ferry restores Docker's containers, and whether the system's daemon is set up
/// for it (its configuration file; a daemon started otherwise says so itself).
fn docker_note() -> String {
    let conf = std::fs::read_to_string("/etc/docker/daemon.json").unwrap_or_default();
    let compact: String = conf.chars().filter(|c| !c.is_whitespace()).collect();
    let experimental = compact.contains("\"experimental\":true");
    let base = "with its containerd and runc; restored by 'docker start --checkpoint', which takes complete images only: no post-copy or hybrid";
    match experimental {
        true => base.to_string(),
        false => format!("{base}; its experimental features are off in /etc/docker/daemon.json, and the system's daemon refuses to start from a checkpoint without them (scripts/install-deps.sh turns them on)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_modes() {
        let hybrid = "1 0 0:1 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n2 0 0:2 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_mode(hybrid), "hybrid");
        assert_eq!(
            cgroup_mode("2 0 0:2 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            "v2"
        );
        assert_eq!(
            cgroup_mode("1 0 0:1 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            "v1"
        );
    }

    #[test]
    fn reads_cap_sys_resource_from_status() {
        assert!(has_cap_sys_resource("Name: x\nCapEff:\t000001ffffffffff\n"));
        assert!(!has_cap_sys_resource("CapEff:\t000001fffeffffff\n"));
        assert!(!has_cap_sys_resource(""));
    }
}
