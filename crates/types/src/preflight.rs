//! The preflight: what ferry learned about a container and both hosts before freezing
//! anything, and what it will do about each finding.

use serde::{Deserialize, Serialize};

use crate::Strategy;

/// One process of a container, as the source reads it from `/proc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFacts {
    pub pid: u32,
    pub comm: String,
    /// Real uid.
    pub uid: u32,
    /// File locks it holds (`/proc/locks`).
    pub file_locks: u32,
    /// It has an io_uring instance open.
    pub io_uring: bool,
    /// Its address space (`VmSize`), bytes.
    pub vm_size: u64,
    /// Its largest writable private mapping (charged against the commit limit), bytes.
    pub largest_mapping: u64,
    /// Its largest private reservation that cannot be written (charged nothing), bytes.
    #[serde(default)]
    pub largest_reservation: u64,
    /// Resident memory (`VmRSS`), bytes.
    pub rss: u64,
    /// Pipes and UNIX sockets that lead to processes outside the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<String>,
    /// Devices it holds open beyond a container's standard ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

/// What a host can take, as it says of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub name: String,
    /// CRIU's version, if a usable one is there.
    pub criu_version: Option<String>,
    /// Lazy pages (userfaultfd) work there.
    pub lazy_pages: bool,
    /// Whether root there can read other users' resource limits.
    pub cap_sys_resource: bool,
    /// `vm.overcommit_memory`: 0 heuristic, 1 always, 2 never.
    pub overcommit_memory: u8,
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    /// CRIU's cpuinfo check against the source's CPU: `None` when not checked, `Some("")`
    /// when compatible, else CRIU's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_check: Option<String>,
    /// Of the paths the source asked about (what the container bind-mounts), those this
    /// host lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_paths: Vec<String>,
}

/// What ferry does about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// ferry enables what CRIU needs by itself.
    Enable,
    /// ferry will not move the container: nothing is frozen.
    Refuse,
    /// Worth knowing; the move goes ahead.
    Note,
}

/// One finding, with the sentence a user reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub action: Action,
    /// What the finding is about (`process 12 (postgres)`, `host b`).
    pub subject: String,
    pub sentence: String,
}

/// Whether a strategy fits, and why (not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyFit {
    pub strategy: Strategy,
    pub fits: bool,
    pub why: String,
}

/// The preflight's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preflight {
    pub container: String,
    pub source: String,
    /// The destination, when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    pub processes: Vec<ProcessFacts>,
    pub findings: Vec<Finding>,
    pub strategies: Vec<StrategyFit>,
}

impl Preflight {
    /// The first refusal, if any: the sentence a refused migration ends with.
    pub fn refusal(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.action == Action::Refuse)
    }

    /// Whether ferry will checkpoint file locks.
    pub fn needs_file_locks(&self) -> bool {
        self.processes.iter().any(|p| p.file_locks > 0)
    }

    pub fn fit(&self, s: Strategy) -> Option<&StrategyFit> {
        self.strategies.iter().find(|f| f.strategy == s)
    }

    /// A short table for people.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let dest = self
            .destination
            .as_deref()
            .map_or(String::new(), |d| format!(" -> {d}"));
        let verdict = match self.refusal() {
            Some(_) => "refused",
            None => "can move",
        };
        let _ = writeln!(
            s,
            "ferry check {}  {}{dest}  {verdict}",
            self.container, self.source
        );
        for f in &self.findings {
            let what = match f.action {
                Action::Enable => "enable",
                Action::Refuse => "refuse",
                Action::Note => "note",
            };
            let _ = writeln!(s, "  {what:<7}{}: {}", f.subject, f.sentence);
        }
        if self.refusal().is_some() {
            let _ = writeln!(s, "  once the refusal is resolved:");
        }
        for f in &self.strategies {
            let mark = if f.fits { "fits" } else { "no" };
            let _ = writeln!(s, "  {:<9}{mark:<5}{}", f.strategy.name(), f.why);
        }
        s
    }
}
