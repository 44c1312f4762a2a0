//! The migration engine: what happens in which order, written against ports.
//!
//! - [`ports`]: every side effect of a migration as a narrow trait (container engine,
//!   network, peer, page channel, host); the agent provides the real adapters;
//! - [`strategies`]: cold, pre-copy, post-copy and hybrid, each one type with its source
//!   and destination halves;
//! - [`policy`]: the pure decisions (`auto`, pre-copy's stopping rule);
//! - [`migration`]: a migration from the source; [`source`]: the source's shared
//!   steps, rollback and crash journal;
//! - [`dest`]: the destination's receiver state machine and sessions;
//! - [`error`]: one error type per operation, worded for the user;
//! - [`group`]: group files;
//! - [`timeline`], [`usage`], [`logs`]: what an operation cost, and its logs;
//! - [`durable`]: files that survive a crash whole (journals, outcomes).

pub mod dest;
pub mod durable;
pub mod error;
pub mod group;
pub mod logs;
pub mod migration;
pub mod policy;
pub mod ports;
pub mod source;
pub mod strategies;
pub mod timeline;
pub mod usage;

#[cfg(test)]
mod testing;

pub use error::MigrateError;
pub use ferry_types::{report, Outcome, Phase, Report, Strategy};
pub use timeline::Timeline;
