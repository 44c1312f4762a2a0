//! The page channel: how a container's memory moves, as the strategies ask for it.
//!
//! Pages travel on connections of their own (one for cold and pre-copy, two for
//! post-copy: background pages, and the pages a process waits for), opened by the
//! source for one session. The agent's adapter runs ferry's data plane (`ferry-pages`)
//! on them; tests fake it. Every handle here is owned by the strategy that opened it, so
//! a failed migration drops what it started.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_types::{Compress, PageCounters, PostcopyStats, PrecopyRound};
use thiserror::Error;

/// Why pages did not arrive.
#[derive(Debug, Error)]
pub enum PagesError {
    /// The page channel could not be opened: the destination is gone.
    #[error("lost the destination: {0}")]
    Lost(String),
    #[error("the page channel never arrived")]
    NoChannel,
    /// A channel or stream broke; `what` names it (for example "page stream").
    #[error("the {what} broke: {source}")]
    Broken {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

/// What a page stream carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Pages sent whole.
    pub pages: u64,
    /// Pages sent as a reference to one the destination holds.
    pub refs: u64,
    /// Bytes on the wire.
    pub wire: u64,
}

/// What a finished dump stream carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamTotals {
    /// Bytes of CRIU's page files (what the destination's files hold).
    pub file_bytes: u64,
    /// Everything this channel carried so far (pre-copy: its rounds included).
    pub sent: Sent,
}

/// CRIU's page files, streamed to the destination as CRIU writes them.
#[async_trait]
pub trait DumpStream: Send {
    /// Bytes streamed so far, for progress.
    fn streamed(&self) -> Arc<AtomicU64>;
    /// Fault injection: the channel breaks after this many chunks.
    fn cut_after(&self, chunks: u64);
    /// Waits until CRIU's files are all sent.
    async fn finish(self: Box<Self>) -> Result<StreamTotals, PagesError>;
    /// Stops streaming (the dump failed).
    async fn abort(self: Box<Self>);
}

/// Pre-copy's rounds on the page channel, while the container runs.
#[async_trait]
pub trait Rounds: Send {
    /// Round `k`: reads the memory of `pids`, sends what the destination lacks, and waits
    /// for its acknowledgement. The prediction is the stopping rule's.
    async fn round(&mut self, k: u32, pids: Vec<u32>) -> Result<PrecopyRound, PagesError>;
    /// What the channel carried so far.
    fn sent(&self) -> Sent;
    fn compress(&self) -> Compress;
    /// Pre-copy's final copy: CRIU's page files through FIFOs in `images`, each page the
    /// destination holds as a reference.
    async fn final_copy(self: Box<Self>, images: &Path) -> Result<Box<dyn DumpStream>, PagesError>;
    /// Hybrid: ends the rounds; post-copy goes on over this channel and a second one, and
    /// every page the destination holds travels as a reference.
    async fn into_lazy(self: Box<Self>, session: &str) -> Result<Box<dyn LazyPages>, PagesError>;
}

/// Post-copy's channels at the source, open, before the lazy dump.
pub trait LazyPages: Send {
    /// CRIU's end of the socket its lazy page server answers on.
    fn criu_socket(&mut self) -> Result<OwnedFd, PagesError>;
    /// Starts moving every lazy page of the dump in `images` to the destination, pages a
    /// process waits for first. With `cut`, the channels break after a quarter of the
    /// pages (fault injection).
    fn pump(self: Box<Self>, images: &Path, cut: bool) -> Result<Box<dyn Pump>, PagesError>;
}

/// What the pump did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PumpTotals {
    pub pages_pushed: u64,
    pub pages_answered: u64,
    /// Hybrid: pages sent as a reference to the destination's store.
    pub pages_referenced: u64,
    pub bytes_sent: u64,
}

