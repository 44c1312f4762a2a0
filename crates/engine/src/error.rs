//! Why an operation failed, one error type per operation, each variant worded for the
//! user: the report's `reason` is the error's sentence.
//!
//! A migration's source half fails in one of its operations (prepare, dump, transfer,
//! restore, commit, post-copy); [`MigrateError`] says which. Rolling back can fail too
//! ([`RollbackError`]). The destination's failures ([`IncomingError`]) travel back to the
//! source as the destination's refusal.

use std::time::Duration;

use ferry_criu::log::CriuFailure;
use thiserror::Error;

use crate::policy::auto::StrategyError;
use crate::ports::container::ContainerError;
use crate::ports::host::AdmitError;
use crate::ports::network::NetworkError;
use crate::ports::pages::PagesError;
use crate::ports::peer::LinkError;

/// The destination failed to answer as it should, or went away.
#[derive(Debug, Error)]
pub enum PeerError {
    #[error("lost the destination: {0}")]
    Lost(#[from] LinkError),
    #[error("the destination did not answer within {limit:?} (waiting for {what})")]
    Timeout { limit: Duration, what: &'static str },
    #[error("the destination refused: {0}")]
    Refused(String),
    #[error("unexpected {0} from the destination")]
    Unexpected(&'static str),
}

/// Sending a file to the destination failed.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} shrank while being sent")]
    Shrank(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// Before the freeze: nothing changed on the source.
#[derive(Debug, Error)]
pub enum PrepareError {
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    #[error(transparent)]
    Compress(#[from] ferry_types::UnknownCompression),
    #[error("destination unreachable: {0}; check that its agent runs and listens at that address")]
    Unreachable(LinkError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Pages(#[from] PagesError),
    #[error("no randomness: {0}")]
    Randomness(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the client did not let the container freeze (it went away or waited too long); nothing changed")]
    NotReleased,
    #[error(transparent)]
    NewAddress(#[from] ferry_types::NewAddressError),
    #[error("--new-ip moves runc containers only; {0} keeps the container's address in its own network configuration: move it without --new-ip")]
    NewAddressEngine(&'static str),
    #[error("container '{container}' already runs on {host}; there is nothing to move")]
    AlreadyHere { container: String, host: String },
}

/// The freeze and the dump.
#[derive(Debug, Error)]
pub enum DumpError {
    #[error("cannot freeze the container: {0}")]
    Freeze(ContainerError),
    #[error(transparent)]
    Lock(NetworkError),
    /// CRIU failed: its error lines, the log, and whether it died without a word (its
    /// sockets were then left in repair mode, which the rollback undoes).
    #[error("checkpoint failed: {failure}{}", if *.died { "; CRIU ended without reporting an error (it was probably killed); ferry took the connections it was saving out of repair mode before the thaw" } else { "" })]
    Criu {
        failure: Box<CriuFailure>,
        died: bool,
    },
    #[error("cannot start the page stream: {0}")]
    PageStream(PagesError),
    #[error("reading the lazy pagemaps: {0}")]
    Pagemaps(PagesError),
}

/// Moving the memory and the images.
#[derive(Debug, Error)]
pub enum TransferError {
    /// A page channel broke between two steps; the sentence is the data plane's.
    #[error(transparent)]
    Channel(PagesError),
    #[error("pre-copy round failed: {0}")]
    Round(PagesError),
    #[error("the page transfer broke: {0}")]
    Pages(PagesError),
    #[error(transparent)]
    Detach(NetworkError),
    #[error("finding the files that changed after the bundle was sent: {0}")]
    Changes(ContainerError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// The restore at the destination, as the source sees it.
#[derive(Debug, Error)]
pub enum RestoreError {
    #[error("the destination could not restore the container: {0}")]
    Remote(String),
    #[error("the client did not let the container restore (it went away, gave up or waited too long); it runs on the source again")]
    NotReleased,
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// The commit.
#[derive(Debug, Error)]
pub enum CommitError {
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// Post-copy, after the container started at the destination.
#[derive(Debug, Error)]
pub enum PostcopyError {
    #[error("post-copy broke: {0}")]
    Pump(PagesError),
    #[error("post-copy broke at the destination: {0}")]
    Remote(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// Why a migration stopped, by the operation that failed.
#[derive(Debug, Error)]
pub enum MigrateError {
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Postcopy(#[from] PostcopyError),
}

impl MigrateError {
    /// CRIU's own words, when CRIU failed.
    pub fn criu(&self) -> Option<&CriuFailure> {
        match self {
            MigrateError::Dump(DumpError::Criu { failure, .. }) => Some(failure),
            _ => None,
        }
    }
}

pub use crate::source::rollback::RollbackError;

/// The destination's side of a failure: what it tells the source.
#[derive(Debug, Error)]
pub enum IncomingError {
    #[error(transparent)]
    Admit(#[from] AdmitError),
    #[error("moving the container's sockets to its new address: {0}")]
    Readdress(String),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: more data than announced")]
    TooMuchData(String),
    #[error("{0}: bytes missing")]
    BytesMissing(String),
    #[error("data without a file")]
    DataWithoutFile,
    #[error("received {got} bytes of pages where the source sent {sent}")]
    PagesShort { got: u64, sent: u64 },
    #[error(transparent)]
    Pages(#[from] PagesError),
    #[error("the page server task failed: {0}")]
    PageTask(String),
    #[error("the page server did not finish within 120 s")]
    PagesLate,
    #[error("no session")]
    NoSession,
    /// CRIU's restore failed: its error lines and log.
    #[error("{0}")]
    Restore(Box<CriuFailure>),
    /// The restore failed without CRIU saying why.
    #[error("{error}; CRIU's log: {log}")]
    RestoreTool { error: String, log: String },
    #[error("the page channel broke during the restore")]
    PageChannelLost,
    /// The rest of the container's pod did not arrive.
    #[error(transparent)]
    Pod(#[from] crate::ports::host::PodError),
}

impl IncomingError {
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_string(),
            source,
        }
    }
}
