//! The container engine: what a migration asks of runc, Podman or Docker.
//!
//! The port is shaped by what every engine has to do for a migration, not by one
//! engine's flags:
//!
//! - at the source, [`ContainerEngine::inspect`] finds a running container and returns a
//!   [`Subject`]: its processes, a freezer, the files the destination needs to restore
//!   it (a runc bundle; Podman's and Docker's container definitions and layers), and a
//!   checkpoint that runs CRIU by a [`DumpPlan`] the strategy made;
//! - at the destination, the engine says whether it already holds what would be shipped
//!   ([`ContainerEngine::has_shipment`]), receives it ([`ContainerEngine::receive`]),
//!   restores by a [`RestorePlan`], and makes the restored container its own (`podman ps`
//!   lists it afterwards), or deletes it when the migration is dropped.
//!
//! Plans are values: a test reads what a strategy asked CRIU to do without running it.
//! How a plan reaches CRIU (runc's flags, a CRIU configuration file, an engine's own
//! options) is the adapter's business.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::BoxFuture;
use async_trait::async_trait;
use ferry_criu::plan::{CheckpointSpec, RestoreSpec};
use ferry_types::{EngineKind, FileEntry};
use thiserror::Error;

/// Why the container engine could not do what was asked.
#[derive(Debug, Error)]
pub enum ContainerError {
    /// No such container on this host.
    #[error("no container named '{name}' runs on {host}")]
    NotFound { name: String, host: String },
    /// It exists, but does not run.
    #[error(
        "container '{name}' is {status}, not running; only running containers can be migrated"
    )]
    NotRunning { name: String, status: String },
    /// The engine cannot move this container; the sentence says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// The engine's tool failed (runc's own words, CRIU's are in its log).
    #[error("{0}")]
    Failed(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// What CRIU is asked to do for a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPlan {
    /// Where CRIU writes its images.
    pub images: PathBuf,
    /// Where CRIU writes its log (`dump.log`) and statistics.
    pub work: PathBuf,
    pub criu: CheckpointSpec,
}

/// What CRIU is asked to do for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub images: PathBuf,
    /// Where CRIU writes its log (`restore.log`) and statistics.
    pub work: PathBuf,
    pub criu: RestoreSpec,
}

/// A lazy dump in progress (post-copy): CRIU has frozen and dumped everything but the
/// memory, and serves pages until told it may stop.
pub struct LazyDump {
    /// Resolves to true once CRIU serves pages, false if the dump failed first.
    pub ready: BoxFuture<'static, bool>,
    /// Resolves when CRIU (and the engine's tool around it) ended.
    pub done: BoxFuture<'static, Result<(), ContainerError>>,
}

impl std::fmt::Debug for LazyDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyDump").finish_non_exhaustive()
    }
}

/// What the destination needs to restore a container, besides its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// Identifies the content: the destination skips it when it holds the same.
    pub digest: String,
    /// Where the entries' paths start.
    pub root: PathBuf,
    /// Every file, directory and link, in the order they must be created.
    pub entries: Vec<FileEntry>,
}

/// What changed in a shipment after it was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShipmentChanges {
    pub changed: u32,
    pub removed: u32,
    pub bytes: u64,
}

/// Receives a shipment at the destination, file by file.
pub trait ShipmentSink: Send {
    /// An entry arrives; for files, [`ShipmentSink::write`] gets its content next.
    fn begin(&mut self, entry: &FileEntry) -> Result<(), ContainerError>;
    fn write(&mut self, data: &[u8]) -> Result<(), ContainerError>;
    /// The current file is complete.
    fn end_file(&mut self) -> Result<(), ContainerError>;
    /// Every entry arrived: put the shipment in place for a container whose network
    /// namespace is `netns`.
    fn store(self: Box<Self>, netns: &Path) -> Result<(), ContainerError>;
}

/// A running container at the source, ready to be moved.
#[async_trait]
pub trait Subject: Send + Sync {
    fn name(&self) -> &str;
    /// The engine that runs it, and that restores it at the destination.
    fn engine(&self) -> EngineKind {
        EngineKind::Runc
    }
    /// Its processes now; empty once it exited.
    fn processes(&self) -> Vec<u32>;
    /// The resident memory of its processes: about what a dump sends.
    fn resident_bytes(&self) -> u64;
    /// Freezes every process (blocking, a few milliseconds).
    fn freeze(&self) -> Result<(), ContainerError>;
    fn thaw(&self) -> Result<(), ContainerError>;
    /// Takes its TCP connections out of repair mode, where a CRIU killed mid-dump left
    /// them; returns how many were.
    fn release_sockets(&self) -> Result<u32, ContainerError>;
    /// Kills the frozen processes: they die when thawed, without running again.
    fn kill_frozen(&self);
    /// Whether the container runs: its processes exist and are not frozen. After a
    /// rollback this is checked, never assumed.
    fn alive(&self) -> Result<(), ContainerError>;
    /// What must travel for the destination to restore it.
    fn shipment(&self) -> Result<Shipment, ContainerError>;
    /// The destination now holds the shipment with this digest.
    fn shipped(&self, digest: &str);
    /// Once frozen: writes what changed in the shipment since [`Subject::shipment`] into
    /// the image directory `images`, where the destination's engine applies it before
    /// the restore (what the container wrote while its files travelled).
    fn shipment_changes(&self, images: &Path) -> Result<ShipmentChanges, ContainerError>;
    /// Dumps the (frozen) container by `plan`, leaving it frozen.
    async fn checkpoint(&self, plan: &DumpPlan) -> Result<(), ContainerError>;
    /// Dumps it lazily: CRIU serves its pages on `page_socket` (at the descriptor number
    /// the plan names) until the pump says every page arrived.
    fn checkpoint_lazy(&self, plan: DumpPlan, page_socket: OwnedFd) -> LazyDump;
    /// Removes the container and what the engine recorded of it: it runs elsewhere now.
    async fn remove(&self) -> Result<(), ContainerError>;
}

/// A container engine on this host.
#[async_trait]
pub trait ContainerEngine: Send + Sync {
    /// A running container, ready to be moved.
    async fn inspect(&self, name: &str) -> Result<Box<dyn Subject>, ContainerError>;
    /// Whether a container of this name exists here.
    async fn exists(&self, name: &str) -> bool;
    /// Whether this host already holds the shipment with `digest` for `name`.
    fn has_shipment(&self, name: &str, digest: &str) -> bool;
    /// Starts receiving the shipment of `name`.
    fn receive(&self, name: &str, digest: &str) -> Result<Box<dyn ShipmentSink>, ContainerError>;
    /// Whether it can restore memory lazily (a plan with `lazy_pages`); when it cannot,
    /// strategies restore from complete images and refuse post-copy.
    fn restores_lazily(&self) -> bool {
        true
    }
    /// Restores `name` from its shipment and images by `plan`; on success it runs.
    async fn restore(&self, name: &str, plan: &RestorePlan) -> Result<(), ContainerError>;
    /// Kills every process of `name` at once (blocking; a process waiting for a missing
    /// page still dies).
    fn kill(&self, name: &str);
    /// Deletes `name` (what a dropped migration restored).
    async fn delete(&self, name: &str) -> Result<(), ContainerError>;
}
