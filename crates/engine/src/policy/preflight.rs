//! The preflight's rules: from what `/proc` says of a container's processes and what
//! both hosts say of themselves, what ferry enables by itself, what it refuses before
//! freezing anything, and which strategies fit. Pure, so that every rule is tested on
//! facts without a container.

use ferry_types::{Action, Finding, HostFacts, Preflight, ProcessFacts, Strategy, StrategyFit};

use super::auto::needs_lazy_pages;

/// `1.5 GB`-style sizes, for sentences.
fn size(b: u64) -> String {
    ferry_types::report::human_bytes(b)
}

fn subject(p: &ProcessFacts) -> String {
    format!("process {} ({})", p.pid, p.comm)
}

/// What the source's processes need, or forbid.
fn process_findings(p: &ProcessFacts, source: &HostFacts, out: &mut Vec<Finding>) {
    if p.uid != 0 && !source.cap_sys_resource {
        out.push(Finding {
            action: Action::Refuse,
            subject: subject(p),
            sentence: format!(
                "it runs as uid {}, and root on {} lacks CAP_SYS_RESOURCE, so CRIU cannot read its resource limits; run the container's processes as root",
                p.uid, source.name
            ),
        });
    }
    if p.io_uring {
        out.push(Finding {
            action: Action::Refuse,
            subject: subject(p),
            sentence: "it uses io_uring, which CRIU cannot checkpoint; stop it from using io_uring (many programs have a setting for another I/O method)".into(),
        });
    }
    for e in &p.external {
        out.push(Finding {
            action: Action::Refuse,
            subject: subject(p),
            sentence: format!(
                "it has {e}, and CRIU moves only both ends together; run that process in the container too, or connect them over TCP"
            ),
        });
    }
    for d in &p.devices {
        out.push(Finding {
            action: Action::Refuse,
            subject: subject(p),
            sentence: format!(
                "it has {d} open, a device whose state ferry cannot recreate at the destination; close it before the move, or run the container without it"
            ),
        });
    }
    if p.file_locks > 0 {
        out.push(Finding {
            action: Action::Enable,
            subject: subject(p),
            sentence: format!(
                "it holds {} file lock(s): ferry checkpoints file locks with it",
                p.file_locks
            ),
        });
    }
}

/// Whether the destination can map and hold what the container has.
fn destination_findings(procs: &[ProcessFacts], dest: &HostFacts, out: &mut Vec<Finding>) {
    let host = format!("host {}", dest.name);
    if let Some(why) = dest.cpu_check.as_deref().filter(|w| !w.is_empty()) {
        out.push(Finding {
            action: Action::Refuse,
            subject: host.clone(),
            sentence: format!(
                "its CPU lacks features of the source's that the container's processes may use (CRIU's cpuinfo check: {why}); move it to a host with the same CPU features"
            ),
        });
    }
    for p in &dest.missing_paths {
        out.push(Finding {
            action: Action::Refuse,
            subject: host.clone(),
            sentence: format!(
                "it lacks {p}, which the container bind-mounts from its host; create it there (with what the container expects in it), or move the container to a host that has it"
            ),
        });
    }
    if dest.criu_version.is_none() {
        out.push(Finding {
            action: Action::Refuse,
            subject: host.clone(),
            sentence: "it has no usable CRIU (see 'ferry doctor' there)".into(),
        });
    }
    // Under the heuristic policy a single mapping larger than memory and swap together
    // fails, and CRIU's restore maps each area whole. Reservations are restored as
    // `MAP_NORESERVE` (charged nothing, as at the source) under that policy, but the
    // strict one (2) ignores the flag.
    let limit = dest.mem_total + dest.swap_total;
    let charged = |p: &ProcessFacts| match dest.overcommit_memory {
        1 => 0,
        0 => p.largest_mapping,
        _ => p.largest_mapping.max(p.largest_reservation),
    };
    if dest.overcommit_memory != 1 {
        if let Some(p) = procs.iter().find(|p| charged(p) > limit) {
            out.push(Finding {
                action: Action::Refuse,
                subject: subject(p),
                sentence: format!(
                    "it reserves {} of address space in one mapping, more than {} can map under its overcommit policy (vm.overcommit_memory={}, {} of memory and swap); allow it there with 'sysctl vm.overcommit_memory=1'",
                    size(charged(p)),
                    dest.name,
                    dest.overcommit_memory,
                    size(limit)
                ),
            });
        }
    }
    let rss: u64 = procs.iter().map(|p| p.rss).sum();
    if rss > dest.mem_available {
        out.push(Finding {
            action: Action::Refuse,
            subject: host,
            sentence: format!(
                "the container's {} of memory do not fit in the {} available there",
                size(rss),
                size(dest.mem_available)
            ),
        });
    }
}

