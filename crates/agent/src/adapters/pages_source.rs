//! The source's page channels, over ferry's data plane: connections of their own to the
//! destination (inside TLS between agents), with CRIU's FIFOs, pre-copy's rounds and
//! post-copy's pump on them.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_engine::ports::pages::{
    DumpStream, LazyPages, PagesError, Pump, PumpTotals, Rounds, Sent, SourcePages, StreamTotals,
};
use ferry_pages::postcopy::pump::{lazy_runs, pump, PumpError, PumpStats};
use ferry_pages::postcopy::Channels;
use ferry_pages::precopy::blocks::BlockWriter;
use ferry_pages::precopy::hash::PageHasher;
use ferry_pages::precopy::refs::Dedupe;
use ferry_pages::precopy::scan::Scanner;
use ferry_pages::precopy::sink::DedupeSink;
use ferry_pages::precopy::{be_nice, round};
use ferry_pages::stream::{PageFifos, Streamer};
use ferry_proto::precopy::BlockKind;
use ferry_proto::Role;
use ferry_transport::Stream;
use ferry_types::{Compress, PageCounters, PrecopyRound};
use tokio::sync::{mpsc, oneshot};

use super::peer::PeerDialer;

fn failed(e: impl std::fmt::Display) -> PagesError {
    PagesError::Failed(e.to_string())
}

/// The page channels of the migrations this agent sends.
#[derive(Debug, Clone)]
pub struct AgentPages {
    pub dialer: PeerDialer,
}

impl AgentPages {
    async fn open(&self, role: Role, session: &str) -> Result<Stream, PagesError> {
        let conn = self
            .dialer
            .dial(role, Some(session.to_string()))
            .await
            .map_err(|e| PagesError::Lost(e.to_string()))?;
        let stream = conn.into_stream();
        stream.mark(traffic(role));
        Ok(stream)
    }

    async fn open_fd(&self, session: &str) -> Result<OwnedFd, PagesError> {
        self.open(Role::Pages, session)
            .await?
            .into_blocking_fd()
            .map_err(|e| failed(format!("page channel: {e}")))
    }
}

/// How a page channel's packets are marked: post-copy's urgent channel ahead of
/// everything, page streams behind.
pub(crate) fn traffic(role: Role) -> ferry_transport::Traffic {
    match role {
        Role::UrgentPages => ferry_transport::Traffic::Urgent,
        _ => ferry_transport::Traffic::Bulk,
    }
}

#[async_trait]
impl SourcePages for AgentPages {
    async fn stream_dump(
        &self,
        session: &str,
        images: &Path,
    ) -> Result<Box<dyn DumpStream>, PagesError> {
        let sock = self.open_fd(session).await?;
        let streamer = PageFifos::create(images)
            .and_then(|f| f.stream(sock))
            .map_err(failed)?;
        Ok(Box::new(ColdStream {
            streamer,
            totals: None,
        }))
    }

    async fn rounds(
        &self,
        session: &str,
        compress: Compress,
    ) -> Result<Box<dyn Rounds>, PagesError> {
        let file = File::from(self.open_fd(session).await?);
        let ack = file
            .try_clone()
            .map_err(|e| failed(format!("page channel: {e}")))?;
        let hasher = PageHasher::random().map_err(|e| failed(format!("no randomness: {e}")))?;
        let writer = BlockWriter::new(file, compress)
            .map_err(|e| failed(format!("cannot start zstd: {e}")))?;
        Ok(Box::new(RoundsWorker::start(
            writer,
            ack,
            Scanner::new(hasher),
            compress,
            self.clone(),
        )))
    }

    async fn lazy(&self, session: &str) -> Result<Box<dyn LazyPages>, PagesError> {
        let bulk = self.open(Role::Pages, session).await?;
        let urgent = self.open(Role::UrgentPages, session).await?;
        Ok(Box::new(LazyChannels::new(bulk, urgent, None)))
    }
}

