//! What the lazy-pages daemon's parts tell its loop, and how the daemon fails.

use std::os::fd::OwnedFd;

use ferry_proto::postcopy::PcHeader;
use tokio::sync::oneshot;

use super::ranges::Missing;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("post-copy images: {0}")]
    Images(String),
    #[error("the restore's userfaultfds: {0}")]
    Handover(std::io::Error),
    #[error("userfaultfd: {0}")]
    Uffd(std::io::Error),
    #[error("the page channel from the source broke before every page arrived: {0}")]
    PeerLost(std::io::Error),
    #[error("protocol error from the source: {0}")]
    Protocol(String),
    #[error("{0} pages never came, though the source sent every page and was asked again")]
    Stalled(u64),
}

/// One process's descriptor, as the restore handed it over.
#[derive(Debug)]
pub struct Handover {
    pub pid: u32,
    pub uffd: OwnedFd,
}

/// What the hand-over yields, as it happens.
#[derive(Debug)]
pub(super) enum Handed {
    Process(Handover),
    /// The restore finished: every process was handed over.
    Finished,
    Failed(DaemonError),
}

pub(super) enum Msg {
    Handed(Handed),
    /// A process's descriptor has events to read; the watcher waits for the answer.
    Readable(u32, oneshot::Sender<()>),
    /// A fault read while retrying a copy.
    Fault(u32, u64),
    /// A fork read while retrying a copy, with the parent's missing pages at that moment.
    Forked {
        parent: u32,
        uffd: OwnedFd,
        missing: Missing,
    },
    Gone(u32),
    Chunk(PcHeader, Vec<u8>),
    End,
    /// The container may talk: background pages can start.
    Go,
    PeerLost(std::io::Error),
}
