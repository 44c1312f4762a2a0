//! Post-copy: the container runs at the destination before its memory is there.
//!
//! - [`pump`]: the source asks the dump's CRIU (a lazy page server on a local socket
//!   pair) for every page and streams them to the destination, demands first;
//! - [`daemon`]: the destination is CRIU's lazy-pages daemon itself: it receives the
//!   restored processes' userfaultfds, installs pages as they arrive, asks the source
//!   first for those a process faulted on, and follows the processes' memory changes;
//! - [`ranges`]: which pages are still missing; [`uffd`]: the kernel interface.

pub mod daemon;
mod msg;
mod procs;
pub mod pump;
pub mod ranges;
pub mod uffd;

/// The two page channels between source and destination (see `ferry_proto::postcopy`).
#[derive(Debug)]
pub struct Channels<P> {
    /// Background pages, source to destination.
    pub bulk: P,
    /// Demands one way, their answers the other; also `Start` and `Done`.
    pub urgent: P,
}

/// Writes `bytes` and flushes them: over TLS, written bytes may wait in the stream's
/// buffer until a flush, and the peer waits for them.
pub(crate) async fn send_now<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(bytes).await?;
    w.flush().await
}
