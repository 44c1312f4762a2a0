//! Which strategies the host supports, and why not the others.

use ferry_criu::features::PIPE_MAX_SIZE_NEEDED;
use ferry_types::Strategy;

use super::{Features, StrategyInfo};

/// Every strategy, with why it is or is not available; `base_ok` when CRIU, runc, root
/// and TCP repair are all there (what a cold migration needs).
pub(super) fn details(base_ok: bool, f: &Features) -> Vec<StrategyInfo> {
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
    } else if f.dirty_tracking {
        "ferry's content-addressed rounds (they need no soft-dirty bits)".to_string()
    } else {
        "ferry's content-addressed rounds (this kernel has no soft-dirty bits, so CRIU's own pre-dump cannot run; ferry does not need them)".to_string()
    };
    details.push(StrategyInfo {
        name: "precopy".into(),
        supported: base_ok && f.process_memory_read,
        implemented: true,
        reason: pre_reason,
    });
    let post_ok = base_ok && f.lazy_pages;
    let pipe = f.pipe_max_size;
    let post_reason = if !base_ok {
        "cold migration is not available".to_string()
    } else if !f.userfaultfd {
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
    let hybrid_ok = post_ok && f.process_memory_read;
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
    // Every strategy ferry names is implemented; a new one says so until it is.
    for d in &mut details {
        d.implemented = Strategy::ALL.iter().any(|s| s.name() == d.name);
        if !d.implemented {
            d.reason
                .push_str(" (not implemented in this ferry version yet)");
        }
    }
    details
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(lazy: bool, pipe: u64) -> Features {
        Features {
            dirty_tracking: false,
            userfaultfd: lazy,
            lazy_pages: lazy,
            pipe_max_size: pipe,
            tcp_repair: true,
            checkpoint_non_root: false,
            process_memory_read: true,
        }
    }

    #[test]
    fn every_strategy_is_named_with_why() {
        let d = details(true, &features(true, PIPE_MAX_SIZE_NEEDED));
        let names: Vec<&str> = d.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cold", "precopy", "postcopy", "hybrid"]);
        assert!(d.iter().all(|s| s.supported && s.implemented), "{d:?}");
        assert_eq!(d[2].reason, "CRIU lazy pages over userfaultfd");
    }

    #[test]
    fn without_cold_nothing_else_runs() {
        let d = details(false, &features(true, PIPE_MAX_SIZE_NEEDED));
        assert!(d.iter().all(|s| !s.supported && s.implemented), "{d:?}");
        assert_eq!(d[1].reason, "cold migration is not available");
        assert_eq!(d[3].reason, "needs both pre-copy and post-copy");
    }

    #[test]
    fn post_copy_needs_userfaultfd_and_says_when_it_raises_the_pipe_limit() {
        let d = details(true, &features(false, 0));
        assert!(!d[2].supported && !d[3].supported);
        assert!(d[2].reason.contains("uffd-noncoop"), "{}", d[2].reason);
        let d = details(true, &features(true, 65536));
        assert!(
            d[2].reason.contains("from 65536 to 4194304"),
            "{}",
            d[2].reason
        );
    }
}
