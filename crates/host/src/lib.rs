//! This host's capabilities: the probes `ferry doctor` prints and the agent acts on.
//!
//! - [`doctor`]: what this host can do for ferry (CRIU, runc, kernel features, network
//!   locks, strategies), and how to fix what it cannot;
//! - [`devices`]: devices a container's processes hold that CRIU cannot move;
//! - [`fds`]: a process's open descriptors, read once for all of the checks below;
//! - [`ipc`]: pipes and UNIX sockets that join a container to processes outside it;
//! - [`procfs`]: a container's processes and this host's memory, for the preflight.

pub mod devices;
pub mod doctor;
pub mod fds;
pub mod ipc;
pub mod procfs;
