//! The controller: the client side of ferry, which drives the agents.
//!
//! - [`client`]: a control connection to an agent, one request and its answer;
//! - [`migrate`](mod@migrate): one container: move it, resume it; the containers an
//!   agent runs;
//! - [`group`]: a group's migrations by a schedule, moved back as one on failure;
//! - [`readdress`]: one container to a new address, its peers following it;
//! - [`standby`]: standby checkpoints kept elsewhere, and failing over to one.
//!
//! Every failure is a [`ControllerError`], a sentence for people.

pub mod client;
mod error;
pub mod group;
pub mod migrate;
pub mod readdress;
pub mod standby;

#[cfg(test)]
mod fake;

pub use error::ControllerError;
pub use migrate::{check, list, migrate, resume};