/// Whether `s` fits this container between these hosts, and why (not).
fn fit(
    s: Strategy,
    procs: &[ProcessFacts],
    source: &HostFacts,
    dest: Option<&HostFacts>,
) -> StrategyFit {
    let vm: u64 = procs.iter().map(|p| p.vm_size).sum();
    let no = |why: String| StrategyFit {
        strategy: s,
        fits: false,
        why,
    };
    if needs_lazy_pages(s) {
        if !source.lazy_pages {
            return no(format!(
                "{} lacks userfaultfd or fs.pipe-max-size (see 'ferry doctor')",
                source.name
            ));
        }
        if let Some(d) = dest.filter(|d| !d.lazy_pages) {
            return no(format!(
                "{} lacks userfaultfd or fs.pipe-max-size (see 'ferry doctor' there)",
                d.name
            ));
        }
        // CRIU's lazy dump sizes its page pipes by the address space, not by what is
        // populated: a large reservation exhausts the source's memory.
        if vm > source.mem_total {
            return no(format!(
                "CRIU's lazy dump would size its page pipes by the container's {} of address space, more than {}'s {} of memory",
                size(vm),
                source.name,
                size(source.mem_total)
            ));
        }
    }
    // At its peak a restore holds the container's memory twice: the images (or pre-copy's
    // page store) and the restored processes. Post-copy's pages go straight into them.
    let rss: u64 = procs.iter().map(|p| p.rss).sum();
    let need = match s {
        Strategy::Postcopy => rss,
        Strategy::Cold | Strategy::Precopy | Strategy::Hybrid => rss.saturating_mul(2),
    };
    if let Some(d) = dest.filter(|d| need > d.mem_available && d.mem_available > 0) {
        return no(format!(
            "the restore would hold about {} at {} (the images and the restored memory), more than the {} available there",
            size(need),
            d.name,
            size(d.mem_available)
        ));
    }
    let why = match s {
        Strategy::Cold => "every page moves while the container is frozen",
        Strategy::Precopy => "pages move while it runs; only populated pages are read",
        Strategy::Postcopy => "it restarts at once and its pages follow; it needs both hosts until the last one arrived",
        Strategy::Hybrid => "pre-copy's rounds, then post-copy for the rest",
    };
    StrategyFit {
        strategy: s,
        fits: true,
        why: why.into(),
    }
}

