//! The migration engine: what happens in which order, and what it cost.
//!
//! - [`report`]: the typed report every operation produces (docs/report.md);
//! - [`timeline`]: phase timings measured on one monotonic clock;
//! - [`usage`]: CPU and memory used by ferry and the tools it ran;
//! - [`local`]: checkpoint and restore on one host;
//! - [`dest`]: the destination's receiver state machine;
//! - [`source`]: the source's steps and rollback rules.

pub mod dest;
mod error;
pub mod group;
pub mod local;
pub mod policy;
pub mod source;
pub mod timeline;
pub mod usage;

pub use error::OpError;
pub use ferry_types::{report, Outcome, Phase, Report, Strategy};
pub use timeline::Timeline;

/// The strategies this build of ferry implements.
pub const IMPLEMENTED_STRATEGIES: &[Strategy] = &[
    Strategy::Cold,
    Strategy::Precopy,
    Strategy::Postcopy,
    Strategy::Hybrid,
];
