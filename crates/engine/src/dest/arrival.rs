//! An arriving container, as a strategy's destination half sees it: where its images
//! are, its page channels, what it has measured, and the restore.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ferry_criu::log::diagnose;
use ferry_types::DestStats;

use crate::error::IncomingError;
use crate::logs::logs_dir;
use crate::ports::container::{ContainerEngine, RestorePlan};
use crate::ports::host::HostSettings;
use crate::ports::pages::{LazyDaemon, LocalLazy, SessionPages};
use crate::timeline::Timeline;

/// What goes on after the commit, until the container holds all its memory.
pub enum AfterCommit {
    /// Nothing: the memory is all in place.
    Done,
    /// CRIU's lazy-pages daemon fills it from the local images.
    LocalMemory(Box<dyn LocalLazy>),
    /// Post-copy: ferry's daemon fills it from the source, which waits on the peer
    /// connection for the last page.
    LastPage(Box<dyn LazyDaemon>),
}

impl std::fmt::Debug for AfterCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AfterCommit::Done => "Done",
            AfterCommit::LocalMemory(_) => "LocalMemory",
            AfterCommit::LastPage(_) => "LastPage",
        })
    }
}

/// One arriving container.
pub struct Arrival {
    pub session: String,
    pub container: String,
    pub settings: HostSettings,
    pub engine: Arc<dyn ContainerEngine>,
    /// CRIU's images, as they arrive.
    pub images: PathBuf,
    /// Where CRIU writes its logs and statistics.
    pub work: PathBuf,
    pub pages: Box<dyn SessionPages>,
    pub tcp_established: bool,
    /// The dump holds file locks, which the restore takes again.
    pub file_locks: bool,
    /// Bytes of page files the source sent.
    pub pages_bytes: u64,
    pub tl: Timeline,
    pub stats: DestStats,
    /// A restore was attempted: what it may have left running is deleted if the session
    /// is dropped.
    pub restored: bool,
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrival")
            .field("session", &self.session)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

impl Arrival {
    /// Restores by `plan`; on success the container runs (behind ferry's lock).
    pub async fn run_restore(&mut self, plan: &RestorePlan) -> Result<(), IncomingError> {
        let t = Instant::now();
        // From the first attempt on, a dropped session deletes what the restore may have
        // left running here.
        self.restored = true;
        let r = self.engine.restore(&self.container, plan).await;
        self.tl.record("restore", t);
        if let Err(e) = r {
            let mut f = diagnose(&self.work.join("restore.log"), &e.to_string());
            f.log_path = logs_dir(&self.settings, &self.session).join("restore.log");
            if f.error_lines.is_empty() {
                return Err(IncomingError::RestoreTool {
                    error: e.to_string(),
                    log: f.log_path.display().to_string(),
                });
            }
            return Err(IncomingError::Restore(Box::new(f)));
        }
        self.stats.criu_restore = ferry_criu::images::Stats::read(&self.work.join("stats-restore"))
            .ok()
            .and_then(|s| s.restore);
        Ok(())
    }

    /// Kills the container at once: post-copy's daemon calls this when the source is
    /// lost, while it still holds the processes' userfaultfds.
    pub fn killer(&self) -> Box<dyn FnOnce() + Send> {
        let engine = self.engine.clone();
        let container = self.container.clone();
        Box::new(move || engine.kill(&container))
    }
}
