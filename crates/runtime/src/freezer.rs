//! Freezing a container's cgroup, polling every millisecond.
//!
//! CRIU freezes a running container itself, but polls the cgroup-v1 freezer in 100 ms
//! steps, so a busy container often costs 100 ms of extra downtime. When ferry freezes
//! the cgroup first, CRIU finds it frozen, dumps it as it is, and leaves it frozen.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::RuntimeError;

/// A container's freezer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freezer {
    /// cgroup v1: `freezer.state` of the container's freezer cgroup.
    V1 { state: PathBuf },
    /// cgroup v2: `cgroup.freeze` and `cgroup.events` of the container's cgroup.
    V2 { freeze: PathBuf, events: PathBuf },
}

/// How long a freeze may take before ferry gives up.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

impl Freezer {
    /// The freezer of the cgroup `pid` lives in.
    pub fn for_pid(pid: u32) -> Result<Self, RuntimeError> {
        let cgroup_path = format!("/proc/{pid}/cgroup");
        let cgroups =
            std::fs::read_to_string(&cgroup_path).map_err(|e| RuntimeError::io(&cgroup_path, e))?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| RuntimeError::io("/proc/self/mountinfo", e))?;
        Self::resolve(&cgroups, &mountinfo)
    }

    /// The freezer of the cgroup at `rel` (a container's `cgroupsPath`), whether or not
    /// any process is in it yet.
    pub fn for_cgroup(rel: &str) -> Result<Self, RuntimeError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| RuntimeError::io("/proc/self/mountinfo", e))?;
        let v1 = format!("1:freezer:{rel}\n");
        let v2 = format!("0::{rel}\n");
        Self::resolve(&v1, &mountinfo).or_else(|_| Self::resolve(&v2, &mountinfo))
    }

    /// Pure part of [`Freezer::for_pid`]: from `/proc/PID/cgroup` and mountinfo.
    pub fn resolve(cgroups: &str, mountinfo: &str) -> Result<Self, RuntimeError> {
        let mut v2_rel = None;
        for line in cgroups.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, rel) = match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), Some(c)) => (a, b, c),
                _ => continue,
            };
            if ctrls.split(',').any(|c| c == "freezer") {
                let mount = mount_point(mountinfo, |fstype, opts| {
                    fstype == "cgroup" && opts.split(',').any(|o| o == "freezer")
                })
                .ok_or_else(|| RuntimeError::Freezer("no cgroup-v1 freezer mount".into()))?;
                return Ok(Freezer::V1 {
                    state: join_cgroup(&mount, rel).join("freezer.state"),
                });
            }
            if ctrls.is_empty() {
                v2_rel = Some(rel.to_string());
            }
        }
        let rel = v2_rel
            .ok_or_else(|| RuntimeError::Freezer("the process is in no freezer cgroup".into()))?;
        let mount = mount_point(mountinfo, |fstype, _| fstype == "cgroup2")
            .ok_or_else(|| RuntimeError::Freezer("no cgroup2 mount".into()))?;
        let dir = join_cgroup(&mount, &rel);
        Ok(Freezer::V2 {
            freeze: dir.join("cgroup.freeze"),
            events: dir.join("cgroup.events"),
        })
    }

    fn write(path: &Path, value: &str) -> Result<(), RuntimeError> {
        std::fs::write(path, value).map_err(|e| RuntimeError::io(path, e))
    }

    /// Whether every task of the cgroup is frozen.
    pub fn is_frozen(&self) -> Result<bool, RuntimeError> {
        match self {
            Freezer::V1 { state } => {
                let s = std::fs::read_to_string(state).map_err(|e| RuntimeError::io(state, e))?;
                Ok(s.trim() == "FROZEN")
            }
            Freezer::V2 { events, .. } => {
                let s = std::fs::read_to_string(events).map_err(|e| RuntimeError::io(events, e))?;
                Ok(s.lines().any(|l| l.trim() == "frozen 1"))
            }
        }
    }

    /// Freezes the cgroup and waits until it is frozen, with no process caught in the
    /// middle of a vfork. Returns how long that took.
    ///
    /// A process that called vfork waits in the kernel until its child execs. CRIU stops
    /// the child first, so that parent never stops and the dump times out after 10 s. A
    /// shell running commands in a loop is caught like this about once in a hundred
    /// freezes; thawing for a moment lets the child exec, and the freeze is tried again.
    pub fn freeze(&self) -> Result<Duration, RuntimeError> {
        let start = Instant::now();
        loop {
            self.freeze_until(start)?;
            let Some(tid) = self.tasks().into_iter().find(|&t| in_vfork(t)) else {
                return Ok(start.elapsed());
            };
            self.thaw()?;
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(RuntimeError::Freezer(format!(
                    "process {tid} of the container stayed inside a vfork for {FREEZE_TIMEOUT:?}, and CRIU cannot dump a process there; it was thawed again, try again once its child has started"
                )));
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    fn freeze_until(&self, start: Instant) -> Result<(), RuntimeError> {
        let mut last_write = Instant::now();
        self.request_freeze()?;
        loop {
            if self.is_frozen()? {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                let _ = self.thaw();
                return Err(RuntimeError::Freezer(format!(
                    "the container did not freeze within {FREEZE_TIMEOUT:?}; it was thawed again"
                )));
            }
            // A v1 freezer can get stuck in FREEZING when tasks fork meanwhile; asking
            // again makes it retry.
            if last_write.elapsed() > Duration::from_millis(5) {
                self.request_freeze()?;
                last_write = Instant::now();
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn request_freeze(&self) -> Result<(), RuntimeError> {
        match self {
            Freezer::V1 { state } => Self::write(state, "FROZEN"),
            Freezer::V2 { freeze, .. } => Self::write(freeze, "1"),
        }
    }

    /// The processes in the cgroup.
    pub fn procs(&self) -> Vec<u32> {
        self.ids("cgroup.procs", "cgroup.procs")
    }

    /// The threads in the cgroup.
    fn tasks(&self) -> Vec<u32> {
        self.ids("tasks", "cgroup.threads")
    }

    /// The numbers listed in a file of the cgroup: `v1` or `v2` by its version.
    fn ids(&self, v1: &str, v2: &str) -> Vec<u32> {
        let file = match self {
            Freezer::V1 { state } => state.with_file_name(v1),
            Freezer::V2 { freeze, .. } => freeze.with_file_name(v2),
        };
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn thaw(&self) -> Result<(), RuntimeError> {
        match self {
            Freezer::V1 { state } => Self::write(state, "THAWED"),
            Freezer::V2 { freeze, .. } => Self::write(freeze, "0"),
        }
    }
}

/// Whether thread `tid` waits inside a vfork for its child to exec or exit.
fn in_vfork(tid: u32) -> bool {
    let wchan = std::fs::read_to_string(format!("/proc/{tid}/wchan")).unwrap_or_default();
    // Read on the downtime's path, once per thread: the syscall only where it decides.
    waits_for_vfork_child(&wchan, || {
        std::fs::read_to_string(format!("/proc/{tid}/syscall")).unwrap_or_default()
    })
}

/// Pure part of [`in_vfork`]: the kernel function a thread sleeps in, and its syscall line.
/// The wait for a vfork child is inlined into `kernel_clone`; where symbol names are
/// hidden (`0`), the vfork syscall itself still tells.
fn waits_for_vfork_child(wchan: &str, syscall: impl FnOnce() -> String) -> bool {
    const VFORK: &str = if cfg!(target_arch = "x86_64") {
        "58"
    } else {
        ""
    };
    let wchan = wchan.trim();
    wchan == "kernel_clone"
        || ((wchan.is_empty() || wchan == "0")
            && !VFORK.is_empty()
            && syscall().split(' ').next() == Some(VFORK))
}

fn join_cgroup(mount: &Path, rel: &str) -> PathBuf {
    mount.join(rel.trim_start_matches('/'))
}

/// The mount point of the first mount whose filesystem type and super options match.
fn mount_point(mountinfo: &str, want: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        let (pre, post) = line.split_once(" - ")?;
        let mount = pre.split(' ').nth(4)?;
        let mut post = post.split(' ');
        let fstype = post.next()?;
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        if want(fstype, opts) {
            return Some(PathBuf::from(mount));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
36 30 0:32 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
37 30 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    #[test]
    fn a_thread_inside_a_vfork_is_recognised() {
        let vfork = || "58 0x55cc1a26b166 0x7fffbcaa47a8 0x0 0x0 0x0 0x7fff 0x7f4b".to_string();
        assert!(waits_for_vfork_child("kernel_clone", vfork));
        assert!(waits_for_vfork_child("kernel_clone", String::new));
        assert!(!waits_for_vfork_child("do_wait", || "61 0x1 0x2 0x3 0x0".to_string()));
        assert!(!waits_for_vfork_child("__refrigerator", || "running".to_string()));
        if cfg!(target_arch = "x86_64") {
            assert!(waits_for_vfork_child("0", vfork));
        }
        assert!(!waits_for_vfork_child("0", || "0 0x1 0x2".to_string()));
    }

    #[test]
    fn hybrid_hosts_use_the_v1_freezer() {
        let cg = "12:pids:/r1\n7:freezer:/r1\n0::/r1\n";
        assert_eq!(
            Freezer::resolve(cg, MOUNTINFO).unwrap(),
            Freezer::V1 {
                state: "/sys/fs/cgroup/freezer/r1/freezer.state".into()
            }
        );
    }

    #[test]
    fn pure_v2_hosts_use_cgroup_freeze() {
        let mi = "37 1 0:33 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let f = Freezer::resolve("0::/system.slice/x\n", mi).unwrap();
        assert_eq!(
            f,
            Freezer::V2 {
                freeze: "/sys/fs/cgroup/system.slice/x/cgroup.freeze".into(),
                events: "/sys/fs/cgroup/system.slice/x/cgroup.events".into()
            }
        );
    }

    #[test]
    fn a_v1_freezer_file_is_frozen_and_thawed() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("freezer.state");
        std::fs::write(&state, "THAWED\n").unwrap();
        let f = Freezer::V1 {
            state: state.clone(),
        };
        assert!(!f.is_frozen().unwrap());
        // A regular file reads back what was written: this checks the writes, not the kernel.
        f.freeze().unwrap();
        assert!(f.is_frozen().unwrap());
        f.thaw().unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "THAWED");
    }
}
