//! Everything ferry knows about CRIU, without running a container.
//!
//! - [`bound`]: a cgroup with a memory limit for CRIU, so that the kernel kills a dump
//!   that runs short of memory, never the container;
//! - [`cpuinfo`]: whether a process dumped on one CPU can run on another;
//! - [`features`]: find the CRIU binary, read its version, probe kernel features;
//! - [`plan`]: turn what a checkpoint or restore needs into CRIU options (a pure step,
//!   separate from executing it);
//! - [`images`]: read (and, where ferry builds images, write) CRIU's image files with
//!   ferry's own code: `stats-dump`, `stats-restore`, `inventory.img`, `pagemap-*.img`;
//! - [`process`]: CRIU's helper processes (page server, lazy-pages daemon) and handing
//!   descriptors down to CRIU; [`fdpass`]: descriptors over Unix sockets;
//! - [`repair`]: take sockets out of TCP repair mode when CRIU died without doing so;
//! - [`log`]: pick the lines of a CRIU log that explain a failure, and recognise the
//!   failures ferry can explain better.

pub mod bound;
pub mod cpuinfo;
pub mod fdpass;
pub mod features;
pub mod images;
pub mod log;
pub mod pageserver;
pub mod plan;
pub mod process;
pub mod repair;

pub use features::{CriuBinary, FeatureProbe};
pub use images::{ImageError, ImageSizes, Inventory, PagemapEntry, Stats};
pub use log::{diagnose, CriuFailure};
pub use plan::{CriuConfigTarget, CriuOptionPlan, PageTransport};
