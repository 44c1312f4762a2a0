//! What ferry holds on each lab host, counted, so that leftovers show (a soak must end
//! with what it started with).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::state::{LabHost, LabState};

/// Counts of what a host's agent and its containers hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// Open file descriptors of the agent process.
    pub agent_fds: usize,
    /// Network namespaces of the host's containers and pods.
    pub netns: usize,
    /// Mounts under the host's state directory (its image tmpfs).
    pub mounts: usize,
    /// Container cgroups the host's agent made.
    pub cgroups: usize,
    /// Migration sessions with files in the image tmpfs.
    pub sessions: usize,
    /// nftables tables in the host's own namespace.
    pub nft_tables: usize,
    /// iptables rules in the host's own namespace.
    pub iptables_rules: usize,
}

fn count_dir(path: &std::path::Path, keep: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| keep(&e.file_name().to_string_lossy()))
                .count()
        })
        .unwrap_or(0)
}

fn lines_of(netns: &str, cmd: &[&str], keep: impl Fn(&str) -> bool) -> usize {
    std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(cmd)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| keep(l))
                .count()
        })
        .unwrap_or(0)
}

/// Counts what host `h` of `lab` holds.
pub fn of_host(lab: &LabState, h: &LabHost) -> Resources {
    let prefix = format!("ferry-{}-{}-", lab.name, h.name);
    let state = h.state_dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&state)))
                .count()
        })
        .unwrap_or(0);
    Resources {
        agent_fds: h
            .agent_pid
            .map(|p| {
                count_dir(
                    &std::path::Path::new("/proc").join(p.to_string()).join("fd"),
                    |_| true,
                )
            })
            .unwrap_or(0),
        netns: count_dir(std::path::Path::new("/run/netns"), |n| {
            n.starts_with(&prefix)
        }),
        mounts,
        cgroups: cgroup_dirs(&format!("ferry-{}-{}", lab.name, h.name))
            .first()
            .map_or(0, |d| subdirs(d).len()),
        sessions: count_dir(&h.state_dir.join("images"), |n| {
            n.starts_with("in-") || n.starts_with("out-")
        }),
        nft_tables: lines_of(&h.netns, &["nft", "list", "tables"], |l| {
            l.starts_with("table")
        }),
        iptables_rules: lines_of(&h.netns, &["iptables-save"], |l| l.starts_with('-')),
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The cgroup directories an agent with namespace prefix `prefix` puts its containers
/// under (`/ferry/PREFIX/NAME`): one on cgroup v2, one per controller on v1. The freezer's
/// comes first on v1.
pub fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        let d = root.join("ferry").join(prefix);
        return if d.is_dir() { vec![d] } else { Vec::new() };
    }
    let mut out: Vec<PathBuf> = subdirs(root)
        .into_iter()
        .map(|c| c.join("ferry").join(prefix))
        .filter(|d| d.is_dir())
        .collect();
    out.sort_by_key(|d| !d.starts_with(root.join("freezer")));
    out
}

/// Removes an empty cgroup tree, deepest first (a cgroup with processes stays).
pub fn remove_cgroup_tree(dir: &Path) {
    for d in subdirs(dir) {
        remove_cgroup_tree(&d);
    }
    let _ = std::fs::remove_dir(dir);
}
