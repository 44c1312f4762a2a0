//! `ferry doctor`: what this host can do, and how to fix what it cannot.
//!
//! [`run`] probes CRIU, runc, the kernel and the network-lock back ends (`probe.rs`),
//! then tells which strategies the host supports (`strategies.rs`); [`render`] is the
//! human form (`render.rs`).

pub(crate) mod probe;
mod render;
mod strategies;

use serde::Serialize;

pub use probe::{cgroup_mode, tcp_repair_available};
pub use render::render;

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
    /// The container engines found, and what ferry does with each.
    pub engines: Vec<EngineInfo>,
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

/// A container engine: whether it is here, and which strategies move its containers.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub name: String,
    pub version: Option<String>,
    pub found: bool,
    /// The strategies that move its containers on this host.
    pub strategies: Vec<String>,
    pub note: String,
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

impl Problem {
    /// Something that blocks every migration.
    fn error(what: impl Into<String>, fix: &str) -> Self {
        Problem {
            severity: "error".into(),
            what: what.into(),
            fix: fix.into(),
        }
    }

    /// Something that limits some migrations.
    fn warning(what: &str, fix: &str) -> Self {
        Problem {
            severity: "warning".into(),
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// Probes this host.
pub fn run() -> DoctorReport {
    let mut problems = Vec::new();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        problems.push(Problem::error(
            "ferry runs as a normal user",
            "run ferry as root (CRIU, runc and network namespaces need it)",
        ));
    }
    let criu = probe::criu(&mut problems);
    let runc = probe::runc(&mut problems);
    let kernel = probe::kernel();
    let features = probe::features(criu.binary.as_ref(), root, &mut problems);
    let network_lock = probe::network_lock(criu.binary.as_ref(), &mut problems);

    let base_ok = criu.info.ok && runc.ok && root && features.tcp_repair && criu.check_ok;
    let details = strategies::details(base_ok, &features);
    let strategies = details
        .iter()
        .filter(|d| d.supported)
        .map(|d| d.name.clone())
        .collect();

    if !features.checkpoint_non_root && root {
        problems.push(Problem::warning(
            "root lacks CAP_SYS_RESOURCE, so only containers whose processes run as root can be checkpointed",
            "run containers' processes as root, or run ferry where root has CAP_SYS_RESOURCE",
        ));
    }
    if !features.dirty_tracking {
        problems.push(Problem::warning(
            "no soft-dirty memory tracking (CONFIG_MEM_SOFT_DIRTY)",
            "nothing to do: ferry's pre-copy does not need it",
        ));
    }
    let ok = !problems.iter().any(|p| p.severity == "error");
    let engines = probe::engines(&runc, &details);
    DoctorReport {
        ok,
        criu: criu.info,
        runc,
        kernel,
        features,
        network_lock,
        engines,
        strategies,
        strategy_details: details,
        problems,
    }
}
