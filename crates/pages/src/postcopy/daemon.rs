//! The destination side of post-copy: ferry is the restore's lazy-pages daemon.
//!
//! CRIU's restore (`runc restore --lazy-pages`) connects to `lazy-pages.socket` in its
//! work directory and hands over one userfaultfd per process: a 4-byte pid, then one byte
//! carrying the descriptor (SCM_RIGHTS), then, once the restore is complete, a 4-byte
//! "restore finished" mark. From then on every page a process touches that is not there
//! yet stops the thread and raises an event; ferry asks the source for it first and
//! installs it (UFFDIO_COPY), while the source pushes every other page in the background.
//!
//! ferry keeps the descriptors until every page is in place. If the source or the link is
//! lost first, the caller kills the container while ferry still holds them: a process can
//! never read a missing page as zeros.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_criu::images::{read_meta_file, read_pagemap, read_pstree, read_vmas, PE_LAZY};
use ferry_proto::postcopy::{PcHeader, PcKind, FORKED, PAGE_SIZE, PC_HEADER_LEN};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

pub use super::msg::{DaemonError, Handover};
use super::msg::{Handed, Msg};
use super::procs::{self, async_fd, is_first_of_pid, Proc};
use super::ranges::Missing;
use super::uffd::{self, Event};
use super::Channels;
use crate::precopy::refs::{expand, pages_following};
use crate::precopy::store::PageStore;

const LAZY_PAGES_SOCKET: &str = "lazy-pages.socket";
/// How long the restore has to connect and hand every process over.
const HANDOVER_LIMIT: Duration = Duration::from_secs(120);
const RESTORE_FINISHED: u32 = 0x5253_5446;
/// Pages asked for around a fault: one fault usually means its neighbours come next.
const DEMAND_PAGES: u64 = 16;

/// Shown every userfaultfd as it arrives (hand-over or fork), to hold a copy of it in a
/// process of its own: if ferry dies, its copies keep the ranges registered, so that the
/// container's threads wait instead of reading zeros until that process stops them.
pub type Keep = Arc<dyn Fn(std::os::fd::BorrowedFd<'_>) + Send + Sync>;

/// Ready to receive a restore's userfaultfds.
pub struct Prepared {
    listener: UnixListener,
    pids: Vec<u32>,
    missing: HashMap<u32, Missing>,
    /// Hybrid: pages the pre-copy rounds brought, which the source may name by hash.
    store: Option<Arc<PageStore>>,
    keep: Option<Keep>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("pids", &self.pids)
            .finish_non_exhaustive()
    }
}

