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
use std::time::Duration;

use ferry_criu::images::{read_meta_file, read_pagemap, read_pstree, read_vmas, PE_LAZY};
use ferry_proto::postcopy::{PcHeader, PcKind, PAGE_SIZE, PC_HEADER_LEN};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

use super::ranges::Missing;
use super::uffd::{self, Event, Fill};
use super::Channels;
use crate::precopy::refs::{expand, pages_following};
use crate::precopy::store::PageStore;

const LAZY_PAGES_SOCKET: &str = "lazy-pages.socket";
/// How long the restore has to connect and hand every process over.
const HANDOVER_LIMIT: Duration = Duration::from_secs(120);
const RESTORE_FINISHED: u32 = 0x5253_5446;
/// Pages asked for around a fault: one fault usually means its neighbours come next.
const DEMAND_PAGES: u64 = 16;

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
}

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

/// One process's descriptor, as the restore handed it over.
#[derive(Debug)]
pub struct Handover {
    pub pid: u32,
    pub uffd: OwnedFd,
}

fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::io::Result<OwnedFd> {
    match ferry_criu::fdpass::recv(sock.as_raw_fd())? {
        Some((_, Some(fd))) => Ok(fd),
        _ => Err(std::io::Error::other("no descriptor came with the message")),
    }
}

/// What the hand-over yields, as it happens.
#[derive(Debug)]
enum Handed {
    Process(Handover),
    /// The restore finished: every process was handed over.
    Finished,
    Failed(DaemonError),
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

struct Proc {
    token: u32,
    pid: u32,
    fd: Arc<AsyncFd<OwnedFd>>,
    missing: Missing,
    demanded: BTreeSet<u64>,
    events: tokio::task::JoinHandle<()>,
}

enum Msg {
    Handed(Handed),
    Event(u32, Event),
    Gone(u32),
    Chunk(PcHeader, Vec<u8>),
    End,
    /// The container may talk: background pages can start.
    Go,
    PeerLost(std::io::Error),
}

fn watch_events(
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
            loop {
                match uffd::read_event(fd.as_raw_fd()) {
                    Ok(Some(ev)) => {
                        if tx.send(Msg::Event(token, ev)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let _ = tx.send(Msg::Gone(token));
                        return;
                    }
                }
            }
            guard.clear_ready();
        }
    })
}

/// Where a page channel's reader puts what it read.
enum Sink {
    Priority(mpsc::UnboundedSender<Msg>),
    Bulk(mpsc::Sender<Msg>),
}

impl Sink {
    async fn put(&self, m: Msg) -> bool {
        match self {
            Sink::Priority(tx) => tx.send(m).is_ok(),
            Sink::Bulk(tx) => tx.send(m).await.is_ok(),
        }
    }
}

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
            out.put(Msg::PeerLost(e)).await;
            return;
        }
        let h = match PcHeader::decode(&h) {
            Ok(h) => h,
            Err(e) => {
                out.put(Msg::PeerLost(std::io::Error::other(e.to_string())))
                    .await;
                return;
            }
        };
        let msg = match h.kind {
            PcKind::Chunk | PcKind::Answer => {
                let mut data = vec![0u8; h.data_len()];
                if let Err(e) = r.read_exact(&mut data).await {
                    out.put(Msg::PeerLost(e)).await;
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
                out.put(Msg::End).await;
                return;
            }
            other => Msg::PeerLost(std::io::Error::other(format!("unexpected {other:?}"))),
        };
        let stop = matches!(msg, Msg::PeerLost(_));
        if !out.put(msg).await || stop {
            return;
        }
    }
}

fn async_fd(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, DaemonError> {
    // SAFETY: an OwnedFd stays open, with the same number, until the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| DaemonError::Uffd(std::io::Error::other(e.to_string())))
}

fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on a valid descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

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
    // Everything but background chunks goes through `rx`, which the loop always reads
    // first: hand-overs, faults, answers.
    let (tx, mut rx) = mpsc::unbounded_channel();
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
        tokio::spawn(read_peer(ur, Sink::Priority(tx.clone()), store.clone())),
        tokio::spawn(read_peer(br, Sink::Bulk(btx), store)),
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
            m = brx.recv(), if bulk_open => match m {
                Some(m) => Some(m),
                None => {
                    // After `End`, the bulk reader is done.
                    bulk_open = false;
                    continue;
                }
            },
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
}

