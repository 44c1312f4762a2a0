//! The strategies: each one a type with its source and destination halves, in one file.
//!
//! | strategy | source half | destination half |
//! |---|---|---|
//! | [`cold`] | freeze, dump through FIFOs into the page channel, images, restore, commit | page stream into files; restore (lazily from the files when large) |
//! | [`precopy`] | rounds while it runs ([`crate::policy::stop_rule`] stops them), then a cold dump where held pages are references | rounds into a page store; files rebuilt from it |
//! | [`postcopy`] | lazy dump; the pump moves pages after the container restarted | restore under ferry's lazy-pages daemon |
//! | [`hybrid`] | pre-copy's rounds, then post-copy | rounds into a store, then post-copy from it |
//!
//! Adding a strategy is a new file here, its variant in `ferry_types::Strategy`, and its
//! arm in [`of`].

pub mod cold;
pub mod hybrid;
pub mod postcopy;
pub mod precopy;

use async_trait::async_trait;
use ferry_types::Strategy;

use crate::dest::arrival::{AfterCommit, Arrival};
use crate::error::{IncomingError, MigrateError};
use crate::source::SourceRun;

/// A strategy's two halves.
#[async_trait]
pub trait MigrationStrategy: Send + Sync {
    fn kind(&self) -> Strategy;

    /// The source half, from a prepared destination (the shipment sent) until
    /// `Committed`, and for post-copy until the last page arrived. Whatever it started
    /// (a lazy dump, a pump) it stops before it returns an error, so that the rollback
    /// finds the container frozen and released by CRIU.
    async fn source(&self, run: &mut SourceRun) -> Result<(), MigrateError>;

    /// The destination half of the session being prepared: it starts receiving pages
    /// (the page channels arrive as connections of their own).
    fn destination(&self, session: &mut Arrival) -> Box<dyn DestHalf>;
}

/// A strategy's destination half, for one session.
#[async_trait]
pub trait DestHalf: Send {
    /// The image files all arrived: waits for the pages the page channel carried.
    async fn images_stored(&mut self, pages_bytes: u64) -> Result<(), IncomingError>;
    /// Restores the container; on success it runs, behind ferry's lock.
    async fn restore(&mut self, session: &mut Arrival) -> Result<(), IncomingError>;
    /// After the commit: what goes on until the container holds all its memory.
    fn after_commit(self: Box<Self>) -> AfterCommit;
    /// The session is dropped (its container already deleted): stop what it started.
    async fn abort(self: Box<Self>);
    /// Why the page transfer failed here, if it did (the source sees only a broken
    /// channel). Waits a moment for a page task that is about to end.
    async fn page_failure(&mut self) -> Option<String> {
        None
    }
}

/// How a page task that the source gave up on ended here, if it failed.
pub(crate) async fn task_failure<T: Send>(
    task: &mut Option<crate::ports::pages::PageTask<T>>,
) -> Option<String> {
    let t = task.take()?;
    match tokio::time::timeout(std::time::Duration::from_secs(1), t).await {
        Ok(Ok(Err(e))) => Some(e.to_string()),
        _ => None,
    }
}

/// The strategy that runs `s`.
pub fn of(s: Strategy) -> &'static dyn MigrationStrategy {
    match s {
        Strategy::Cold => &cold::Cold,
        Strategy::Precopy => &precopy::Precopy,
        Strategy::Postcopy => &postcopy::Postcopy,
        Strategy::Hybrid => &hybrid::Hybrid,
    }
}

/// Waits for a page task started at `Prepare`, checking it received what the source
/// says it sent.
pub(crate) async fn await_page_files(
    task: Option<crate::ports::pages::PageTask<u64>>,
    pages_bytes: u64,
) -> Result<(), IncomingError> {
    let Some(task) = task else { return Ok(()) };
    match tokio::time::timeout(std::time::Duration::from_secs(120), task).await {
        Ok(Ok(Ok(n))) if n == pages_bytes => Ok(()),
        Ok(Ok(Ok(n))) => Err(IncomingError::PagesShort {
            got: n,
            sent: pages_bytes,
        }),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(e)) => Err(IncomingError::PageTask(e.to_string())),
        Err(_) => Err(IncomingError::PagesLate),
    }
}