/// Reads the images and listens on `work/lazy-pages.socket` (before the restore starts).
pub fn prepare(images: &Path, work: &Path) -> Result<Prepared, DaemonError> {
    let img = |name: &str| -> Result<Vec<u8>, DaemonError> {
        read_meta_file(&images.join(name)).map_err(|e| DaemonError::Images(e.to_string()))
    };
    let pids = read_pstree(&img("pstree.img")?, "pstree.img")
        .map_err(|e| DaemonError::Images(e.to_string()))?;
    let mut missing = HashMap::new();
    for &pid in &pids {
        let pm_name = format!("pagemap-{pid}.img");
        if !images.join(&pm_name).exists() {
            continue;
        }
        let map = read_pagemap(&img(&pm_name)?, &pm_name)
            .map_err(|e| DaemonError::Images(e.to_string()))?;
        let mm_name = format!("mm-{pid}.img");
        let vmas =
            read_vmas(&img(&mm_name)?, &mm_name).map_err(|e| DaemonError::Images(e.to_string()))?;
        let lazy: Vec<(u64, u64)> = map
            .entries
            .iter()
            .filter(|e| e.flags & PE_LAZY != 0)
            .map(|e| (e.vaddr, e.nr_pages))
            .collect();
        missing.insert(pid, Missing::from_pagemap(&lazy, &vmas));
    }
    let path = work.join(LAZY_PAGES_SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(DaemonError::Handover)?;
    Ok(Prepared {
        listener,
        pids,
        missing,
        store: None,
        keep: None,
    })
}

impl Prepared {
    /// Pages the restore will leave missing.
    /// Resolves the source's page references from `store` (hybrid migration).
    pub fn with_store(mut self, store: PageStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Shows `keep` every userfaultfd the daemon holds.
    pub fn with_keeper(mut self, keep: Keep) -> Self {
        self.keep = Some(keep);
        self
    }

    pub fn pages_total(&self) -> u64 {
        self.missing.values().map(Missing::pages).sum()
    }
}

fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::io::Result<OwnedFd> {
    match ferry_criu::fdpass::recv(sock.as_raw_fd())? {
        Some((_, Some(fd))) => Ok(fd),
        _ => Err(std::io::Error::other("no descriptor came with the message")),
    }
}

/// Accepts the restore's connection and passes on each process's descriptor as soon as
/// it arrives (the restore itself touches lazy memory, so faults must be served at once),
/// then the restore-finished mark. Blocking: runs on a thread of its own.
fn receive(
    listener: UnixListener,
    nr_tasks: usize,
    limit: Duration,
    out: &mpsc::UnboundedSender<Msg>,
    keep: Option<Keep>,
) {
    let result = (|| -> Result<(), DaemonError> {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as i32) };
        if r <= 0 {
            return Err(DaemonError::Handover(std::io::Error::other(
                "the restore never connected",
            )));
        }
        let (mut sock, _) = listener.accept().map_err(DaemonError::Handover)?;
        for _ in 0..nr_tasks {
            let mut b = [0u8; 4];
            sock.read_exact(&mut b).map_err(DaemonError::Handover)?;
            let pid = i32::from_le_bytes(b);
            if pid < 0 {
                continue; // a zombie: no memory
            }
            let uffd = recv_fd(&sock).map_err(DaemonError::Handover)?;
            if let Some(k) = &keep {
                k(std::os::fd::AsFd::as_fd(&uffd));
            }
            if out
                .send(Msg::Handed(Handed::Process(Handover {
                    pid: pid as u32,
                    uffd,
                })))
                .is_err()
            {
                return Ok(());
            }
        }
        let mut b = [0u8; 4];
        sock.read_exact(&mut b).map_err(DaemonError::Handover)?;
        if u32::from_le_bytes(b) != RESTORE_FINISHED {
            return Err(DaemonError::Handover(std::io::Error::other(
                "no restore-finished mark",
            )));
        }
        Ok(())
    })();
    let _ = out.send(Msg::Handed(match result {
        Ok(()) => Handed::Finished,
        Err(e) => Handed::Failed(e),
    }));
}

/// What the daemon did.
pub use ferry_types::PostcopyStats as DaemonStats;

/// Where a page channel's reader puts what it read: a bounded queue, so that a source
/// cannot make the destination hold more than a few chunks it has not installed yet.
type Sink = mpsc::Sender<Msg>;

/// Reads a reference chunk's entries and pages and rebuilds its pages from the store.
async fn read_refs<R: AsyncRead + Unpin>(
    r: &mut R,
    h: &PcHeader,
    store: Option<&PageStore>,
) -> std::io::Result<Vec<u8>> {
    let store = store.ok_or_else(|| std::io::Error::other("page references without a store"))?;
    let mut entries = vec![0u8; h.data_len()];
    r.read_exact(&mut entries).await?;
    let n = pages_following(&entries).map_err(std::io::Error::other)?;
    let mut pages = vec![0u8; n * PAGE_SIZE as usize];
    r.read_exact(&mut pages).await?;
    expand(store, &entries, &pages).map_err(std::io::Error::other)
}

async fn read_peer<R: AsyncRead + Unpin>(mut r: R, out: Sink, store: Option<Arc<PageStore>>) {
    loop {
        let mut h = [0u8; PC_HEADER_LEN];
        if let Err(e) = r.read_exact(&mut h).await {
            let _ = out.send(Msg::PeerLost(e)).await;
            return;
        }
        let h = match PcHeader::decode(&h) {
            Ok(h) => h,
            Err(e) => {
                let _ = out
                    .send(Msg::PeerLost(std::io::Error::other(e.to_string())))
                    .await;
                return;
            }
        };
        let msg = match h.kind {
            PcKind::Chunk | PcKind::Answer => {
                let mut data = vec![0u8; h.data_len()];
                if let Err(e) = r.read_exact(&mut data).await {
                    let _ = out.send(Msg::PeerLost(e)).await;
                    return;
                }
                Msg::Chunk(h, data)
            }
            PcKind::ChunkRefs | PcKind::AnswerRefs => {
                match read_refs(&mut r, &h, store.as_deref()).await {
                    Ok(data) => Msg::Chunk(
                        PcHeader {
                            kind: h.plain_kind(),
                            ..h
                        },
                        data,
                    ),
                    Err(e) => Msg::PeerLost(e),
                }
            }
            // The source sent every page: the bulk channel has nothing more to say.
            PcKind::End => {
                let _ = out.send(Msg::End).await;
                return;
            }
            other => Msg::PeerLost(std::io::Error::other(format!("unexpected {other:?}"))),
        };
        let stop = matches!(msg, Msg::PeerLost(_));
        if out.send(msg).await.is_err() || stop {
            return;
        }
    }
}

