//! The source side of post-copy: ferry asks the dump's CRIU (its lazy page server, on a
//! local socket pair) for every lazy page, a few requests in flight, and forwards the
//! answers to the destination: background pages on the bulk channel, pages a process
//! faulted on (demands) on the urgent one. Demands jump CRIU's queue too.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ferry_criu::images::{read_pagemap, PE_LAZY};
use ferry_criu::pageserver::{Psi, PSI_LEN, PS_IOV_ADD_F};
use ferry_proto::postcopy::{
    PcHeader, PcKind, FORKED, PAGE_SIZE, PC_HEADER_LEN, PC_MAX_PAGES, REF_ENTRY,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::Channels;
use crate::precopy::refs::Dedupe;

/// A run of lazy pages of one process, as the images number it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LazyRun {
    pub pid: u32,
    pub vaddr: u64,
    pub nr_pages: u64,
}

/// The lazy runs of every `pagemap-<pid>.img` in `dir`.
pub fn lazy_runs(dir: &Path) -> std::io::Result<Vec<LazyRun>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("pagemap-")
            .and_then(|r| r.strip_suffix(".img"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let buf = ferry_criu::images::read_meta_file(&e.path()).map_err(std::io::Error::other)?;
        let map = read_pagemap(&buf, &name).map_err(std::io::Error::other)?;
        out.extend(
            map.entries
                .iter()
                .filter(|pe| pe.flags & PE_LAZY != 0)
                .map(|pe| LazyRun {
                    pid,
                    vaddr: pe.vaddr,
                    nr_pages: pe.nr_pages,
                }),
        );
    }
    out.sort_by_key(|r| (r.pid, r.vaddr));
    Ok(out)
}

/// What the pump sent so far: read while it runs (progress, and what a failed run sent).
pub use ferry_types::PageCounters as Sent;

/// What the pump did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PumpStats {
    pub pages_total: u64,
    pub pages_pushed: u64,
    pub pages_answered: u64,
    /// Hybrid: pages sent as a reference to the destination's store.
    pub pages_referenced: u64,
    pub bytes_sent: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("the page channel to the destination broke: {0}")]
    Peer(std::io::Error),
    #[error("the dump's page server failed: {0}")]
    Criu(std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone, Copy)]
struct Req {
    token: u32,
    pid: u32,
    vaddr: u64,
    nr_pages: u64,
    demand: bool,
}

/// Pages per background request: small, so that a demand never waits long behind one.
const BACKGROUND_PAGES: u64 = 64;
/// Background requests CRIU may have in hand at once (a demand queues behind them).
const CRIU_AHEAD: usize = 4;
/// How long CRIU may take to acknowledge the end of the page transfer.
const CLOSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
/// Background chunks read from CRIU but not yet on the wire: enough to keep the link busy.
const BULK_WINDOW: usize = 32;
/// Demands waiting for CRIU: far more than a fork asks for at once (one per 4 MiB of
/// missing memory), so that only a hostile destination reaches it.
const MAX_QUEUED_DEMANDS: usize = 1 << 16;
/// How long the destination may say nothing once every page went: it answers `Done`, or
/// asks again for pages it lacks, well within this.
const SILENT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

enum FromCriu {
    Pages(Psi, Vec<u8>),
    Closed(std::io::Result<()>),
}

enum FromPeer {
    Demand(PcHeader),
    Start,
    Done,
    Closed(std::io::Result<()>),
}

async fn read_criu<R: AsyncRead + Unpin>(mut r: R, tx: mpsc::Sender<FromCriu>) {
    loop {
        let mut h = [0u8; PSI_LEN];
        if let Err(e) = r.read_exact(&mut h).await {
            let _ = tx.send(FromCriu::Closed(Err(e))).await;
            return;
        }
        let psi = Psi::decode(&h);
        if psi.command() != PS_IOV_ADD_F || psi.nr_pages > u64::from(PC_MAX_PAGES) {
            let _ = tx
                .send(FromCriu::Closed(Err(std::io::Error::other(format!(
                    "unexpected answer {:#x}",
                    psi.cmd
                )))))
                .await;
            return;
        }
        let mut data = vec![0u8; (psi.nr_pages * PAGE_SIZE) as usize];
        if let Err(e) = r.read_exact(&mut data).await {
            let _ = tx.send(FromCriu::Closed(Err(e))).await;
            return;
        }
        if tx.send(FromCriu::Pages(psi, data)).await.is_err() {
            return;
        }
    }
}

