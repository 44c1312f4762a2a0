//! The human form of the report.

use super::DoctorReport;

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
    let _ = writeln!(s, "engines:");
    for e in &r.engines {
        let moves = match (e.found, e.strategies.is_empty()) {
            (false, _) => "not installed".to_string(),
            (true, true) => "not moved".to_string(),
            (true, false) => format!("moved by {}", e.strategies.join(", ")),
        };
        let _ = writeln!(
            s,
            "  {:<9} {:<12} {moves}",
            e.name,
            e.version.as_deref().unwrap_or("-")
        );
    }
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
    use crate::doctor::{
        CriuInfo, Features, KernelInfo, NetworkLockInfo, Problem, StrategyInfo, ToolInfo,
    };

    #[test]
    fn a_line_per_probe_then_strategies_problems_and_the_verdict() {
        let r = DoctorReport {
            ok: false,
            criu: CriuInfo {
                path: None,
                version: None,
                ok: false,
            },
            runc: ToolInfo {
                path: Some("/usr/sbin/runc".into()),
                version: Some("runc version 1.1.5".into()),
                ok: true,
            },
            kernel: KernelInfo {
                release: "6.1.0".into(),
                cgroup_mode: "v2".into(),
            },
            features: Features {
                dirty_tracking: true,
                userfaultfd: false,
                lazy_pages: false,
                pipe_max_size: 1048576,
                tcp_repair: true,
                checkpoint_non_root: true,
                process_memory_read: true,
            },
            engines: vec![crate::doctor::EngineInfo {
                name: "podman".into(),
                version: Some("4.3.1".into()),
                found: true,
                strategies: vec!["cold".into(), "precopy".into()],
                note: String::new(),
            }],
            network_lock: NetworkLockInfo {
                iptables: true,
                nftables: false,
                preferred: Some("iptables".into()),
            },
            strategies: vec![],
            strategy_details: vec![StrategyInfo {
                name: "cold".into(),
                supported: false,
                implemented: true,
                reason: "CRIU, runc or TCP repair is missing (see problems)".into(),
            }],
            problems: vec![Problem::error(
                "CRIU is missing",
                "run scripts/install-deps.sh as root",
            )],
        };
        assert_eq!(
            render(&r),
            "CRIU         missing \n\
             runc         runc version 1.1.5\n\
             kernel       6.1.0 (cgroup v2)\n\
             dirty tracking (soft-dirty)   yes\n\
             userfaultfd                   no\n\
             lazy pages                    no (fs.pipe-max-size 1048576)\n\
             TCP repair                    yes\n\
             network lock                  iptables yes, nftables no\n\
             checkpoint non-root processes yes\n\
             engines:\n  \
             podman    4.3.1        moved by cold, precopy\n\
             strategies:\n  \
             cold      no   CRIU, runc or TCP repair is missing (see problems)\n\
             error: CRIU is missing\n  \
             fix: run scripts/install-deps.sh as root\n\
             this host is NOT ready for ferry\n"
        );
    }
}