/// How long the daemon waits, once the source sent every page, before it asks again
/// for pages still missing; and how many such rounds may bring nothing.
const QUIET: Duration = Duration::from_secs(2);
const FRUITLESS_SWEEPS: u32 = 3;

/// When to ask again for pages that should have come.
struct Sweep {
    last: Instant,
    fruitless: u32,
}

impl Sweep {
    /// Something came from the source.
    fn heard(&mut self) {
        self.last = Instant::now();
    }
    /// A page went into a process.
    fn progress(&mut self) {
        self.heard();
        self.fruitless = 0;
    }
    fn swept(&mut self) {
        self.heard();
        self.fruitless += 1;
    }
    fn due(&self) -> Instant {
        self.last + QUIET
    }
    fn exhausted(&self) -> bool {
        self.fruitless >= FRUITLESS_SWEEPS
    }
}

/// Answers read ahead of installing them: each may be 4 MiB.
const URGENT_AHEAD: usize = 8;

/// Background chunks read ahead of installing them: a little, so that the link stays busy
/// while faults never wait behind much.
const BULK_AHEAD: usize = 4;

/// Serves the restore that is about to start: takes each process's userfaultfd as it
/// arrives, installs pages, asks the source for those a process faults on, follows memory
/// changes, and returns once every page of every process is in place (the source is told).
/// `installed` counts pages as they land. Background pages start once the restore
/// finished and `go` fired (the caller fires it when the container may talk: until then
/// only its faults are served, so that nothing competes with the end of the downtime).
/// If the source is lost first, `on_loss` runs while ferry still holds the descriptors
/// (it must stop the processes, so that none reads a missing page as zeros).
pub async fn run<P>(
    prepared: Prepared,
    channels: Channels<P>,
    installed: Arc<AtomicU64>,
    go: tokio::sync::oneshot::Receiver<()>,
    on_loss: impl FnOnce() + Send,
) -> Result<DaemonStats, DaemonError>
where
    P: AsyncRead + AsyncWrite + Send + 'static,
{
    let Prepared {
        listener,
        pids,
        missing,
        store,
        keep,
    } = prepared;
    let (ur, pw) = tokio::io::split(channels.urgent);
    let (br, bulk_w) = tokio::io::split(channels.bulk);
    // The loop reads `rx` first (hand-overs, events, faults), then answers to demands,
    // then background chunks.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (utx, mut urx) = mpsc::channel(URGENT_AHEAD);
    let (btx, mut brx) = mpsc::channel(BULK_AHEAD);
    {
        let tx = tx.clone();
        let n = pids.len();
        let keep = keep.clone();
        std::thread::spawn(move || receive(listener, n, HANDOVER_LIMIT, &tx, keep));
    }
    let go_task = {
        let tx = tx.clone();
        tokio::spawn(async move {
            if go.await.is_ok() {
                let _ = tx.send(Msg::Go);
            }
        })
    };
    let readers = [
        tokio::spawn(read_peer(ur, utx, store.clone())),
        tokio::spawn(read_peer(br, btx, store)),
        go_task,
    ];
    let mut d = Daemon::new(pw, tx, installed, missing);
    d.keep = keep;
    let mut bulk_open = true;
    let result = loop {
        if let Some(end) = d.start_or_end().await {
            break end;
        }
        let msg = tokio::select! {
            biased;
            m = rx.recv() => m,
            m = urx.recv() => m,
            m = brx.recv(), if bulk_open => match m {
                Some(m) => Some(m),
                None => {
                    // After `End`, the bulk reader is done.
                    bulk_open = false;
                    continue;
                }
            },
            () = tokio::time::sleep_until(d.sweep.due().into()), if d.owes_after_end() => {
                if let Err(e) = d.sweep_missing().await {
                    break Err(e);
                }
                continue;
            }
        };
        let Some(msg) = msg else {
            break Err(DaemonError::PeerLost(std::io::Error::other(
                "channel closed",
            )));
        };
        if let Err(e) = d.handle(msg).await {
            break Err(e);
        }
    };
    // The processes must not read a missing page as zeros once ferry lets go of their
    // descriptors.
    if result.is_err() && d.procs.iter().any(|p| !p.missing.is_empty()) {
        on_loss();
    }
    drop(bulk_w);
    let stats = d.stats;
    finish(d.procs, &readers, result.map(|()| stats))
}

