//! `ferry doctor`: what this host can do, and how to fix what it cannot.

use std::path::Path;
use std::process::Command;

use ferry_criu::features::{pipe_max_size, CriuBinary, PIPE_MAX_SIZE_NEEDED};
use serde::Serialize;

/// The whole answer. Its JSON form is documented in `docs/doctor.md`.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// False when something required is missing.
    pub ok: bool,
    pub criu: CriuInfo,
    pub runc: ToolInfo,
    pub kernel: KernelInfo,
    pub features: Features,
    pub network_lock: NetworkLockInfo,
    /// Strategies this host supports.
    pub strategies: Vec<String>,
    /// Every strategy, with why it is or is not available.
    pub strategy_details: Vec<StrategyInfo>,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CriuInfo {
    pub path: Option<String>,
    pub version: Option<String>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    pub path: Option<String>,
    pub version: Option<String>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    pub release: String,
    /// `v1`, `v2` or `hybrid`.
    pub cgroup_mode: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Features {
    /// Soft-dirty memory tracking (CRIU's pre-dump needs it).
    pub dirty_tracking: bool,
    pub userfaultfd: bool,
    /// CRIU lazy pages (post-copy) work here.
    pub lazy_pages: bool,
    pub pipe_max_size: u64,
    pub tcp_repair: bool,
    /// Whether processes that do not run as root can be checkpointed (needs
    /// CAP_SYS_RESOURCE).
    pub checkpoint_non_root: bool,
    /// Whether ferry can read a running process's memory (its own pre-copy needs it).
    pub process_memory_read: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkLockInfo {
    pub iptables: bool,
    pub nftables: bool,
    /// The back end ferry uses.
    pub preferred: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategyInfo {
    pub name: String,
    /// The host has what the strategy needs.
    pub supported: bool,
    /// This ferry build implements the strategy.
    pub implemented: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `error` blocks every migration; `warning` limits some.
    pub severity: String,
    pub what: String,
    pub fix: String,
}

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
fn has_cap_sys_resource(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// Probes this host.
pub fn run() -> DoctorReport {
    let mut problems = Vec::new();
    let mut err = |what: String, fix: &str| {
        problems.push(Problem {
            severity: "error".into(),
            what,
            fix: fix.into(),
        });
    };

    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        err(
            "ferry runs as a normal user".into(),
            "run ferry as root (CRIU, runc and network namespaces need it)",
        );
    }

    let criu_bin = CriuBinary::locate(None);
    let criu = match &criu_bin {
        Ok(b) => CriuInfo {
            path: Some(b.path.display().to_string()),
            version: Some(b.version.to_string()),
            ok: true,
        },
        Err(e) => {
            err(e.to_string(), "run scripts/install-deps.sh as root");
            CriuInfo {
                path: None,
                version: None,
                ok: false,
            }
        }
    };
    let basic = criu_bin.as_ref().ok().map(|b| b.check_basic());
    if let Some(p) = &basic {
        if !p.ok {
            err(
                format!(
                    "'criu check' fails: {}",
                    p.detail.clone().unwrap_or_default()
                ),
                "run 'criu check' for details; the kernel lacks features CRIU needs",
            );
        }
    }

    let runc_path = which("runc");
    let runc_version = runc_path
        .as_ref()
        .and_then(|p| first_line(p, &["--version"]));
    if runc_path.is_none() {
        err(
            "runc is not installed".into(),
            "run scripts/install-deps.sh as root",
        );
    }
    let runc = ToolInfo {
        ok: runc_path.is_some(),
        path: runc_path,
        version: runc_version,
    };

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let kernel = KernelInfo {
        release,
        cgroup_mode: cgroup_mode(&mountinfo),
    };

    let feature = |name: &str| {
        criu_bin
            .as_ref()
            .map(|b| b.check_feature(name).ok)
            .unwrap_or(false)
    };
    let dirty_tracking = feature("mem_dirty_track");
    let userfaultfd = feature("uffd-noncoop");
    let pipe = pipe_max_size().unwrap_or(0);
    // Root can raise the pipe limit itself; ferry does so before a lazy restore.
    let lazy_pages = userfaultfd && (pipe >= PIPE_MAX_SIZE_NEEDED || root);
    let tcp_repair = tcp_repair_available();
    if !tcp_repair {
        err(
            "TCP repair mode is not available".into(),
            "run as root with CAP_NET_ADMIN; established connections cannot move without it",
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let checkpoint_non_root = has_cap_sys_resource(&status);
    let process_memory_read = Path::new("/proc/self/pagemap").exists();
    let features = Features {
        dirty_tracking,
        userfaultfd,
        lazy_pages,
        pipe_max_size: pipe,
        tcp_repair,
        checkpoint_non_root,
        process_memory_read,
    };

    let iptables = which("iptables").is_some();
    let nftables = which("nft").is_some() && feature("network_lock_nftables");
    if !iptables && !nftables {
        err(
            "neither nftables nor iptables is usable to lock a container's network".into(),
            "run scripts/install-deps.sh as root",
        );
    }
    let network_lock = NetworkLockInfo {
        iptables,
        nftables,
        preferred: if nftables {
            Some("nftables".into())
        } else if iptables {
            Some("iptables".into())
        } else {
            None
        },
    };

    let base_ok = criu.ok && runc.ok && root && tcp_repair && basic.as_ref().is_some_and(|p| p.ok);
    let mut details = vec![StrategyInfo {
        name: "cold".into(),
        supported: base_ok,
        implemented: true,
        reason: if base_ok {
            "checkpoint, stream and restore with CRIU".into()
        } else {
            "CRIU, runc or TCP repair is missing (see problems)".into()
        },
    }];
    let pre_reason = if !base_ok {
        "cold migration is not available".to_string()
    } else if dirty_tracking {
        "ferry's content-addressed rounds (they need no soft-dirty bits)".to_string()
    } else {
        "ferry's content-addressed rounds (this kernel has no soft-dirty bits, so CRIU's own pre-dump cannot run; ferry does not need them)".to_string()
    };
    details.push(StrategyInfo {
        name: "precopy".into(),
        supported: base_ok && process_memory_read,
        implemented: true,
        reason: pre_reason,
    });
    let post_ok = base_ok && lazy_pages;
    let post_reason = if !base_ok {
        "cold migration is not available".to_string()
    } else if !userfaultfd {
        "the kernel has no usable userfaultfd (criu check --feature uffd-noncoop fails)".to_string()
    } else if pipe < PIPE_MAX_SIZE_NEEDED {
        format!("CRIU lazy pages over userfaultfd; ferry raises fs.pipe-max-size from {pipe} to {PIPE_MAX_SIZE_NEEDED} when it needs to")
    } else {
        "CRIU lazy pages over userfaultfd".to_string()
    };
    details.push(StrategyInfo {
        name: "postcopy".into(),
        supported: post_ok,
        implemented: true,
        reason: post_reason,
    });
    let hybrid_ok = post_ok && process_memory_read;
    details.push(StrategyInfo {
        name: "hybrid".into(),
        supported: hybrid_ok,
        implemented: true,
        reason: if hybrid_ok {
            "pre-copy rounds, then post-copy for the rest".into()
        } else {
            "needs both pre-copy and post-copy".into()
        },
    });
    for d in &mut details {
        d.implemented = ferry_types::Strategy::ALL
            .iter()
            .any(|s| s.name() == d.name);
        if !d.implemented {
            d.reason
                .push_str(" (not implemented in this ferry version yet)");
        }
    }
    let strategies = details
        .iter()
        .filter(|d| d.supported)
        .map(|d| d.name.clone())
        .collect();

    if !checkpoint_non_root && root {
        problems.push(Problem {
            severity: "warning".into(),
            what: "root lacks CAP_SYS_RESOURCE, so only containers whose processes run as root can be checkpointed".into(),
            fix: "run containers' processes as root, or run ferry where root has CAP_SYS_RESOURCE".into(),
        });
    }
    if !dirty_tracking {
        problems.push(Problem {
            severity: "warning".into(),
            what: "no soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY)".into(),
            fix: "nothing to do: ferry's pre-copy does not need it".into(),
        });
    }
    let ok = !problems.iter().any(|p| p.severity == "error");
    DoctorReport {
        ok,
        criu,
        runc,
        kernel,
        features,
        network_lock,
        strategies,
        strategy_details: details,
        problems,
    }
}

/// The human form.
pub fn render(r: &DoctorReport) -> String {
    use std::fmt::Write as _;
    let yn = |b: bool| if b { "yes" } else { "no" };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "CRIU         {} {}",
        r.criu.version.as_deref().unwrap_or("missing"),
        r.criu.path.as_deref().unwrap_or("")
    );
    let _ = writeln!(
        s,
        "runc         {}",
        r.runc.version.as_deref().unwrap_or("missing")
    );
    let _ = writeln!(
        s,
        "kernel       {} (cgroup {})",
        r.kernel.release, r.kernel.cgroup_mode
    );
    let _ = writeln!(
        s,
        "dirty tracking (soft-dirty)   {}",
        yn(r.features.dirty_tracking)
    );
    let _ = writeln!(
        s,
        "userfaultfd                   {}",
        yn(r.features.userfaultfd)
    );
    let _ = writeln!(
        s,
        "lazy pages                    {} (fs.pipe-max-size {})",
        yn(r.features.lazy_pages),
        r.features.pipe_max_size
    );
    let _ = writeln!(
        s,
        "TCP repair                    {}",
        yn(r.features.tcp_repair)
    );
    let _ = writeln!(
        s,
        "network lock                  iptables {}, nftables {}",
        yn(r.network_lock.iptables),
        yn(r.network_lock.nftables)
    );
    let _ = writeln!(
        s,
        "checkpoint non-root processes {}",
        yn(r.features.checkpoint_non_root)
    );
    let _ = writeln!(s, "strategies:");
    for d in &r.strategy_details {
        let _ = writeln!(
            s,
            "  {:<9} {:<4} {}",
            d.name,
            yn(d.supported && d.implemented),
            d.reason
        );
    }
    for p in &r.problems {
        let _ = writeln!(s, "{}: {}\n  fix: {}", p.severity, p.what, p.fix);
    }
    let _ = writeln!(
        s,
        "{}",
        if r.ok {
            "this host is ready for ferry"
        } else {
            "this host is NOT ready for ferry"
        }
    );
    s
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