/// The preflight of `container`'s processes from `source`, to `dest` when known.
pub fn assess(
    container: &str,
    procs: Vec<ProcessFacts>,
    source: &HostFacts,
    dest: Option<&HostFacts>,
) -> Preflight {
    let mut findings = Vec::new();
    if procs.is_empty() {
        findings.push(Finding {
            action: Action::Refuse,
            subject: format!("container {container}"),
            sentence: "it has no processes left to move".into(),
        });
    }
    for p in &procs {
        process_findings(p, source, &mut findings);
    }
    if let Some(d) = dest {
        destination_findings(&procs, d, &mut findings);
    }
    let strategies = Strategy::ALL
        .iter()
        .map(|&s| fit(s, &procs, source, dest))
        .collect();
    Preflight {
        container: container.to_string(),
        source: source.name.clone(),
        destination: dest.map(|d| d.name.clone()),
        processes: procs,
        findings,
        strategies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    fn host(name: &str) -> HostFacts {
        HostFacts {
            name: name.into(),
            criu_version: Some("4.2.1".into()),
            lazy_pages: true,
            cap_sys_resource: false,
            overcommit_memory: 0,
            mem_total: 24 * GB,
            mem_available: 20 * GB,
            swap_total: 0,
            cpu_check: None,
            missing_paths: Vec::new(),
        }
    }

    fn proc(pid: u32, comm: &str) -> ProcessFacts {
        ProcessFacts {
            pid,
            comm: comm.into(),
            uid: 0,
            file_locks: 0,
            io_uring: false,
            vm_size: GB,
            largest_mapping: GB / 2,
            largest_reservation: 0,
            rss: GB / 2,
            external: Vec::new(),
            devices: Vec::new(),
        }
    }

    #[test]
    fn a_plain_server_moves_with_every_strategy() {
        let p = assess(
            "redis",
            vec![proc(7, "redis-server")],
            &host("a"),
            Some(&host("b")),
        );
        assert!(p.refusal().is_none(), "{p:?}");
        assert!(p.strategies.iter().all(|s| s.fits));
        assert!(!p.needs_file_locks());
    }

    #[test]
    fn file_locks_are_enabled_and_said() {
        let mut db = proc(9, "sqlite");
        db.file_locks = 1;
        let p = assess("db", vec![db], &host("a"), None);
        assert!(p.needs_file_locks());
        assert_eq!(p.findings[0].action, Action::Enable);
        assert!(p.refusal().is_none());
    }

    #[test]
    fn what_criu_cannot_move_is_refused_naming_the_process() {
        let mut pg = proc(12, "postgres");
        pg.uid = 105;
        let mut ur = proc(13, "worker");
        ur.io_uring = true;
        let p = assess("db", vec![pg, ur], &host("a"), None);
        let r = p.refusal().unwrap();
        assert_eq!(r.subject, "process 12 (postgres)");
        assert!(r.sentence.contains("uid 105") && r.sentence.contains("CAP_SYS_RESOURCE"));
        assert!(p.findings.iter().any(|f| f.sentence.contains("io_uring")));
        let mut root_ok = host("a");
        root_ok.cap_sys_resource = true;
        let mut pg = proc(12, "postgres");
        pg.uid = 105;
        assert!(assess("db", vec![pg], &root_ok, None).refusal().is_none());
    }

    #[test]
    fn a_pipe_to_a_process_outside_is_refused_with_a_way_out() {
        let mut w = proc(14, "worker");
        w.external =
            vec!["a pipe (descriptor 5) to process 900 (logger) outside the container".into()];
        let p = assess("app", vec![w], &host("a"), None);
        let r = p.refusal().unwrap();
        assert_eq!(r.subject, "process 14 (worker)");
        assert!(r.sentence.contains("process 900 (logger)") && r.sentence.contains("TCP"));
    }

    #[test]
    fn a_strategy_whose_restore_needs_more_memory_than_the_destination_has_does_not_fit() {
        let mut r = proc(7, "redis-server");
        r.rss = 6 * GB;
        let mut b = host("b");
        b.mem_available = 10 * GB;
        let p = assess("redis", vec![r], &host("a"), Some(&b));
        assert!(p.refusal().is_none(), "{p:?}");
        let cold = p.fit(Strategy::Cold).unwrap();
        assert!(!cold.fits && cold.why.contains("12.9 GB"), "{cold:?}");
        assert!(
            p.fit(Strategy::Postcopy).unwrap().fits,
            "post-copy needs it once"
        );
    }

    #[test]
    fn a_device_beyond_a_container_s_own_is_refused() {
        let mut vm = proc(15, "qemu");
        vm.devices = vec!["/dev/kvm (device 10:232)".into()];
        let p = assess("vm", vec![vm], &host("a"), None);
        let r = p.refusal().unwrap();
        assert!(r.sentence.contains("/dev/kvm") && r.sentence.contains("cannot recreate"));
    }

    #[test]
    fn a_huge_reservation_moves_unless_overcommit_is_strict_and_never_lazily() {
        let mut pg = proc(12, "mariadbd");
        pg.vm_size = 8 << 40;
        pg.largest_mapping = 64 << 20;
        pg.largest_reservation = 8 << 40;
        pg.rss = 100 << 20;
        // Heuristic overcommit (0): restored without a commit charge, as at the source.
        let p = assess("db", vec![pg.clone()], &host("a"), Some(&host("b")));
        assert!(p.refusal().is_none(), "{p:?}");
        // Strict (2): the kernel ignores MAP_NORESERVE.
        let mut strict = host("b");
        strict.overcommit_memory = 2;
        let r = assess("db", vec![pg.clone()], &host("a"), Some(&strict));
        let r = r.refusal().unwrap();
        assert!(r.sentence.contains("vm.overcommit_memory=1"), "{r:?}");
        // A writable mapping that large is charged at the source too.
        let mut w = pg.clone();
        w.largest_mapping = 8 << 40;
        let r = assess("db", vec![w], &host("a"), Some(&host("b")));
        assert!(r.refusal().is_some());
        let mut b = host("b");
        b.overcommit_memory = 1;
        let p = assess("db", vec![pg], &host("a"), Some(&b));
        assert!(p.refusal().is_none());
        assert!(p.fit(Strategy::Cold).unwrap().fits);
        assert!(p.fit(Strategy::Precopy).unwrap().fits);
        let post = p.fit(Strategy::Postcopy).unwrap();
        assert!(!post.fits && post.why.contains("page pipes"), "{post:?}");
        assert!(!p.fit(Strategy::Hybrid).unwrap().fits);
    }

    #[test]
    fn the_destination_must_have_criu_memory_and_lazy_pages() {
        let mut b = host("b");
        b.criu_version = None;
        b.mem_available = GB / 4;
        b.lazy_pages = false;
        b.cpu_check = Some("CPU feature avx512f missing".into());
        b.missing_paths = vec!["/srv/data".into()];
        let p = assess("redis", vec![proc(7, "redis-server")], &host("a"), Some(&b));
        let refusals: Vec<&str> = p
            .findings
            .iter()
            .filter(|f| f.action == Action::Refuse)
            .map(|f| f.sentence.as_str())
            .collect();
        assert!(refusals.iter().any(|s| s.contains("no usable CRIU")));
        assert!(refusals.iter().any(|s| s.contains("avx512f missing")));
        assert!(refusals.iter().any(|s| s.contains("lacks /srv/data")));
        assert!(refusals.iter().any(|s| s.contains("do not fit")));
        assert!(!p.fit(Strategy::Postcopy).unwrap().fits);
        let cold = p.fit(Strategy::Cold).unwrap();
        assert!(
            !cold.fits && cold.why.contains("available there"),
            "{cold:?}"
        );
        let mut same = host("b");
        same.cpu_check = Some(String::new());
        let ok = assess(
            "redis",
            vec![proc(7, "redis-server")],
            &host("a"),
            Some(&same),
        );
        assert!(ok.refusal().is_none(), "a compatible CPU: {ok:?}");
    }

    #[test]
    fn a_container_without_processes_is_refused() {
        let p = assess("gone", Vec::new(), &host("a"), None);
        assert!(p.refusal().unwrap().sentence.contains("no processes"));
    }
}
