//! Plain data that every ferry crate shares, with no I/O of its own: what a migration is
//! asked to do ([`strategy`]), who a container is on the network ([`net`]), the files
//! that travel ([`files`]), what agents say about containers ([`container`]), and what
//! every operation reports ([`report`], [`stats`], [`usage`], [`criu`]).
//!
//! The wire protocol (`ferry-proto`) carries these types as they are, so a report, a
//! destination's statistics or a container's network identity is one typed value from
//! the process that measures it to the one that prints it.

pub mod container;
pub mod criu;
pub mod files;
pub mod held;
pub mod net;
pub mod preflight;
pub mod report;
pub mod ssh;
pub mod standby;
pub mod stats;
pub mod strategy;
pub mod usage;

pub use container::{ContainerConnections, ContainerInfo, EngineKind, SessionState};
pub use criu::{DumpStats, ImageSizes, RestoreStats};
pub use files::{FileEntry, FileKind};
pub use held::{Delivered, Held, HeldPacket};
pub use net::{NetSpec, NewAddress, NewAddressError};
pub use preflight::{Action, Finding, HostFacts, Preflight, ProcessFacts, StrategyFit};
pub use report::{
    ms, CriuErrors, CriuStats, Operation, Outcome, PeerResumed, Phase, PrecopyRound,
    PrecopySummary, Report, StopReason,
};
pub use stats::{DestStats, PageCounters, PostcopyStats};
pub use strategy::{Compress, Fault, MigrateOptions, Strategy, StrategyChoice, UnknownCompression};
pub use usage::Usage;