/// The daemon's state while it serves a restored container.
struct Daemon<W> {
    /// The urgent channel's writing half: demands, `Start`, `Done`.
    pw: W,
    tx: mpsc::UnboundedSender<Msg>,
    installed: Arc<AtomicU64>,
    /// Pages still missing per pid, until its process is handed over.
    missing: HashMap<u32, Missing>,
    procs: Vec<Proc>,
    stats: DaemonStats,
    /// Every process was handed over (the restore finished).
    finished: bool,
    /// The container may talk.
    go: bool,
    /// `Start` was sent: background pages flow.
    started: bool,
    /// Tokens name process copies: 1, 2, … in hand-over order, then forked children. The
    /// source sends background pages with token 0, for the first process of each pid.
    next_token: u32,
    keep: Option<Keep>,
    /// The source sent `End`: every background page is here or on its way.
    bulk_ended: bool,
    sweep: Sweep,
}

impl<W: AsyncWrite + Unpin> Daemon<W> {
    fn new(
        pw: W,
        tx: mpsc::UnboundedSender<Msg>,
        installed: Arc<AtomicU64>,
        missing: HashMap<u32, Missing>,
    ) -> Self {
        let stats = DaemonStats {
            pages_total: missing.values().map(Missing::pages).sum(),
            ..Default::default()
        };
        Self {
            pw,
            tx,
            installed,
            missing,
            procs: Vec::new(),
            stats,
            finished: false,
            go: false,
            started: false,
            next_token: 1,
            keep: None,
            bulk_ended: false,
            sweep: Sweep {
                last: Instant::now(),
                fruitless: 0,
            },
        }
    }

    /// Pages are missing though the source sent every page.
    fn owes_after_end(&self) -> bool {
        self.started && self.bulk_ended && self.procs.iter().any(|p| !p.missing.is_empty())
    }

    async fn send(&mut self, h: &PcHeader) -> Result<(), DaemonError> {
        super::send_now(&mut self.pw, &h.encode())
            .await
            .map_err(DaemonError::PeerLost)
    }

    /// Sends `Start` once the restore finished and the container may talk; ends the
    /// loop (`Done` sent) once every page of every process is in place.
    async fn start_or_end(&mut self) -> Option<Result<(), DaemonError>> {
        if self.finished && self.go && !self.started {
            self.started = true;
            if let Err(e) = self.send(&PcHeader::control(PcKind::Start)).await {
                return Some(Err(e));
            }
        }
        if self.finished && self.procs.iter().all(|p| p.missing.is_empty()) {
            return Some(self.send(&PcHeader::control(PcKind::Done)).await);
        }
        None
    }

    async fn handle(&mut self, msg: Msg) -> Result<(), DaemonError> {
        match msg {
            Msg::Handed(Handed::Process(h)) => {
                let fd = Arc::new(async_fd(h.uffd)?);
                let m = self.missing.remove(&h.pid).unwrap_or_default();
                self.adopt(h.pid, fd, m, false);
            }
            Msg::Handed(Handed::Finished) => self.finished = true,
            Msg::Go => self.go = true,
            Msg::Handed(Handed::Failed(e)) => return Err(e),
            Msg::Chunk(h, data) => {
                self.sweep.heard();
                self.chunk(&h, &data).await?;
            }
            Msg::End => self.bulk_ended = true,
            Msg::Readable(token, ack) => {
                let r = self.drain(token).await;
                let _ = ack.send(());
                r?;
            }
            Msg::Fault(token, address) => {
                if let Some(idx) = self.index(token) {
                    self.fault(idx, address).await?;
                }
            }
            Msg::Forked {
                parent,
                uffd,
                missing,
            } => {
                if let Some(idx) = self.index(parent) {
                    self.fork(idx, uffd, missing).await?;
                }
            }
            Msg::Gone(token) => {
                if let Some(idx) = self.index(token) {
                    self.procs[idx].missing = Missing::default();
                }
            }
            Msg::PeerLost(e) => return Err(DaemonError::PeerLost(e)),
        }
        Ok(())
    }

