//! A memory bound for CRIU: its own cgroup with a limit, so that a dump that needs more
//! memory than the host can spare is killed by the kernel (inside that cgroup), never
//! the container it dumps or anything else on the host.
//!
//! Works with the unified hierarchy (cgroup v2, `memory.max`) and with the v1 memory
//! controller (`memory.limit_in_bytes`). The cgroup is `ferry-helpers/NAME` under the
//! memory controller's root; processes join it before they exec.
//!
//! Better than a kill by the kernel is a stop by ferry at a moment of its choosing: a
//! CRIU killed mid-dump leaves the container's processes running (CRIU holds them by
//! ptrace alone once it has them) with their connections in TCP repair mode. So CRIU is
//! held at the limit instead: under v1 the bound's OOM killer is disabled (a helper at
//! the limit waits), under v2 `memory.high` throttles it before `memory.max` kills it.
//! Whoever runs a helper watches [`MemoryBound::pressed`], freezes what must not run,
//! then [`MemoryBound::stop_all`].

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Where cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Error)]
pub enum BoundError {
    #[error("no cgroup memory controller is mounted under {CGROUP_ROOT}")]
    NoController,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BoundError + '_ {
    move |source| BoundError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hierarchy {
    V1,
    V2,
}

/// A cgroup whose processes share a memory limit.
#[derive(Debug)]
pub struct MemoryBound {
    dir: PathBuf,
    hierarchy: Hierarchy,
    limit: u64,
    /// Helpers ferry stopped at the limit.
    stops: std::sync::atomic::AtomicU64,
}

/// A value of `Key N` in a `memory.events` or `memory.oom_control` text.
fn counter(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn write(path: &Path, value: &str) -> Result<(), BoundError> {
    std::fs::write(path, value).map_err(io(path))
}

/// The memory controller's root, and which hierarchy it is.
fn controller(root: &Path) -> Option<(PathBuf, Hierarchy)> {
    let v2 = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if v2.split_whitespace().any(|c| c == "memory") {
        return Some((root.to_path_buf(), Hierarchy::V2));
    }
    let v1 = root.join("memory");
    v1.join("memory.limit_in_bytes")
        .exists()
        .then_some((v1, Hierarchy::V1))
}

/// `oom_kill N` of a `memory.events` (v2) or `memory.oom_control` (v1) text.
fn oom_kills_in(text: &str) -> u64 {
    counter(text, "oom_kill")
}

impl MemoryBound {
    /// Creates (or takes over) `ferry-helpers/NAME` with `limit` bytes.
    pub fn create(name: &str, limit: u64) -> Result<Self, BoundError> {
        Self::create_under(Path::new(CGROUP_ROOT), name, limit)
    }

    fn create_under(root: &Path, name: &str, limit: u64) -> Result<Self, BoundError> {
        let (base, hierarchy) = controller(root).ok_or(BoundError::NoController)?;
        let parent = base.join("ferry-helpers");
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        match hierarchy {
            Hierarchy::V2 => {
                // The controller must be enabled for the children of each level.
                let _ = std::fs::write(base.join("cgroup.subtree_control"), "+memory");
                let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory");
                // Throttled at the limit, killed by the kernel only well past it.
                write(&dir.join("memory.high"), &limit.to_string())?;
                let max = limit.saturating_add((limit / 2).max(64 << 20));
                write(&dir.join("memory.max"), &max.to_string())?;
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                // One OOM kill takes all of CRIU's processes, not a part of them.
                let _ = std::fs::write(dir.join("memory.oom.group"), "1");
            }
            Hierarchy::V1 => {
                write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                // A helper at the limit waits for ferry instead of being killed. Where
                // the kernel refuses, it kills as before.
                let _ = std::fs::write(dir.join("memory.oom_control"), "1");
            }
        }
        Ok(Self {
            dir,
            hierarchy,
            limit,
            stops: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn events(&self) -> String {
        let file = match self.hierarchy {
            Hierarchy::V2 => "memory.events",
            Hierarchy::V1 => "memory.oom_control",
        };
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// A mark to compare [`MemoryBound::pressed`] with: taken before a helper starts.
    pub fn pressure_mark(&self) -> u64 {
        match self.hierarchy {
            Hierarchy::V2 => counter(&self.events(), "high"),
            Hierarchy::V1 => 0,
        }
    }

    /// Whether a helper is held at the limit now (v1: it waits, `under_oom 1`; v2: it
    /// was throttled at `memory.high` since `mark`).
    pub fn pressed(&self, mark: u64) -> bool {
        let e = self.events();
        match self.hierarchy {
            Hierarchy::V2 => counter(&e, "high") > mark,
            Hierarchy::V1 => counter(&e, "under_oom") > 0,
        }
    }

    /// Kills every helper in the bound; returns how many.
    pub fn stop_all(&self) -> u32 {
        let procs = std::fs::read_to_string(self.procs_file()).unwrap_or_default();
        let mut n = 0;
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) on a process of ferry's own helper cgroup.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                n += 1;
            }
        }
        self.stops.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        n
    }

    /// Kills at the bound so far: the kernel's and ferry's ([`MemoryBound::stop_all`]).
    pub fn kills(&self) -> u64 {
        self.oom_kills() + self.stops.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How often a helper reached the limit so far (an allocation refused or held there,
    /// v1 `memory.failcnt`, v2 `max` events), kills included: a helper that failed after
    /// this grew failed for want of memory.
    pub fn hits(&self) -> u64 {
        let reached = match self.hierarchy {
            Hierarchy::V2 => counter(&self.events(), "max"),
            Hierarchy::V1 => std::fs::read_to_string(self.dir.join("memory.failcnt"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        };
        reached + self.kills()
    }

    /// The file a process writes `0` into to join the bound.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many processes the kernel killed in the bound so far.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.hierarchy {
            Hierarchy::V2 => "memory.events",
            Hierarchy::V1 => "memory.oom_control",
        };
        oom_kills_in(&std::fs::read_to_string(self.dir.join(file)).unwrap_or_default())
    }

    /// Removes the cgroup (it must be empty; a helper still running keeps it).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oom_kills_of_both_hierarchies() {
        let v2 = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(oom_kills_in(v2), 2);
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n";
        assert_eq!(oom_kills_in(v1), 5);
        assert_eq!(oom_kills_in(""), 0);
        assert_eq!(counter(v2, "high"), 0);
        assert_eq!(counter("oom_kill_disable 1\nunder_oom 1\n", "under_oom"), 1);
        assert_eq!(
            counter("oom_group_kill 4\n", "oom_kill"),
            0,
            "a whole key only"
        );
    }

    #[test]
    fn finds_the_memory_controller_of_either_hierarchy() {
        let d = tempfile::tempdir().unwrap();
        assert!(controller(d.path()).is_none());
        std::fs::create_dir_all(d.path().join("memory")).unwrap();
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "0").unwrap();
        assert_eq!(
            controller(d.path()),
            Some((d.path().join("memory"), Hierarchy::V1))
        );
        std::fs::write(d.path().join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        assert_eq!(
            controller(d.path()),
            Some((d.path().to_path_buf(), Hierarchy::V2))
        );
    }

    #[test]
    fn writes_the_limit_where_the_hierarchy_wants_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("memory")).unwrap();
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "0").unwrap();
        let b = MemoryBound::create_under(d.path(), "host-a", 64 << 20).unwrap();
        let dir = d.path().join("memory/ferry-helpers/host-a");
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(b.procs_file(), dir.join("cgroup.procs"));
        assert_eq!(b.oom_kills(), 0);
    }
}
