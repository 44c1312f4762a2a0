//! The container runtime seam.
//!
//! ferry drives containers through an OCI runtime's command line, the way containerd's
//! runc wrapper does: [`Runc`] builds argument lists, runs the binary and keeps what it
//! printed when it fails. The [`Runtime`] trait is the seam the migration engine uses, so
//! its logic is tested with fakes. [`bundle`] reads and writes OCI bundles, [`manifest`]
//! lists and checks the files of a bundle that travel between hosts, and [`freezer`]
//! freezes a container's cgroup faster than CRIU's 100 ms polling does.

pub mod bundle;
pub mod delta;
mod error;
pub mod freezer;
pub mod keeper;
pub mod manifest;
pub mod policy;
mod runc;

pub use error::RuntimeError;
pub use runc::{
    lock_global_config, CheckpointArgs, ContainerState, GlobalConfig, GlobalConfigLock,
    RestoreArgs, Runc, Runtime, DEFAULT_ROOT,
};