    fn index(&self, token: u32) -> Option<usize> {
        self.procs.iter().position(|p| p.token == token)
    }

    /// A process copy to serve, under a new token.
    fn adopt(
        &mut self,
        pid: u32,
        fd: Arc<AsyncFd<OwnedFd>>,
        missing: Missing,
        forked: bool,
    ) -> u32 {
        let token = (self.next_token & !FORKED) | if forked { FORKED } else { 0 };
        self.next_token += 1;
        let events = procs::watch(token, fd.clone(), self.tx.clone());
        self.procs.push(Proc {
            token,
            pid,
            fd,
            missing,
            demanded: BTreeSet::new(),
            events,
        });
        token
    }

    /// Pages from the source. Answers go to the process that asked; background pages to
    /// the first process with that pid (a forked child asks for its own).
    async fn chunk(&mut self, h: &PcHeader, data: &[u8]) -> Result<(), DaemonError> {
        let procs = &self.procs;
        let targets: Vec<usize> = (0..procs.len())
            .filter(|&i| procs[i].pid == h.pid)
            .filter(|&i| match h.kind {
                PcKind::Answer => procs[i].token == h.token,
                _ => is_first_of_pid(procs, i),
            })
            .collect();
        for i in targets {
            let n = procs::install(&mut self.procs[i], h, data, &self.tx).await?;
            self.installed.fetch_add(n, Ordering::Relaxed);
            if n > 0 {
                self.sweep.progress();
            }
            if h.kind == PcKind::Answer {
                self.stats.pages_on_demand += n;
            } else {
                self.stats.pages_pushed += n;
            }
        }
        Ok(())
    }

    /// Reads and handles, in order, every event a process's descriptor holds.
    async fn drain(&mut self, token: u32) -> Result<(), DaemonError> {
        while let Some(idx) = self.index(token) {
            match uffd::read_event(self.procs[idx].fd.as_raw_fd()) {
                Ok(Some(Event::PageFault { address })) => self.fault(idx, address).await?,
                Ok(Some(Event::Fork { uffd })) => {
                    let missing = self.procs[idx].missing.clone();
                    self.fork(idx, uffd, missing).await?;
                }
                Ok(Some(ev)) => procs::apply_map_change(&mut self.procs[idx], ev),
                Ok(None) => break,
                Err(_) => {
                    self.procs[idx].missing = Missing::default();
                    break;
                }
            }
        }
        Ok(())
    }

    /// A process waits for a page: ask the source for it (and the pages after it), or
    /// give it a zero page if the images have none there.
    async fn fault(&mut self, idx: usize, address: u64) -> Result<(), DaemonError> {
        self.stats.faults += 1;
        let p = &mut self.procs[idx];
        let page = address & !(PAGE_SIZE - 1);
        let Some(run) = p.missing.find(page) else {
            self.stats.zero_pages += 1;
            return procs::zero_page(p, page, &self.tx).await;
        };
        let img = run.img_start + (page - run.start);
        if !p.demanded.insert(img) {
            return Ok(());
        }
        let nr = DEMAND_PAGES.min((run.end - page) / PAGE_SIZE);
        for k in 1..nr {
            p.demanded.insert(img + k * PAGE_SIZE);
        }
        let d = PcHeader {
            kind: PcKind::Demand,
            token: p.token,
            pid: p.pid,
            nr_pages: nr as u32,
            vaddr: img,
        };
        self.send(&d).await
    }

    /// A process forked: its child's memory lacks what the parent lacked at that moment
    /// (`missing`), and needs its own copy of each of those pages, so all are asked for.
    async fn fork(
        &mut self,
        idx: usize,
        uffd: OwnedFd,
        missing: Missing,
    ) -> Result<(), DaemonError> {
        if let Some(k) = &self.keep {
            k(std::os::fd::AsFd::as_fd(&uffd));
        }
        let fd = Arc::new(async_fd(uffd)?);
        let pid = self.procs[idx].pid;
        let token = self.adopt(pid, fd, missing.clone(), true);
        self.ask_all(token, pid, &missing).await
    }

