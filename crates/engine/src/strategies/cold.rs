//! Cold: every page travels before the restore. CRIU dumps into FIFOs whose content is
//! streamed into the page channel while it dumps, so the source never holds the memory
//! twice; the destination writes it into page files and restores from them (lazily,
//! from its own tmpfs, when the memory is large).

use std::time::Instant;

use async_trait::async_trait;
use ferry_criu::plan::{NetworkLock, RestoreSpec};
use ferry_types::Strategy;

use super::{await_page_files, DestHalf, MigrationStrategy};
use crate::dest::arrival::{AfterCommit, Arrival};
use crate::error::{DumpError, IncomingError, MigrateError, PrepareError, TransferError};
use crate::ports::container::RestorePlan;
use crate::ports::pages::{LocalLazy, PageTask, PagesError};
use crate::source::SourceRun;

/// Below this much memory, the destination restores eagerly: starting CRIU's lazy-pages
/// daemon costs more than it saves.
pub const LAZY_RESTORE_MIN: u64 = 32 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Cold;

/// An error opening the page channel: a lost destination, or a stream that would not
/// start.
pub(crate) fn stream_error(e: PagesError) -> MigrateError {
    match e {
        PagesError::Lost(_) => PrepareError::Pages(e).into(),
        other => DumpError::PageStream(other).into(),
    }
}

#[async_trait]
impl MigrationStrategy for Cold {
    fn kind(&self) -> Strategy {
        Strategy::Cold
    }

    async fn source(&self, run: &mut SourceRun) -> Result<(), MigrateError> {
        let stream = run
            .ports
            .pages
            .stream_dump(&run.session, &run.dir)
            .await
            .map_err(stream_error)?;
        let estimate = run.ports.subject.resident_bytes();

        run.freeze_and_lock().await?;
        let stream = run.dump_into(stream, estimate).await?;

        let t = Instant::now();
        let totals = stream.finish().await.map_err(TransferError::Pages)?;
        run.tl.record("pages", t);
        run.pages_sent = totals.file_bytes;
        run.progress("pages", totals.file_bytes, totals.file_bytes);

        run.detach_and_send_images(totals.file_bytes).await?;
        run.restore_remote().await?;
        run.commit().await?;
        Ok(())
    }

    fn destination(&self, session: &mut Arrival) -> Box<dyn DestHalf> {
        let task = session.pages.receive_stream(&session.images);
        Box::new(FilesDest::new(task))
    }
}

/// The destination of cold and pre-copy: CRIU's page files arrive whole, then the
/// container restores from them.
pub(crate) struct FilesDest {
    task: Option<PageTask<u64>>,
    lazy: Option<Box<dyn LocalLazy>>,
}

impl FilesDest {
    pub(crate) fn new(task: PageTask<u64>) -> Self {
        Self {
            task: Some(task),
            lazy: None,
        }
    }
}

/// What the restore of complete page files asks CRIU.
pub(crate) fn files_plan(s: &Arrival, lazy: bool) -> RestorePlan {
    RestorePlan {
        images: s.images.clone(),
        work: s.work.clone(),
        criu: RestoreSpec {
            tcp_established: s.tcp_established,
            file_locks: s.file_locks,
            lazy_pages: lazy,
            // ferry's hold lock covers the namespace until Commit.
            network_lock: NetworkLock::Skip,
            tcp_close: false,
        },
    }
}

#[async_trait]
impl DestHalf for FilesDest {
    async fn page_failure(&mut self) -> Option<String> {
        super::task_failure(&mut self.task).await
    }

    async fn images_stored(&mut self, pages_bytes: u64) -> Result<(), IncomingError> {
        await_page_files(self.task.take(), pages_bytes).await
    }

    async fn restore(&mut self, s: &mut Arrival) -> Result<(), IncomingError> {
        // Restoring memory lazily from the local images lets the container run before
        // its pages are in place.
        if s.settings.lazy_pages && s.engine.restores_lazily() && s.pages_bytes >= LAZY_RESTORE_MIN
        {
            let t = Instant::now();
            self.lazy = s.pages.lazy_from_images(&s.images, &s.work).await?;
            if self.lazy.is_some() {
                s.tl.record("lazy-start", t);
                s.stats.notes.push(
                    "memory restored lazily from local images while the container runs".into(),
                );
            }
        }
        let plan = files_plan(s, self.lazy.is_some());
        s.run_restore(&plan).await
    }

    fn after_commit(self: Box<Self>) -> AfterCommit {
        match self.lazy {
            Some(l) => AfterCommit::LocalMemory(l),
            None => AfterCommit::Done,
        }
    }

    async fn abort(self: Box<Self>) {
        if let Some(l) = self.lazy {
            l.kill().await;
        }
        if let Some(t) = self.task {
            t.abort();
        }
    }
}