/// Post-copy's page pump, running.
#[async_trait]
pub trait Pump: Send {
    /// Pages the destination lacked when the container started there.
    fn pages_total(&self) -> u64;
    /// Pages and bytes sent so far.
    fn progress(&self) -> Arc<PageCounters>;
    /// Waits until the destination has every page.
    async fn wait(self: Box<Self>) -> Result<PumpTotals, PagesError>;
    async fn abort(self: Box<Self>);
}

/// The source's page channels, for one migration.
#[async_trait]
pub trait SourcePages: Send + Sync {
    /// Cold: opens the page channel and turns the dump's page files in `images` into
    /// FIFOs whose content streams through it as CRIU writes them.
    async fn stream_dump(
        &self,
        session: &str,
        images: &Path,
    ) -> Result<Box<dyn DumpStream>, PagesError>;
    /// Pre-copy and hybrid: opens the page channel for rounds.
    async fn rounds(
        &self,
        session: &str,
        compress: Compress,
    ) -> Result<Box<dyn Rounds>, PagesError>;
    /// Post-copy: opens both page channels.
    async fn lazy(&self, session: &str) -> Result<Box<dyn LazyPages>, PagesError>;
}

/// A task receiving pages at the destination.
pub type PageTask<T> = tokio::task::JoinHandle<Result<T, PagesError>>;

/// What hybrid's rounds left at the destination: the pages it holds, and the channel
/// post-copy goes on over.
#[async_trait]
pub trait HeldPages: Send {
    /// Starts the lazy-pages daemon for the restore of the images in `images`, pages
    /// the store holds installed without asking the source.
    async fn postcopy(
        self: Box<Self>,
        images: &Path,
        work: &Path,
        on_loss: Box<dyn FnOnce() + Send>,
    ) -> Result<Box<dyn LazyDaemon>, PagesError>;
}

/// ferry's lazy-pages daemon at the destination: it serves the restore's faults, then
/// fills the container's memory while it runs.
#[async_trait]
pub trait LazyDaemon: Send + Sync {
    fn pages_total(&self) -> u64;
    /// The container may talk: background pages start.
    fn go(&mut self);
    /// Whether it ended with an error (during a restore: the page channel broke). A
    /// daemon may also end well before the restore returns: when no page was lazy, or
    /// the processes faulted every missing one in meanwhile.
    fn has_failed(&self) -> bool;
    /// Waits for the last page. On failure the daemon ran `on_loss` first.
    async fn wait(self: Box<Self>) -> Result<PostcopyStats, PagesError>;
    fn abort(self: Box<Self>);
}

/// CRIU's own lazy-pages daemon, filling a restored container's memory from the local
/// images while it runs (cold and pre-copy, for large memories).
#[async_trait]
pub trait LocalLazy: Send {
    /// Waits until it installed every page.
    async fn wait(self: Box<Self>) -> Result<(), PagesError>;
    async fn kill(self: Box<Self>);
}

/// The destination's side of one session's page channels.
#[async_trait]
pub trait SessionPages: Send {
    /// Cold: receives the page stream into `pages-N.img` files in `images`.
    fn receive_stream(&mut self, images: &Path) -> PageTask<u64>;
    /// Pre-copy: receives the rounds into a page store, then CRIU's page files.
    fn receive_precopy(&mut self, images: &Path) -> PageTask<u64>;
    /// Hybrid: receives the rounds into a page store.
    fn receive_rounds(&mut self, images: &Path) -> PageTask<Box<dyn HeldPages>>;
    /// Post-copy: starts the lazy-pages daemon for the restore of `images`.
    async fn postcopy(
        &mut self,
        images: &Path,
        work: &Path,
        on_loss: Box<dyn FnOnce() + Send>,
    ) -> Result<Box<dyn LazyDaemon>, PagesError>;
    /// Starts CRIU's lazy-pages daemon on the local images; `None` when this host cannot
    /// run it now (the restore is then eager).
    async fn lazy_from_images(
        &mut self,
        images: &Path,
        work: &Path,
    ) -> Result<Option<Box<dyn LocalLazy>>, PagesError>;
}