    /// Asks the source for every page of `missing`, for the process copy `token`.
    async fn ask_all(
        &mut self,
        token: u32,
        pid: u32,
        missing: &Missing,
    ) -> Result<(), DaemonError> {
        for r in missing.runs() {
            let mut off = 0;
            let pages = (r.end - r.start) / PAGE_SIZE;
            while off < pages {
                let n = (pages - off).min(u64::from(ferry_proto::postcopy::PC_MAX_PAGES));
                let d = PcHeader {
                    kind: PcKind::Demand,
                    token,
                    pid,
                    nr_pages: n as u32,
                    vaddr: r.img_start + off * PAGE_SIZE,
                };
                self.send(&d).await?;
                off += n;
            }
        }
        Ok(())
    }

    /// The source sent every page and nothing came for a while, yet pages are missing:
    /// ask for each of them again. Sweeps that bring nothing end the copy with an error.
    async fn sweep_missing(&mut self) -> Result<(), DaemonError> {
        let owed: u64 = self.procs.iter().map(|p| p.missing.pages()).sum();
        if self.sweep.exhausted() {
            return Err(DaemonError::Stalled(owed));
        }
        tracing::warn!(
            "post-copy: {owed} pages still missing after the source sent every page; \
             asking for them again"
        );
        let wanted: Vec<(u32, u32, Missing)> = self
            .procs
            .iter()
            .filter(|p| !p.missing.is_empty())
            .map(|p| (p.token, p.pid, p.missing.clone()))
            .collect();
        for (token, pid, missing) in wanted {
            self.ask_all(token, pid, &missing).await?;
        }
        self.sweep.swept();
        Ok(())
    }
}

