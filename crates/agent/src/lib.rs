//! The agent: the long-running daemon on every host, and the place where the engine's
//! ports meet real runc, CRIU, network namespaces and connections.
//!
//! - [`cli`]: `ferry agent`'s arguments, and the daemon's setup from them;
//! - [`daemon`]: listeners, authentication, dispatch by connection role;
//! - [`control`]: requests from the CLI; [`migrate`]: an outgoing migration's checks
//!   and ports, and resuming a frozen container;
//! - [`adapters`]: the real implementations of the engine's ports;
//! - [`state`], [`registry`], [`pod`], [`outcomes`]: what the agent holds and records;
//! - [`containers`]: containers the agent starts itself (the lab uses them);
//! - [`preflight`]: what a container and both hosts allow, before anything is frozen;
//! - [`recover`]: settling what a previous run left half-way.

pub mod adapters;
pub mod cli;
pub mod config;
pub mod connections;
pub mod containers;
pub mod control;
pub mod daemon;
pub mod engines;
mod error;
pub mod foreign;
pub mod migrate;
pub mod outcomes;
pub mod pod;
pub mod preflight;
pub mod readdress;
pub mod recover;
pub mod registry;
pub mod ssh;
pub mod standby;
pub mod state;
pub mod tmpfs;

pub use error::{AgentError, Refusal};
