//! The container engines ferry drives, each one adapter behind the engine's
//! [`ContainerEngine`](ferry_engine::ports::container::ContainerEngine) port:
//!
//! - [`runc`]: containers in a runc root, their OCI bundles shipped between hosts, CRIU's
//!   options passed through runc's flags and a per-container CRIU configuration file;
//! - [`podman`]: Podman's containers (rootful, with runc), restored by Podman from the
//!   definition ferry takes at the freeze, so that Podman knows them as its own;
//! - [`local`]: `ferry checkpoint` and `ferry restore`, on one host.
//!
//! Docker plugs in here as an adapter of its own (docs/engines.md).

mod cli;
pub mod docker;
mod error;
mod hold;
pub mod image;
pub mod layer;
pub mod local;
pub mod podman;
pub mod runc;

pub use error::OpError;
pub use runc::{RuncEngine, RuncSettings};