fn finish<T>(
    procs: Vec<Proc>,
    readers: &[tokio::task::JoinHandle<()>],
    r: Result<T, DaemonError>,
) -> Result<T, DaemonError> {
    for r in readers {
        r.abort();
    }
    for p in &procs {
        p.events.abort();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn send_fd(sock: &std::os::unix::net::UnixStream, fd: i32) {
        ferry_criu::fdpass::send(sock.as_raw_fd(), 0, fd).unwrap();
    }

    /// Speaks the restore's side of the hand-over, with pipes standing in for the
    /// userfaultfds.
    #[test]
    fn passes_on_each_live_process_then_the_finished_mark() {
        let d = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(d.path().join(LAZY_PAGES_SOCKET)).unwrap();
        let path = d.path().join(LAZY_PAGES_SOCKET);
        let restore = std::thread::spawn(move || {
            let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
            let (r1, _w1) = std::io::pipe().unwrap();
            s.write_all(&1i32.to_le_bytes()).unwrap();
            send_fd(&s, r1.as_raw_fd());
            s.write_all(&(-7i32).to_le_bytes()).unwrap();
            let (r9, _w9) = std::io::pipe().unwrap();
            s.write_all(&9i32.to_le_bytes()).unwrap();
            send_fd(&s, r9.as_raw_fd());
            s.write_all(&RESTORE_FINISHED.to_le_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The keeper is shown each descriptor as it arrives.
        let shown = Arc::new(AtomicU64::new(0));
        let count = shown.clone();
        let keep: Keep = Arc::new(move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        receive(listener, 3, Duration::from_secs(5), &tx, Some(keep));
        restore.join().unwrap();
        assert_eq!(shown.load(Ordering::SeqCst), 2);
        let mut pids = Vec::new();
        let mut finished = false;
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Handed(Handed::Process(h)) => pids.push(h.pid),
                Msg::Handed(Handed::Finished) => finished = true,
                _ => panic!("unexpected message"),
            }
        }
        assert_eq!(pids, vec![1, 9], "the zombie has no descriptor");
        assert!(finished);
    }

    /// A userfaultfd for `len` bytes of fresh anonymous memory of this process; `None`
    /// where the kernel does not let this user have one.
    fn registered_memory(len: usize) -> Option<(OwnedFd, u64)> {
        use std::os::fd::FromRawFd;
        const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
        const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
        // SAFETY: plain syscalls; the mapping is leaked for the test's lifetime.
        unsafe {
            let fd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK);
            if fd < 0 {
                return None;
            }
            let fd = OwnedFd::from_raw_fd(fd as i32);
            let mut api = [0xAAu64, 0, 0];
            assert_eq!(libc::ioctl(fd.as_raw_fd(), UFFDIO_API, api.as_mut_ptr()), 0);
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            // range (start, len), mode MISSING, ioctls out.
            let mut reg = [addr as u64, len as u64, 1, 0];
            assert_eq!(
                libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER, reg.as_mut_ptr()),
                0
            );
            Some((fd, addr as u64))
        }
    }

    async fn next_control(r: &mut tokio::io::ReadHalf<tokio::io::DuplexStream>) -> PcHeader {
        let mut h = [0u8; PC_HEADER_LEN];
        r.read_exact(&mut h).await.unwrap();
        PcHeader::decode(&h).unwrap()
    }

    /// The source's pushes lose a page: once the source said `End` and nothing comes,
    /// the daemon asks for it again instead of waiting for ever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_the_pushes_lost_is_asked_for_again() {
        use tokio::io::AsyncWriteExt;
        let Some((uffd, addr)) = registered_memory(4 * PAGE_SIZE as usize) else {
            eprintln!("skipped: no userfaultfd for this user");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LAZY_PAGES_SOCKET);
        let listener = UnixListener::bind(&path).unwrap();
        let missing = Missing::from_pagemap(&[(addr, 4)], &[(addr, addr + 4 * PAGE_SIZE)]);
        let prepared = Prepared {
            listener,
            pids: vec![7],
            missing: HashMap::from([(7, missing)]),
            store: None,
            keep: None,
        };
        let restore = std::thread::spawn(move || {
            let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
            s.write_all(&7i32.to_le_bytes()).unwrap();
            send_fd(&s, uffd.as_raw_fd());
            s.write_all(&RESTORE_FINISHED.to_le_bytes()).unwrap();
        });
        let (b1, b2) = tokio::io::duplex(1 << 20);
        let (u1, u2) = tokio::io::duplex(1 << 20);
        let (go_tx, go) = tokio::sync::oneshot::channel();
        go_tx.send(()).unwrap();
        let installed = Arc::new(AtomicU64::new(0));
        let daemon = tokio::spawn(run(
            prepared,
            Channels {
                bulk: b1,
                urgent: u1,
            },
            installed.clone(),
            go,
            || {},
        ));
        restore.join().unwrap();
        let (mut ur, mut uw) = tokio::io::split(u2);
        let mut bulk = b2;
        assert_eq!(next_control(&mut ur).await.kind, PcKind::Start);
        let page = |n: u64| vec![n as u8 + 1; PAGE_SIZE as usize];
        // Pages 0, 1 and 3 are pushed; page 2 is lost on the way.
        for n in [0u64, 1, 3] {
            let h = PcHeader {
                kind: PcKind::Chunk,
                token: 0,
                pid: 7,
                nr_pages: 1,
                vaddr: addr + n * PAGE_SIZE,
            };
            bulk.write_all(&h.encode()).await.unwrap();
            bulk.write_all(&page(n)).await.unwrap();
        }
        bulk.write_all(&PcHeader::control(PcKind::End).encode())
            .await
            .unwrap();
        let ask = next_control(&mut ur).await;
        assert_eq!(
            (ask.kind, ask.pid, ask.vaddr, ask.nr_pages),
            (PcKind::Demand, 7, addr + 2 * PAGE_SIZE, 1)
        );
        let answer = PcHeader {
            kind: PcKind::Answer,
            ..ask
        };
        uw.write_all(&answer.encode()).await.unwrap();
        uw.write_all(&page(2)).await.unwrap();
        assert_eq!(next_control(&mut ur).await.kind, PcKind::Done);
        daemon.await.unwrap().unwrap();
        assert_eq!(installed.load(Ordering::Relaxed), 4);
        for n in 0..4u64 {
            // SAFETY: the pages are in place now (the daemon said Done).
            let b = unsafe { *((addr + n * PAGE_SIZE) as *const u8) };
            assert_eq!(b, n as u8 + 1, "page {n}");
        }
    }

    #[test]
    fn a_restore_that_never_connects_is_a_failure() {
        let d = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(d.path().join(LAZY_PAGES_SOCKET)).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        receive(listener, 1, Duration::from_millis(50), &tx, None);
        assert!(matches!(rx.try_recv(), Ok(Msg::Handed(Handed::Failed(_)))));
    }
}
