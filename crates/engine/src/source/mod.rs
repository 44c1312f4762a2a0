//! The source half of a migration: the steps every strategy shares, and how a migration
//! ends.
//!
//! The container is frozen (not killed) and its network locked from the freeze until the
//! destination confirms the container runs there. Every failure before `Commit` is sent
//! rolls back by the rules of [`rollback`]; after it, the source asks the destination how
//! the session ended ([`journal`]). What happens between the prepared destination and
//! the commit is the strategy's ([`crate::strategies`]).

pub mod journal;
mod outcome;
pub use outcome::RESOLVE_FOR;
pub use send::image_files;
pub mod rollback;
mod send;
mod steps;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_proto::ControlReply;
use ferry_types::{MigrateOptions, Operation, Report, Strategy};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::error::PrepareError;
use crate::ports::container::Subject;
use crate::ports::host::HostSettings;
use crate::ports::network::ContainerNetwork;
use crate::ports::pages::SourcePages;
use crate::ports::peer::{Dialer, ToDest};
use crate::timeline::Timeline;
use crate::usage::UsageMeter;
use rollback::SourceProgress;

/// The progress phase a migration started with `hold_freeze` reports when it waits for
/// the client's `Proceed` before freezing.
pub use ferry_proto::READY_PHASE as READY;
/// The progress phase a migration started with `hold_restore` reports when its images
/// are at the destination and it waits for the client's `Proceed` before the restore.
pub use ferry_proto::RESTORE_READY_PHASE as RESTORE_READY;

/// How long the source waits for the destination's answers.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a held migration waits for `Proceed`.
const HOLD_LIMIT: Duration = Duration::from_secs(600);
/// How long a frozen container waits for the word to restore before it resumes here.
const RESTORE_HOLD_LIMIT: Duration = Duration::from_secs(300);

/// The client's words a migration waits for: groups schedule their members with them.
/// A word whose sender is dropped lets the migration give up: unchanged before the
/// freeze, rolled back after it.
#[derive(Debug, Default)]
pub struct Holds {
    /// Fires when the container may freeze (`hold_freeze`).
    pub freeze: Option<oneshot::Receiver<()>>,
    /// Fires when the destination may restore it (`hold_restore`).
    pub restore: Option<oneshot::Receiver<()>>,
}

/// Everything a migration's source half touches.
pub struct SourcePorts {
    /// The container, as its engine describes it.
    pub subject: std::sync::Arc<dyn Subject>,
    /// Its network on this host.
    pub network: Box<dyn ContainerNetwork>,
    /// The way to the destination.
    pub dialer: Box<dyn Dialer>,
    /// The page channels to the destination.
    pub pages: Box<dyn SourcePages>,
}

impl std::fmt::Debug for SourcePorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourcePorts")
            .field("container", &self.subject.name())
            .field("dest", &self.dialer.describe())
            .finish_non_exhaustive()
    }
}

/// A migration, once the agent checked it may start.
#[derive(Debug, Clone)]
pub struct SourceRequest {
    pub container: String,
    pub options: MigrateOptions,
    /// The strategy that runs (`auto` was decided already).
    pub strategy: Strategy,
    /// What ferry chose and why, for the report.
    pub notes: Vec<String>,
}

/// Where a migration reports its progress (the CLI's control connection).
#[derive(Debug, Clone)]
pub struct Events(pub UnboundedSender<ControlReply>);

impl Events {
    pub fn progress(&self, phase: &str, done: u64, total: u64) {
        let _ = self.0.send(ControlReply::Progress {
            phase: phase.into(),
            done,
            total,
        });
    }
}

/// One outgoing migration, as the strategies drive it.
pub struct SourceRun {
    pub(crate) ports: SourcePorts,
    pub(crate) req: SourceRequest,
    pub(crate) settings: HostSettings,
    pub(crate) session: String,
    /// The session's directory: CRIU's images and the journal.
    pub(crate) dir: PathBuf,
    pub(crate) tl: Timeline,
    meter: UsageMeter,
    pub(crate) progress: SourceProgress,
    pub(crate) report: Report,
    link: Option<Box<ToDest>>,
    /// Bytes the page channels carried.
    pub(crate) pages_sent: u64,
    /// The restored connections whose peers the destination watches (`PeersResumed`).
    pub(crate) peers_watched: u32,
    t_freeze: Option<Instant>,
    holds: Holds,
    pub(crate) events: Events,
}

impl std::fmt::Debug for SourceRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRun")
            .field("session", &self.session)
            .field("strategy", &self.req.strategy)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

fn new_session_id(container: &str) -> Result<String, PrepareError> {
    let mut r = [0u8; 8];
    getrandom::getrandom(&mut r).map_err(|e| PrepareError::Randomness(e.to_string()))?;
    Ok(format!("{container}-{}", hex::encode(r)))
}

impl SourceRun {
    pub(crate) fn new(
        ports: SourcePorts,
        settings: &HostSettings,
        req: SourceRequest,
        events: Events,
        holds: Holds,
    ) -> Result<Self, PrepareError> {
        let session = new_session_id(&req.container)?;
        let dir = settings.images_dir.join(format!("out-{session}"));
        std::fs::create_dir_all(&dir).map_err(|source| PrepareError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut report = Report::new(Operation::Migrate, &req.container);
        report.strategy = Some(req.strategy);
        report.source = Some(settings.name.clone());
        report.destination = Some(ports.dialer.describe());
        report.notes.extend(req.notes.iter().cloned());
        Ok(Self {
            ports,
            req,
            settings: settings.clone(),
            session,
            dir,
            tl: Timeline::new(),
            meter: UsageMeter::start(),
            progress: SourceProgress::default(),
            report,
            link: None,
            pages_sent: 0,
            peers_watched: 0,
            t_freeze: None,
            holds,
            events,
        })
    }

    /// The session's id, as the destination knows it.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Whether a fault the test asked for is to be injected here.
    pub(crate) fn fault(&self, f: ferry_types::Fault) -> bool {
        self.req.options.inject_fault == Some(f) && self.settings.allow_fault_injection
    }
}