async fn read_peer<R: AsyncRead + Unpin>(mut r: R, tx: mpsc::UnboundedSender<FromPeer>) {
    loop {
        let mut h = [0u8; PC_HEADER_LEN];
        if let Err(e) = r.read_exact(&mut h).await {
            let _ = tx.send(FromPeer::Closed(Err(e)));
            return;
        }
        let msg = match PcHeader::decode(&h) {
            Ok(h) if h.kind == PcKind::Demand => FromPeer::Demand(h),
            Ok(h) if h.kind == PcKind::Done => FromPeer::Done,
            Ok(h) if h.kind == PcKind::Start => FromPeer::Start,
            Ok(h) => FromPeer::Closed(Err(std::io::Error::other(format!(
                "unexpected {:?} from the destination",
                h.kind
            )))),
            Err(e) => FromPeer::Closed(Err(std::io::Error::other(e.to_string()))),
        };
        let stop = matches!(msg, FromPeer::Closed(_) | FromPeer::Done);
        if tx.send(msg).is_err() || stop {
            return;
        }
    }
}

/// What the bulk writer puts on the wire: a chunk (holding its window slot until sent),
/// or the end.
enum Bulk {
    Chunk {
        header: PcHeader,
        data: Vec<u8>,
        _slot: OwnedSemaphorePermit,
    },
    End,
}

/// Writes background chunks to the bulk channel; a broken channel is reported as a lost
/// destination.
async fn write_bulk<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Bulk>,
    sent: Arc<Sent>,
    lost: mpsc::UnboundedSender<FromPeer>,
) {
    while let Some(b) = rx.recv().await {
        let r = match &b {
            Bulk::Chunk { header, data, .. } => match w.write_all(&header.encode()).await {
                Ok(()) => w.write_all(data).await.map(|()| PC_HEADER_LEN + data.len()),
                Err(e) => Err(e),
            },
            Bulk::End => {
                let end = PcHeader::control(PcKind::End);
                w.write_all(&end.encode()).await.map(|()| PC_HEADER_LEN)
            }
        };
        // An encrypting channel holds back what it has not flushed: push it out
        // whenever no more pages are queued behind it.
        let r = match r {
            Ok(n) if rx.is_empty() => w.flush().await.map(|()| n),
            other => other,
        };
        match r {
            Ok(n) => {
                sent.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let _ = lost.send(FromPeer::Closed(Err(e)));
                return;
            }
        }
    }
}

/// Clamps a demand to the lazy run holding it (CRIU's server gives up on anything else).
fn clamp(runs: &[LazyRun], h: &PcHeader) -> Option<Req> {
    let r = runs.iter().find(|r| {
        r.pid == h.pid && r.vaddr <= h.vaddr && h.vaddr < r.vaddr + r.nr_pages * PAGE_SIZE
    })?;
    let left = (r.vaddr + r.nr_pages * PAGE_SIZE - h.vaddr) / PAGE_SIZE;
    Some(Req {
        token: h.token,
        pid: h.pid,
        vaddr: h.vaddr,
        nr_pages: left.min(u64::from(h.nr_pages)),
        demand: true,
    })
}

/// Every lazy page, cut into background requests.
fn background_queue(runs: &[LazyRun]) -> VecDeque<Req> {
    let mut q = VecDeque::new();
    for r in runs {
        let mut off = 0;
        while off < r.nr_pages {
            let n = (r.nr_pages - off).min(BACKGROUND_PAGES);
            q.push_back(Req {
                token: 0,
                pid: r.pid,
                vaddr: r.vaddr + off * PAGE_SIZE,
                nr_pages: n,
                demand: false,
            });
            off += n;
        }
    }
    q
}