/// CRIU's page files spliced into the page channel (cold), or sent as records with
/// references (pre-copy's final copy; `totals` then brings the records' count).
struct ColdStream {
    streamer: Streamer,
    totals: Option<std::sync::mpsc::Receiver<ferry_pages::precopy::blocks::Sent>>,
}

#[async_trait]
impl DumpStream for ColdStream {
    fn streamed(&self) -> Arc<AtomicU64> {
        self.streamer.counter()
    }

    fn cut_after(&self, chunks: u64) {
        self.streamer.cut_after(chunks);
    }

    async fn finish(self: Box<Self>) -> Result<StreamTotals, PagesError> {
        let file_bytes = self.streamer.finish().await.map_err(failed)?;
        let sent = match self.totals {
            None => Sent {
                pages: 0,
                refs: 0,
                wire: file_bytes,
            },
            Some(rx) => {
                let s = rx
                    .recv()
                    .map_err(|_| failed("the page stream ended without its totals"))?;
                Sent {
                    pages: s.pages,
                    refs: s.refs,
                    wire: s.wire,
                }
            }
        };
        Ok(StreamTotals { file_bytes, sent })
    }

    async fn abort(self: Box<Self>) {
        self.streamer.abort().await;
    }
}

/// What the rounds' thread owns.
struct RoundState {
    writer: BlockWriter<File>,
    ack: File,
    scanner: Scanner,
}

enum Job {
    Round {
        k: u32,
        pids: Vec<u32>,
        reply: oneshot::Sender<std::io::Result<(PrecopyRound, Sent)>>,
    },
    Finish {
        reply: oneshot::Sender<RoundState>,
    },
}

/// Pre-copy's rounds, run on a thread of their own at a low priority (they must not
/// starve the container), one round per request.
struct RoundsWorker {
    jobs: mpsc::UnboundedSender<Job>,
    sent: Sent,
    compress: Compress,
    pages: AgentPages,
}

fn sent_of(w: &BlockWriter<File>) -> Sent {
    Sent {
        pages: w.sent.pages,
        refs: w.sent.refs,
        wire: w.sent.wire,
    }
}

impl RoundsWorker {
    fn start(
        writer: BlockWriter<File>,
        ack: File,
        scanner: Scanner,
        compress: Compress,
        pages: AgentPages,
    ) -> Self {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let mut state = RoundState {
            writer,
            ack,
            scanner,
        };
        std::thread::spawn(move || {
            be_nice();
            while let Some(job) = rx.blocking_recv() {
                match job {
                    Job::Round { k, pids, reply } => {
                        let s = &mut state;
                        let r = round(&mut s.writer, &mut s.ack, &mut s.scanner, &pids, k);
                        let _ = reply.send(r.map(|r| (r, sent_of(&s.writer))));
                    }
                    Job::Finish { reply } => {
                        let _ = reply.send(state);
                        return;
                    }
                }
            }
        });
        Self {
            jobs,
            sent: Sent::default(),
            compress,
            pages,
        }
    }

    async fn finish(self) -> Result<RoundState, PagesError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Finish { reply })
            .map_err(|_| failed("the pre-copy rounds stopped unexpectedly"))?;
        rx.await
            .map_err(|_| failed("the pre-copy rounds stopped unexpectedly"))
    }
}

#[async_trait]
impl Rounds for RoundsWorker {
    async fn round(&mut self, k: u32, pids: Vec<u32>) -> Result<PrecopyRound, PagesError> {
        let (reply, rx) = oneshot::channel();
        let stopped = || failed("the pre-copy rounds stopped unexpectedly");
        self.jobs
            .send(Job::Round { k, pids, reply })
            .map_err(|_| stopped())?;
        let (r, sent) = rx.await.map_err(|_| stopped())?.map_err(failed)?;
        self.sent = sent;
        Ok(r)
    }

    fn sent(&self) -> Sent {
        self.sent
    }

    fn compress(&self) -> Compress {
        self.compress
    }

