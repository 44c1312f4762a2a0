//! The agent: the long-running daemon on every host, and the place where the engine's
//! seams meet real runc, CRIU and network namespaces.
//!
//! - [`cli`]: `ferry agent`'s arguments, and the daemon's setup from them;
//! - [`daemon`]: listeners, authentication, dispatch by connection role;
//! - [`control`]: requests from the CLI;
//! - [`containers`]: containers the agent starts itself (the lab uses them);
//! - [`source`] and [`dest`]: the two sides of a migration;
//! - [`network`]: container networks and the IP handover;
//! - [`logs`]: logs kept from failed sessions.

pub mod cli;
pub mod config;
pub mod containers;
pub mod control;
pub mod daemon;
pub mod dest;
mod error;
pub mod logs;
pub mod network;
pub mod pod;
pub mod registry;
pub mod source;
pub mod state;
pub mod tmpfs;

pub use error::AgentError;
