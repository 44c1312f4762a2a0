//! The restored processes the lazy-pages daemon serves, and how pages go into them.
//!
//! The kernel expects one monitor that reads a descriptor's events in order and handles
//! each before its next copy: a fork, a discard or a move blocks the process until ferry
//! has read it, and copies meanwhile fail with `EAGAIN`. So only the daemon's loop reads
//! events; a watcher task per descriptor merely says when there is something to read.
//! A fork's child gets the parent's missing set as it was when the event was read.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proto::postcopy::{PcHeader, PAGE_SIZE};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use super::msg::{DaemonError, Msg};
use super::ranges::Missing;
use super::uffd::{self, Event, Fill};

/// How long a copy may keep failing because the process's memory map is changing.
const RETRY_FOR: Duration = Duration::from_secs(10);

pub(super) struct Proc {
    pub token: u32,
    pub pid: u32,
    pub fd: Arc<AsyncFd<OwnedFd>>,
    pub missing: Missing,
    pub demanded: BTreeSet<u64>,
    pub events: tokio::task::JoinHandle<()>,
}

/// Says `Readable(token)` each time the descriptor has events, and waits until the loop
/// read them all before it waits again.
pub(super) fn watch(
    token: u32,
    fd: Arc<AsyncFd<OwnedFd>>,
    tx: mpsc::UnboundedSender<Msg>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable().await else {
                let _ = tx.send(Msg::Gone(token));
                return;
            };
            let (ack, drained) = oneshot::channel();
            if tx.send(Msg::Readable(token, ack)).is_err() || drained.await.is_err() {
                return;
            }
            // Events that came after the loop's last read mark the descriptor ready again:
            // clearing keeps that mark.
            guard.clear_ready();
        }
    })
}

/// Registers a descriptor the restore or a fork handed over with the runtime.
pub(super) fn async_fd(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, DaemonError> {
    // SAFETY: fcntl on a valid descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    // SAFETY: an OwnedFd stays open, with the same number, until the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| DaemonError::Uffd(std::io::Error::other(e.to_string())))
}

/// Whether `procs[i]` is the first process with its pid (background pages go to it).
pub(super) fn is_first_of_pid(procs: &[Proc], i: usize) -> bool {
    procs.iter().position(|p| p.pid == procs[i].pid) == Some(i)
}

/// Copies the still-missing parts of a chunk into one process; returns the pages placed.
/// A copy the kernel turns away while the memory map changes is tried again, after
/// reading the events that explain it, for up to [`RETRY_FOR`]: a page is never dropped.
pub(super) async fn install(
    p: &mut Proc,
    h: &PcHeader,
    data: &[u8],
    tx: &mpsc::UnboundedSender<Msg>,
) -> Result<u64, DaemonError> {
    let started = Instant::now();
    let mut placed = 0;
    for attempt in 0u32.. {
        let (n, retry) = install_once(p, h, data, tx)?;
        placed += n;
        if !retry {
            break;
        }
        if started.elapsed() > RETRY_FOR {
            return Err(DaemonError::Uffd(std::io::Error::other(format!(
                "the memory map of process {} kept changing for {} s",
                p.pid,
                RETRY_FOR.as_secs()
            ))));
        }
        // The process that changes its map finishes once it runs again.
        if attempt < 4 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for k in 0..u64::from(h.nr_pages) {
        p.demanded.remove(&h.vaddr.wrapping_add(k * PAGE_SIZE));
    }
    Ok(placed)
}

/// One pass over the chunk's placements; says whether the kernel asked to retry.
fn install_once(
    p: &mut Proc,
    h: &PcHeader,
    data: &[u8],
    tx: &mpsc::UnboundedSender<Msg>,
) -> Result<(u64, bool), DaemonError> {
    let mut placed = 0;
    for pl in p.missing.place(h.vaddr, data.len() as u64) {
        let bytes = &data[pl.offset as usize..(pl.offset + pl.len) as usize];
        match uffd::copy(p.fd.get_ref(), pl.dst, bytes).map_err(DaemonError::Uffd)? {
            Fill::Done => {
                p.missing.remove(pl.dst, pl.len);
                placed += pl.len / PAGE_SIZE;
            }
            Fill::Retry { copied } => {
                p.missing.remove(pl.dst, copied);
                placed += copied / PAGE_SIZE;
                take_events(p, tx);
                return Ok((placed, true));
            }
            Fill::Gone => p.missing.remove(pl.dst, pl.len),
            Fill::Exited => {
                p.missing = Missing::default();
                break;
            }
        }
    }
    Ok((placed, false))
}

/// Gives a process that faulted where the images have nothing a zero page.
pub(super) async fn zero_page(
    p: &mut Proc,
    page: u64,
    tx: &mpsc::UnboundedSender<Msg>,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    loop {
        match uffd::zeropage(p.fd.get_ref(), page, PAGE_SIZE).map_err(DaemonError::Uffd)? {
            Fill::Retry { .. } if started.elapsed() <= RETRY_FOR => {
                take_events(p, tx);
                tokio::task::yield_now().await;
            }
            Fill::Retry { .. } => {
                return Err(DaemonError::Uffd(std::io::Error::other(
                    "the memory map kept changing",
                )))
            }
            Fill::Exited => {
                p.missing = Missing::default();
                return Ok(());
            }
            Fill::Done | Fill::Gone => return Ok(()),
        }
    }
}

/// Reads the events that made a copy fail and applies the map changes at once, in
/// order; a fork's child is snapshotted now, faults go back to the loop.
fn take_events(p: &mut Proc, tx: &mpsc::UnboundedSender<Msg>) {
    while let Ok(Some(ev)) = uffd::read_event(p.fd.as_raw_fd()) {
        match ev {
            Event::Fork { uffd } => {
                let _ = tx.send(Msg::Forked {
                    parent: p.token,
                    uffd,
                    missing: p.missing.clone(),
                });
            }
            Event::PageFault { address } => {
                let _ = tx.send(Msg::Fault(p.token, address));
            }
            other => apply_map_change(p, other),
        }
    }
}

/// A discard, unmap or move: the pages concerned are no longer owed, or owed elsewhere.
pub(super) fn apply_map_change(p: &mut Proc, ev: Event) {
    match ev {
        Event::Remove { start, end } => {
            let _ = uffd::unregister(p.fd.get_ref(), start, end - start);
            p.missing.remove(start, end - start);
        }
        Event::Unmap { start, end } => p.missing.remove(start, end - start),
        Event::Remap { from, to, len } => p.missing.remap(from, to, len),
        Event::PageFault { .. } | Event::Fork { .. } | Event::Other(_) => {}
    }
}