    async fn final_copy(self: Box<Self>, images: &Path) -> Result<Box<dyn DumpStream>, PagesError> {
        let state = self.finish().await?;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let sink = DedupeSink::new(
            state.writer,
            state.scanner.hasher,
            state.scanner.held,
            done_tx,
        );
        let streamer = PageFifos::create(images)
            .and_then(|f| f.stream_to(Box::new(sink)))
            .map_err(failed)?;
        Ok(Box::new(ColdStream {
            streamer,
            totals: Some(done_rx),
        }))
    }

    async fn into_lazy(self: Box<Self>, session: &str) -> Result<Box<dyn LazyPages>, PagesError> {
        let pages = self.pages.clone();
        let mut state = self.finish().await?;
        state
            .writer
            .marker(BlockKind::End, 0, 0)
            .map_err(|e| failed(format!("the page channel broke: {e}")))?;
        let bulk = Stream::from_blocking_fd(OwnedFd::from(state.writer.into_inner()))
            .map_err(|e| failed(format!("page channel: {e}")))?;
        let dedupe = Arc::new(Dedupe {
            hasher: state.scanner.hasher,
            held: state.scanner.held,
        });
        let urgent = pages.open(Role::UrgentPages, session).await?;
        Ok(Box::new(LazyChannels::new(bulk, urgent, Some(dedupe))))
    }
}

/// Post-copy's two channels, and ferry's end of the lazy dump's page-server socket.
struct LazyChannels {
    bulk: Stream,
    urgent: Stream,
    dedupe: Option<Arc<Dedupe>>,
    criu: Option<tokio::net::UnixStream>,
}

impl LazyChannels {
    fn new(bulk: Stream, urgent: Stream, dedupe: Option<Arc<Dedupe>>) -> Self {
        Self {
            bulk,
            urgent,
            dedupe,
            criu: None,
        }
    }
}

impl LazyPages for LazyChannels {
    fn criu_socket(&mut self) -> Result<OwnedFd, PagesError> {
        let (ours, criu_end) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| failed(format!("page server socket: {e}")))?;
        ours.set_nonblocking(true).map_err(failed)?;
        self.criu = Some(tokio::net::UnixStream::from_std(ours).map_err(failed)?);
        Ok(criu_end.into())
    }

    fn pump(self: Box<Self>, images: &Path, cut: bool) -> Result<Box<dyn Pump>, PagesError> {
        let runs = lazy_runs(images).map_err(failed)?;
        let pages_total: u64 = runs.iter().map(|r| r.nr_pages).sum();
        let criu = self.criu.ok_or_else(|| failed("no page server"))?;
        let counters = Arc::new(PageCounters::default());
        let cut = cut.then(|| (pages_total / 4).max(1));
        let task = tokio::spawn(pump(
            criu,
            Channels {
                bulk: self.bulk,
                urgent: self.urgent,
            },
            runs,
            counters.clone(),
            cut,
            self.dedupe,
        ));
        Ok(Box::new(PumpTask {
            task,
            counters,
            pages_total,
        }))
    }
}

/// The pump, running on a task of its own.
struct PumpTask {
    task: tokio::task::JoinHandle<Result<PumpStats, PumpError>>,
    counters: Arc<PageCounters>,
    pages_total: u64,
}

#[async_trait]
impl Pump for PumpTask {
    fn pages_total(&self) -> u64 {
        self.pages_total
    }

    fn progress(&self) -> Arc<PageCounters> {
        self.counters.clone()
    }

    async fn wait(self: Box<Self>) -> Result<PumpTotals, PagesError> {
        let s = self.task.await.map_err(failed)?.map_err(failed)?;
        Ok(PumpTotals {
            pages_pushed: s.pages_pushed,
            pages_answered: s.pages_answered,
            pages_referenced: s.pages_referenced,
            bytes_sent: s.bytes_sent,
        })
    }

    async fn abort(self: Box<Self>) {
        self.task.abort();
        let _ = self.task.await;
    }
}