/// Moves every lazy page to the destination; returns when the destination says it has
/// them all. `criu` is ferry's end of the dump's page-server socket; `peer` the two page
/// channels. `sent` counts pages as they go (for progress). `cut_after` breaks the
/// channels once that many pages went (fault injection). With `dedupe` (hybrid), pages the
/// destination holds travel as references.
pub async fn pump<C, P>(
    criu: C,
    peer: Channels<P>,
    runs: Vec<LazyRun>,
    sent: Arc<Sent>,
    cut_after: Option<u64>,
    dedupe: Option<Arc<Dedupe>>,
) -> Result<PumpStats, PumpError>
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    P: AsyncRead + AsyncWrite + Send + 'static,
{
    let (cr, cw) = tokio::io::split(criu);
    let (ur, uw) = tokio::io::split(peer.urgent);
    let (_, bw) = tokio::io::split(peer.bulk);
    let (ctx, mut crx) = mpsc::channel(4);
    let (ptx, mut prx) = mpsc::unbounded_channel();
    let (btx, brx) = mpsc::unbounded_channel();
    let tasks = [
        tokio::spawn(read_criu(cr, ctx)),
        tokio::spawn(read_peer(ur, ptx.clone())),
        tokio::spawn(write_bulk(bw, brx, sent.clone(), ptx)),
    ];
    let mut p = Pumping::new(cw, uw, runs, btx, sent, cut_after, dedupe);
    let mut heard = tokio::time::Instant::now();
    let result = loop {
        if let Err(e) = p.ask_demands().await {
            break Err(e);
        }
        let background_out = p.background_out();
        p.queue_end(background_out);
        if p.done && p.outstanding.is_empty() {
            break Ok(());
        }
        let want_background =
            p.started && !p.done && !p.background.is_empty() && background_out < CRIU_AHEAD;
        let step = tokio::select! {
            biased;
            m = prx.recv(), if !p.done => {
                heard = tokio::time::Instant::now();
                p.on_peer(m)
            }
            () = tokio::time::sleep_until(heard.max(p.ended_at) + SILENT_FOR), if p.end_queued && !p.done => {
                Err(PumpError::Peer(std::io::Error::other(format!(
                    "the destination said nothing for {} s after every page went",
                    SILENT_FOR.as_secs()
                ))))
            }
            m = crx.recv() => p.on_criu(m).await,
            permit = p.window.clone().acquire_owned(), if want_background => {
                match permit {
                    Ok(permit) => p.ask_background(permit).await,
                    Err(_) => Ok(()),
                }
            },
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    let [criu_reader, peer_tasks @ ..] = &tasks;
    for t in peer_tasks {
        t.abort();
    }
    p.stats.bytes_sent = p.sent.bytes.load(Ordering::Relaxed);
    if result.is_ok() {
        p.close_criu(&mut crx).await;
    }
    criu_reader.abort();
    let stats = p.stats;
    result.map(|()| stats)
}

/// The pump's state between two of its loop's steps.
struct Pumping<CW, UW> {
    /// Requests to CRIU's page server.
    cw: CW,
    /// The urgent channel: answers to demands.
    uw: UW,
    runs: Vec<LazyRun>,
    /// To the bulk channel's writer.
    btx: mpsc::UnboundedSender<Bulk>,
    /// Background chunks read from CRIU but not yet on the wire.
    window: Arc<Semaphore>,
    sent: Arc<Sent>,
    cut_after: Option<u64>,
    dedupe: Option<Arc<Dedupe>>,
    stats: PumpStats,
    background: VecDeque<Req>,
    /// Pages a restored process was answered on demand (pid, address): not pushed again.
    answered: HashSet<(u32, u64)>,
    demands: VecDeque<Req>,
    /// Requests CRIU has, in order; a background one holds its window slot.
    outstanding: VecDeque<(Req, Option<OwnedSemaphorePermit>)>,
    end_queued: bool,
    /// When the end was queued.
    ended_at: tokio::time::Instant,
    /// The destination has every page.
    done: bool,
    /// Background pushes wait until the restore finished: before that the destination
    /// cannot place them (only demands, from the restore itself, are served).
    started: bool,
}

impl<CW: AsyncWrite + Unpin, UW: AsyncWrite + Unpin> Pumping<CW, UW> {
    fn new(
        cw: CW,
        uw: UW,
        runs: Vec<LazyRun>,
        btx: mpsc::UnboundedSender<Bulk>,
        sent: Arc<Sent>,
        cut_after: Option<u64>,
        dedupe: Option<Arc<Dedupe>>,
    ) -> Self {
        let stats = PumpStats {
            pages_total: runs.iter().map(|r| r.nr_pages).sum(),
            ..Default::default()
        };
        let background = background_queue(&runs);
        Self {
            cw,
            uw,
            runs,
            btx,
            window: Arc::new(Semaphore::new(BULK_WINDOW)),
            sent,
            cut_after,
            dedupe,
            stats,
            background,
            answered: HashSet::new(),
            demands: VecDeque::new(),
            outstanding: VecDeque::new(),
            end_queued: false,
            ended_at: tokio::time::Instant::now(),
            done: false,
            started: false,
        }
    }

    /// Demands go to CRIU at once.
    async fn ask_demands(&mut self) -> Result<(), PumpError> {
        while let Some(req) = self.demands.pop_front() {
            self.cw
                .write_all(&Psi::get(req.pid, req.vaddr, req.nr_pages).encode())
                .await
                .map_err(PumpError::Criu)?;
            self.outstanding.push_back((req, None));
        }
        Ok(())
    }

    fn background_out(&self) -> usize {
        self.outstanding.iter().filter(|(r, _)| !r.demand).count()
    }

    /// Once every background page went, the bulk channel ends.
    fn queue_end(&mut self, background_out: usize) {
        if !self.end_queued && self.started && self.background.is_empty() && background_out == 0 {
            let _ = self.btx.send(Bulk::End);
            self.end_queued = true;
            self.ended_at = tokio::time::Instant::now();
        }
    }

    fn on_peer(&mut self, m: Option<FromPeer>) -> Result<(), PumpError> {
        match m {
            Some(FromPeer::Demand(h)) => {
                if self.demands.len() >= MAX_QUEUED_DEMANDS {
                    return Err(PumpError::Protocol(format!(
                        "the destination asked for more than {MAX_QUEUED_DEMANDS} runs of pages at once"
                    )));
                }
                if let Some(req) = clamp(&self.runs, &h) {
                    self.demands.push_back(req);
                }
            }
            Some(FromPeer::Start) => self.started = true,
            Some(FromPeer::Done) => self.done = true,
            Some(FromPeer::Closed(r)) => {
                return Err(PumpError::Peer(
                    r.err().unwrap_or_else(|| std::io::Error::other("closed")),
                ));
            }
            None => return Err(PumpError::Peer(std::io::Error::other("reader ended"))),
        }
        Ok(())
    }

    async fn on_criu(&mut self, m: Option<FromCriu>) -> Result<(), PumpError> {
        match m {
            Some(FromCriu::Pages(psi, data)) => self.pages(psi, data).await,
            Some(FromCriu::Closed(r)) => Err(PumpError::Criu(
                r.err().unwrap_or_else(|| std::io::Error::other("closed")),
            )),
            None => Err(PumpError::Criu(std::io::Error::other("reader ended"))),
        }
    }

    /// CRIU answered the oldest request: its pages go to the destination, a demand's on
    /// the urgent channel, a background chunk through the bulk writer.
    async fn pages(&mut self, psi: Psi, data: Vec<u8>) -> Result<(), PumpError> {
        let Some((req, permit)) = self.outstanding.pop_front() else {
            return Err(PumpError::Protocol("an answer nobody asked for".into()));
        };
        if psi.vaddr != req.vaddr || psi.nr_pages == 0 || psi.nr_pages > req.nr_pages {
            return Err(PumpError::Protocol(format!(
                "CRIU answered {:#x}+{} for {:#x}+{}",
                psi.vaddr, psi.nr_pages, req.vaddr, req.nr_pages
            )));
        }
        if psi.nr_pages < req.nr_pages {
            let rest = Req {
                vaddr: req.vaddr + psi.nr_pages * PAGE_SIZE,
                nr_pages: req.nr_pages - psi.nr_pages,
                ..req
            };
            if req.demand {
                self.demands.push_front(rest)
            } else {
                self.background.push_front(rest)
            }
        }
        if self.done {
            return Ok(()); // the destination has every page already
        }
        let mut kind = if req.demand {
            PcKind::Answer
        } else {
            PcKind::Chunk
        };
        let mut data = data;
        if let Some(enc) = self.dedupe.as_ref().and_then(|d| d.encode(&data)) {
            let whole = (enc.len() - psi.nr_pages as usize * REF_ENTRY) / PAGE_SIZE as usize;
            self.stats.pages_referenced += psi.nr_pages - whole as u64;
            kind = if req.demand {
                PcKind::AnswerRefs
            } else {
                PcKind::ChunkRefs
            };
            data = enc;
        }
        let h = PcHeader {
            kind,
            token: req.token,
            pid: req.pid,
            nr_pages: psi.nr_pages as u32,
            vaddr: psi.vaddr,
        };
        match permit {
            Some(permit) => {
                let _ = self.btx.send(Bulk::Chunk {
                    header: h,
                    data,
                    _slot: permit,
                });
                self.stats.pages_pushed += psi.nr_pages;
            }
            None => {
                self.uw
                    .write_all(&h.encode())
                    .await
                    .map_err(PumpError::Peer)?;
                super::send_now(&mut self.uw, &data)
                    .await
                    .map_err(PumpError::Peer)?;
                self.sent
                    .bytes
                    .fetch_add((PC_HEADER_LEN + data.len()) as u64, Ordering::Relaxed);
                self.stats.pages_answered += psi.nr_pages;
                if req.token & FORKED == 0 {
                    let pages = (0..psi.nr_pages).map(|k| (req.pid, psi.vaddr + k * PAGE_SIZE));
                    self.answered.extend(pages);
                }
            }
        }
        let so_far = self.sent.pages.fetch_add(psi.nr_pages, Ordering::Relaxed) + psi.nr_pages;
        if self.cut_after.is_some_and(|c| so_far >= c) {
            tracing::warn!("fault injection: cutting the post-copy page channels");
            return Err(PumpError::Peer(std::io::Error::other(
                "cut by fault injection",
            )));
        }
        Ok(())
    }

    /// A window slot is free: ask CRIU for the next background pages.
    async fn ask_background(&mut self, permit: OwnedSemaphorePermit) -> Result<(), PumpError> {
        let Some(req) = self.next_background() else {
            return Ok(());
        };
        self.cw
            .write_all(&Psi::get(req.pid, req.vaddr, req.nr_pages).encode())
            .await
            .map_err(PumpError::Criu)?;
        self.outstanding.push_back((req, Some(permit)));
        Ok(())
    }

    /// The next background request, without the pages already answered on demand: the
    /// first run of unanswered pages of the queue's head (the rest goes back).
    fn next_background(&mut self) -> Option<Req> {
        while let Some(req) = self.background.pop_front() {
            let answered = |k: u64| {
                self.answered
                    .contains(&(req.pid, req.vaddr + k * PAGE_SIZE))
            };
            let Some(first) = (0..req.nr_pages).find(|&k| !answered(k)) else {
                continue;
            };
            let end = (first..req.nr_pages)
                .find(|&k| answered(k))
                .unwrap_or(req.nr_pages);
            if end < req.nr_pages {
                self.background.push_front(Req {
                    vaddr: req.vaddr + end * PAGE_SIZE,
                    nr_pages: req.nr_pages - end,
                    ..req
                });
            }
            return Some(Req {
                vaddr: req.vaddr + first * PAGE_SIZE,
                nr_pages: end - first,
                ..req
            });
        }
        None
    }

    /// Every page is at the destination: let CRIU finish its dump. It answers with a
    /// status word and closes its end; closing ours first would fail its dump.
    async fn close_criu(&mut self, crx: &mut mpsc::Receiver<FromCriu>) {
        if self.cw.write_all(&Psi::close().encode()).await.is_ok() {
            let closed = async {
                while let Some(m) = crx.recv().await {
                    if matches!(m, FromCriu::Closed(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSE_WITHIN, closed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for CRIU's lazy page server: answers GETs with pages filled with their
    /// page number, at most `clamp` pages at a time, and remembers CLOSE.
    async fn fake_criu(mut s: tokio::io::DuplexStream, clamp: u64) -> bool {
        loop {
            let mut h = [0u8; PSI_LEN];
            if s.read_exact(&mut h).await.is_err() {
                return false;
            }
            let psi = Psi::decode(&h);
            if psi.cmd == ferry_criu::pageserver::PS_IOV_CLOSE {
                return true;
            }
            let n = psi.nr_pages.min(clamp);
            let answer = Psi {
                cmd: (4 << 16) | PS_IOV_ADD_F,
                nr_pages: n,
                ..psi
            };
            s.write_all(&answer.encode()).await.unwrap();
            for i in 0..n {
                let page = (psi.vaddr / PAGE_SIZE + i) as u8;
                s.write_all(&[page; PAGE_SIZE as usize]).await.unwrap();
            }
        }
    }

    async fn read_pages<R: AsyncRead + Unpin>(r: &mut R) -> Option<(PcHeader, Vec<u8>)> {
        let mut h = [0u8; PC_HEADER_LEN];
        r.read_exact(&mut h).await.unwrap();
        let h = PcHeader::decode(&h).unwrap();
        if h.kind == PcKind::End {
            return None;
        }
        let mut d = vec![0u8; h.data_len()];
        r.read_exact(&mut d).await.unwrap();
        assert_eq!(d[0], (h.vaddr / PAGE_SIZE) as u8, "the right page");
        Some((h, d))
    }

    fn channels() -> (
        Channels<tokio::io::DuplexStream>,
        Channels<tokio::io::DuplexStream>,
    ) {
        let (b1, b2) = tokio::io::duplex(1 << 20);
        let (u1, u2) = tokio::io::duplex(1 << 20);
        (
            Channels {
                bulk: b1,
                urgent: u1,
            },
            Channels {
                bulk: b2,
                urgent: u2,
            },
        )
    }

    #[tokio::test]
    async fn pushes_everything_answers_demands_and_closes() {
        let (criu_ours, criu_theirs) = tokio::io::duplex(1 << 20);
        let (ours, mut theirs) = channels();
        let criu = tokio::spawn(fake_criu(criu_theirs, 30));
        let runs = vec![
            LazyRun {
                pid: 1,
                vaddr: 0x10000,
                nr_pages: 2000,
            },
            LazyRun {
                pid: 1,
                vaddr: 0x900000,
                nr_pages: 5,
            },
        ];
        let sent = Arc::new(Sent::default());
        let pump = tokio::spawn(pump(criu_ours, ours, runs, sent.clone(), None, None));
        // Before the start, only demands are answered, on the urgent channel.
        let demand = PcHeader {
            kind: PcKind::Demand,
            token: 3,
            pid: 1,
            nr_pages: 1,
            vaddr: 0x900000 + 2 * PAGE_SIZE,
        };
        theirs.urgent.write_all(&demand.encode()).await.unwrap();
        let (h, _) = read_pages(&mut theirs.urgent).await.unwrap();
        assert_eq!(
            (h.kind, h.token, h.nr_pages, h.vaddr),
            (PcKind::Answer, 3, 1, demand.vaddr)
        );
        // After it, every page comes on the bulk channel, then End.
        theirs
            .urgent
            .write_all(&PcHeader::control(PcKind::Start).encode())
            .await
            .unwrap();
        let mut pages = 0u64;
        let mut chunks = 0u64;
        while let Some((h, _)) = read_pages(&mut theirs.bulk).await {
            assert_eq!(h.kind, PcKind::Chunk);
            chunks += 1;
            assert!(u64::from(h.nr_pages) <= BACKGROUND_PAGES);
            pages += u64::from(h.nr_pages);
        }
        assert_eq!(
            pages, 2004,
            "every page once: the answered one is not pushed again"
        );
        let done = PcHeader {
            kind: PcKind::Done,
            token: 0,
            pid: 0,
            nr_pages: 0,
            vaddr: 0,
        };
        theirs.urgent.write_all(&done.encode()).await.unwrap();
        let stats = pump.await.unwrap().unwrap();
        assert_eq!(
            (stats.pages_total, stats.pages_answered, stats.pages_pushed),
            (2005, 1, 2004)
        );
        assert_eq!(sent.pages.load(Ordering::Relaxed), 2005);
        // Pages, plus a header for the answer, each chunk and the end.
        assert_eq!(
            sent.bytes.load(Ordering::Relaxed),
            2005 * PAGE_SIZE + (chunks + 2) * PC_HEADER_LEN as u64
        );
        assert!(criu.await.unwrap(), "CRIU was told to finish");
    }

    #[test]
    fn pushes_skip_what_a_restored_process_was_answered_but_not_a_forked_copy() {
        let runs = vec![LazyRun {
            pid: 1,
            vaddr: 0,
            nr_pages: 10,
        }];
        let (btx, _brx) = mpsc::unbounded_channel();
        let mut p = Pumping::new(
            tokio::io::sink(),
            tokio::io::sink(),
            runs,
            btx,
            Arc::new(Sent::default()),
            None,
            None,
        );
        p.answered.extend([
            (1, 0),
            (1, 3 * PAGE_SIZE),
            (1, 4 * PAGE_SIZE),
            (2, PAGE_SIZE),
        ]);
        let mut got = Vec::new();
        while let Some(r) = p.next_background() {
            got.push((r.vaddr / PAGE_SIZE, r.nr_pages));
        }
        assert_eq!(got, vec![(1, 2), (5, 5)], "pages 0, 3 and 4 were answered");
    }

    #[tokio::test]
    async fn a_demand_is_answered_while_the_bulk_channel_is_stuck() {
        let (criu_ours, criu_theirs) = tokio::io::duplex(1 << 20);
        let (ours, mut theirs) = channels();
        tokio::spawn(fake_criu(criu_theirs, 1024));
        let runs = vec![LazyRun {
            pid: 1,
            vaddr: 0,
            nr_pages: 100_000,
        }];
        let _pump = tokio::spawn(pump(criu_ours, ours, runs, Arc::default(), None, None));
        theirs
            .urgent
            .write_all(&PcHeader::control(PcKind::Start).encode())
            .await
            .unwrap();
        // Nobody reads the bulk channel: it fills up and stays full.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let demand = PcHeader {
            kind: PcKind::Demand,
            token: 1,
            pid: 1,
            nr_pages: 2,
            vaddr: 90_000 * PAGE_SIZE,
        };
        theirs.urgent.write_all(&demand.encode()).await.unwrap();
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            read_pages(&mut theirs.urgent),
        )
        .await;
        let (h, _) = answer.expect("answered").unwrap();
        assert_eq!(
            (h.kind, h.vaddr, h.nr_pages),
            (PcKind::Answer, demand.vaddr, 2)
        );
    }

    #[tokio::test]
    async fn a_lost_destination_is_an_error_not_a_hang() {
        let (criu_ours, criu_theirs) = tokio::io::duplex(1 << 20);
        let (ours, theirs) = channels();
        tokio::spawn(fake_criu(criu_theirs, 1024));
        drop(theirs);
        let runs = vec![LazyRun {
            pid: 1,
            vaddr: 0x10000,
            nr_pages: 10,
        }];
        let r = pump(criu_ours, ours, runs, Arc::new(Sent::default()), None, None).await;
        assert!(matches!(r, Err(PumpError::Peer(_))), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_destination_silent_after_every_page_went_is_an_error_not_a_hang() {
        let (criu_ours, criu_theirs) = tokio::io::duplex(1 << 20);
        let (ours, mut theirs) = channels();
        tokio::spawn(fake_criu(criu_theirs, 1024));
        let runs = vec![LazyRun {
            pid: 1,
            vaddr: 0x10000,
            nr_pages: 10,
        }];
        let pump = tokio::spawn(pump(criu_ours, ours, runs, Arc::default(), None, None));
        theirs
            .urgent
            .write_all(&PcHeader::control(PcKind::Start).encode())
            .await
            .unwrap();
        while read_pages(&mut theirs.bulk).await.is_some() {}
        // Every page went; the destination never answers.
        let r = pump.await.unwrap();
        match r {
            Err(PumpError::Peer(e)) => assert!(e.to_string().contains("said nothing"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn demands_are_clamped_to_their_run() {
        let runs = vec![LazyRun {
            pid: 1,
            vaddr: 0x10000,
            nr_pages: 4,
        }];
        let h = PcHeader {
            kind: PcKind::Demand,
            token: 2,
            pid: 1,
            nr_pages: 16,
            vaddr: 0x10000 + 2 * PAGE_SIZE,
        };
        let r = clamp(&runs, &h).unwrap();
        assert_eq!((r.nr_pages, r.token), (2, 2));
        let outside = PcHeader {
            vaddr: 0x90000,
            ..h
        };
        assert!(clamp(&runs, &outside).is_none());
    }
}