fn control(kind: PcKind) -> PcHeader {
    PcHeader {
        kind,
        token: 0,
        pid: 0,
        nr_pages: 0,
        vaddr: 0,
    }
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
        }
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
            if let Err(e) = self.send(&control(PcKind::Start)).await {
                return Some(Err(e));
            }
        }
        if self.finished && self.procs.iter().all(|p| p.missing.is_empty()) {
            return Some(self.send(&control(PcKind::Done)).await);
        }
        None
    }

    async fn handle(&mut self, msg: Msg) -> Result<(), DaemonError> {
        match msg {
            Msg::Handed(Handed::Process(h)) => {
                set_nonblocking(&h.uffd);
                let fd = Arc::new(async_fd(h.uffd)?);
                let m = self.missing.remove(&h.pid).unwrap_or_default();
                self.adopt(h.pid, fd, m);
            }
            Msg::Handed(Handed::Finished) => self.finished = true,
            Msg::Go => self.go = true,
            Msg::Handed(Handed::Failed(e)) => return Err(e),
            Msg::Chunk(h, data) => self.chunk(&h, &data)?,
            Msg::End => {}
            Msg::Event(token, ev) => {
                if let Some(idx) = self.procs.iter().position(|p| p.token == token) {
                    self.event(idx, ev).await?;
                }
            }
            Msg::Gone(token) => {
                if let Some(idx) = self.procs.iter().position(|p| p.token == token) {
                    self.procs[idx].missing = Missing::default();
                }
            }
            Msg::PeerLost(e) => return Err(DaemonError::PeerLost(e)),
        }
        Ok(())
    }

    /// A process copy to serve, under a new token.
    fn adopt(&mut self, pid: u32, fd: Arc<AsyncFd<OwnedFd>>, missing: Missing) -> u32 {
        let token = self.next_token;
        self.next_token += 1;
        let events = watch_events(token, fd.clone(), self.tx.clone());
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
    fn chunk(&mut self, h: &PcHeader, data: &[u8]) -> Result<(), DaemonError> {
        let procs = &self.procs;
        let targets: Vec<usize> = (0..procs.len())
            .filter(|&i| procs[i].pid == h.pid)
            .filter(|&i| match h.kind {
                PcKind::Answer => procs[i].token == h.token,
                _ => is_first_of_pid(procs, i),
            })
            .collect();
        for i in targets {
            let n = install(&mut self.procs[i], h, data, &self.tx)?;
            self.installed.fetch_add(n, Ordering::Relaxed);
            if h.kind == PcKind::Answer {
                self.stats.pages_on_demand += n;
            } else {
                self.stats.pages_pushed += n;
            }
        }
        Ok(())
    }

    /// What a process's userfaultfd reported.
    async fn event(&mut self, idx: usize, ev: Event) -> Result<(), DaemonError> {
        match ev {
            Event::PageFault { address } => self.fault(idx, address).await?,
            Event::Remove { start, end } => {
                let p = &mut self.procs[idx];
                uffd::unregister(p.fd.get_ref(), start, end - start).map_err(DaemonError::Uffd)?;
                p.missing.remove(start, end - start);
            }
            Event::Unmap { start, end } => self.procs[idx].missing.remove(start, end - start),
            Event::Remap { from, to, len } => self.procs[idx].missing.remap(from, to, len),
            Event::Fork { uffd } => self.fork(idx, uffd).await?,
            Event::Other(_) => {}
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
            if uffd::zeropage(p.fd.get_ref(), page, PAGE_SIZE).map_err(DaemonError::Uffd)?
                == Fill::Exited
            {
                p.missing = Missing::default();
            }
            return Ok(());
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

    /// A process forked: its child's memory needs its own copy of every missing page,
    /// so all of it is asked for.
    async fn fork(&mut self, idx: usize, uffd: OwnedFd) -> Result<(), DaemonError> {
        if let Some(k) = &self.keep {
            k(std::os::fd::AsFd::as_fd(&uffd));
        }
        set_nonblocking(&uffd);
        let fd = Arc::new(async_fd(uffd)?);
        let token = self.next_token;
        let parent = &self.procs[idx];
        let child_missing = parent.missing.clone();
        let pid = parent.pid;
        for r in child_missing.runs() {
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
        let adopted = self.adopt(pid, fd, child_missing);
        debug_assert_eq!(adopted, token);
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

/// Whether `procs[i]` is the first process with its pid (background pages go to it).
fn is_first_of_pid(procs: &[Proc], i: usize) -> bool {
    procs.iter().position(|p| p.pid == procs[i].pid) == Some(i)
}

/// Copies the still-missing parts of a chunk into one process; returns the pages placed.
fn install(
    p: &mut Proc,
    h: &PcHeader,
    data: &[u8],
    tx: &mpsc::UnboundedSender<Msg>,
) -> Result<u64, DaemonError> {
    let len = data.len() as u64;
    let mut placed = 0;
    for _attempt in 0..8 {
        let placements = p.missing.place(h.vaddr, len);
        if placements.is_empty() {
            break;
        }
        let mut retry = false;
        for pl in placements {
            let bytes = &data[pl.offset as usize..(pl.offset + pl.len) as usize];
            match uffd::copy(p.fd.get_ref(), pl.dst, bytes).map_err(DaemonError::Uffd)? {
                Fill::Done => {
                    p.missing.remove(pl.dst, pl.len);
                    placed += pl.len / PAGE_SIZE;
                }
                Fill::Retry { copied } => {
                    p.missing.remove(pl.dst, copied);
                    placed += copied / PAGE_SIZE;
                    // The memory map changed: take the pending events first.
                    while let Ok(Some(ev)) = uffd::read_event(p.fd.as_raw_fd()) {
                        apply_map_event(p, ev, tx);
                    }
                    retry = true;
                    break;
                }
                Fill::Gone => p.missing.remove(pl.dst, pl.len),
                Fill::Exited => {
                    p.missing = Missing::default();
                    return Ok(placed);
                }
            }
        }
        for k in 0..h.nr_pages as u64 {
            p.demanded.remove(&h.vaddr.wrapping_add(k * PAGE_SIZE));
        }
        if !retry {
            break;
        }
    }
    Ok(placed)
}

/// Applies a memory-map event read while copying; faults are passed back to the loop.
fn apply_map_event(p: &mut Proc, ev: Event, tx: &mpsc::UnboundedSender<Msg>) {
    match ev {
        Event::Remove { start, end } => {
            let _ = uffd::unregister(p.fd.get_ref(), start, end - start);
            p.missing.remove(start, end - start);
        }
        Event::Unmap { start, end } => p.missing.remove(start, end - start),
        Event::Remap { from, to, len } => p.missing.remap(from, to, len),
        other => {
            let _ = tx.send(Msg::Event(p.token, other));
        }
    }
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

    #[test]
    fn a_restore_that_never_connects_is_a_failure() {
        let d = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(d.path().join(LAZY_PAGES_SOCKET)).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        receive(listener, 1, Duration::from_millis(50), &tx, None);
        assert!(matches!(rx.try_recv(), Ok(Msg::Handed(Handed::Failed(_)))));
    }
}
