//! Hybrid: pre-copy's rounds while the container runs, then post-copy for what is left,
//! where every page the destination already holds travels as a reference. The freeze
//! is post-copy's (short); the pages that follow are mostly references.

use std::time::Instant;

use async_trait::async_trait;
use ferry_types::Strategy;

use super::postcopy::{lazy_source, on_loss, restore_under, LazyDest};
use super::precopy::run_rounds;
use super::{DestHalf, MigrationStrategy};
use crate::dest::arrival::{AfterCommit, Arrival};
use crate::error::{IncomingError, MigrateError, TransferError};
use crate::ports::pages::{HeldPages, PageTask};
use crate::source::SourceRun;

#[derive(Debug, Clone, Copy)]
pub struct Hybrid;

#[async_trait]
impl MigrationStrategy for Hybrid {
    fn kind(&self) -> Strategy {
        Strategy::Hybrid
    }

    async fn source(&self, run: &mut SourceRun) -> Result<(), MigrateError> {
        let (rounds, summary) = run_rounds(run).await?;
        let round_wire = rounds.sent().wire;
        run.report.precopy = Some(summary);
        let lazy = rounds
            .into_lazy(&run.session)
            .await
            .map_err(TransferError::Channel)?;
        let r = lazy_source(run, lazy).await;
        run.pages_sent += round_wire;
        r
    }

    fn destination(&self, session: &mut Arrival) -> Box<dyn DestHalf> {
        let rounds = session.pages.receive_rounds(&session.images);
        Box::new(HybridDest {
            rounds: Some(rounds),
            lazy: LazyDest { daemon: None },
        })
    }
}

/// The destination of hybrid: the rounds fill a page store; the restore then runs
/// under ferry's lazy-pages daemon, which takes what the store holds first.
struct HybridDest {
    rounds: Option<PageTask<Box<dyn HeldPages>>>,
    lazy: LazyDest,
}

#[async_trait]
impl DestHalf for HybridDest {
    async fn page_failure(&mut self) -> Option<String> {
        super::task_failure(&mut self.rounds).await
    }

    async fn images_stored(&mut self, _pages_bytes: u64) -> Result<(), IncomingError> {
        Ok(())
    }

    async fn restore(&mut self, s: &mut Arrival) -> Result<(), IncomingError> {
        let t = Instant::now();
        let task = self.rounds.take().ok_or(IncomingError::NoSession)?;
        let held = task
            .await
            .map_err(|e| IncomingError::PageTask(e.to_string()))??;
        let (images, work) = (s.images.clone(), s.work.clone());
        let daemon = held.postcopy(&images, &work, on_loss(s)).await?;
        s.tl.record("daemon-start", t);
        let r = restore_under(s, &*daemon).await;
        self.lazy.daemon = Some(daemon);
        r
    }

    fn after_commit(self: Box<Self>) -> AfterCommit {
        Box::new(self.lazy).after_commit()
    }

    async fn abort(self: Box<Self>) {
        if let Some(t) = self.rounds {
            t.abort();
        }
        Box::new(self.lazy).abort().await;
    }
}
