//! Which strategy runs: what the user chose, checked against what the host can do, or
//! what `auto` picks once the container's size is known.

use ferry_types::{MigrateOptions, Strategy, StrategyChoice};
use thiserror::Error;

/// A strategy this host cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StrategyError {
    #[error("hybrid ends in post-copy, which needs userfaultfd, which this host lacks (see 'ferry doctor'); use --strategy precopy")]
    HybridNeedsUserfaultfd,
    #[error("post-copy needs userfaultfd, which this host lacks (see 'ferry doctor'); use --strategy cold")]
    PostcopyNeedsUserfaultfd,
}

/// Whether a strategy needs lazy pages (userfaultfd) at both ends.
pub fn needs_lazy_pages(s: Strategy) -> bool {
    match s {
        Strategy::Cold | Strategy::Precopy => false,
        Strategy::Postcopy | Strategy::Hybrid => true,
    }
}

/// What the user asked for, checked against this host: `auto` is decided later, by
/// [`pick_auto`], once the container's size is known.
pub fn effective_strategy(
    options: &MigrateOptions,
    lazy_pages: bool,
) -> Result<StrategyChoice, StrategyError> {
    let s = match options.strategy {
        StrategyChoice::Auto => return Ok(StrategyChoice::Auto),
        StrategyChoice::Fixed(s) => s,
    };
    match s {
        Strategy::Cold | Strategy::Precopy => Ok(s.into()),
        Strategy::Hybrid if lazy_pages => Ok(s.into()),
        Strategy::Hybrid => Err(StrategyError::HybridNeedsUserfaultfd),
        Strategy::Postcopy if lazy_pages => Ok(s.into()),
        Strategy::Postcopy => Err(StrategyError::PostcopyNeedsUserfaultfd),
    }
}

/// Below this resident memory, `auto` moves a container cold: its whole memory crosses
/// within the fixed cost of a migration, so rounds would only add time.
pub const AUTO_PRECOPY_MIN: u64 = 64 << 20;

/// What `--strategy auto` runs for a container of `resident` bytes, and why. Post-copy
/// ties the container to the source until its last page arrived: auto only takes that
/// risk when the user allows it.
pub fn pick_auto(allow_postcopy: bool, lazy_pages: bool, resident: u64) -> (Strategy, String) {
    if resident < AUTO_PRECOPY_MIN {
        return (
            Strategy::Cold,
            format!(
                "auto chose cold: {} MiB of memory move within the fixed cost",
                resident >> 20
            ),
        );
    }
    if allow_postcopy && lazy_pages {
        return (
            Strategy::Hybrid,
            "auto chose hybrid: post-copy is allowed and both hosts have userfaultfd".into(),
        );
    }
    (
        Strategy::Precopy,
        format!(
            "auto chose precopy: {} MiB of memory move while the container runs",
            resident >> 20
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_moves_small_containers_cold_and_large_ones_while_they_run() {
        assert_eq!(pick_auto(true, true, 10 << 20).0, Strategy::Cold);
        assert_eq!(pick_auto(false, true, 1 << 30).0, Strategy::Precopy);
        assert_eq!(pick_auto(true, false, 1 << 30).0, Strategy::Precopy);
        assert_eq!(pick_auto(true, true, 1 << 30).0, Strategy::Hybrid);
    }

    #[test]
    fn hybrid_and_postcopy_need_userfaultfd() {
        let mut o = MigrateOptions {
            strategy: Strategy::Hybrid.into(),
            ..Default::default()
        };
        assert_eq!(
            effective_strategy(&o, false),
            Err(StrategyError::HybridNeedsUserfaultfd)
        );
        assert_eq!(effective_strategy(&o, true), Ok(Strategy::Hybrid.into()));
        o.strategy = Strategy::Postcopy.into();
        assert!(effective_strategy(&o, false)
            .unwrap_err()
            .to_string()
            .contains("--strategy cold"));
        o.strategy = Strategy::Precopy.into();
        assert_eq!(effective_strategy(&o, false), Ok(Strategy::Precopy.into()));
        o.strategy = StrategyChoice::Auto;
        assert_eq!(effective_strategy(&o, false), Ok(StrategyChoice::Auto));
    }
}
