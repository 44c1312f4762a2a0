//! Post-copy: CRIU dumps everything but the memory (a lazy dump) and then serves pages
//! for as long as ferry asks; the container restarts at the destination at once, under
//! ferry's lazy-pages daemon, and the pump moves its pages there afterwards, the pages a
//! process waits for first. Until the last page arrived, the container needs both hosts:
//! a failure then stops it at the destination and keeps it frozen at the source.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_criu::plan::{NetworkLock, PageTransport, RestoreSpec};
use ferry_criu::process::HELPER_SOCKET_FD;
use ferry_proto::postcopy::PAGE_SIZE;
use ferry_proto::{PeerReply, WireMessage};
use ferry_types::{Fault, PageCounters, Strategy};

use super::cold::stream_error;
use super::{DestHalf, MigrationStrategy};
use crate::dest::arrival::{AfterCommit, Arrival};
use crate::error::{DumpError, IncomingError, MigrateError, PeerError, PostcopyError};
use crate::ports::container::{ContainerError, LazyDump, RestorePlan};
use crate::ports::pages::{LazyDaemon, LazyPages, PagesError, Pump};
use crate::source::SourceRun;

/// How long the source waits, after its page pump broke, for the destination to say it
/// stopped its copy.
const DEST_STOPS_WITHIN: Duration = Duration::from_secs(10);

/// How long a lazy dump may take to get ready.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// How long the engine's tool may take to exit once CRIU let go.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct Postcopy;

type Dumping = tokio::task::JoinHandle<Result<(), ContainerError>>;

/// Ends a lazy dump that will serve no more pages: CRIU sees its socket close (the pump
/// owned it), lets go of the processes (they stay frozen: ferry froze them) and exits.
async fn stop(pump: Option<Box<dyn Pump>>, dumping: Dumping) {
    if let Some(p) = pump {
        p.abort().await;
    }
    let _ = tokio::time::timeout(EXIT_WITHIN, dumping).await;
}

/// The source half, shared with hybrid: `lazy` holds the open page channels.
pub(crate) async fn lazy_source(
    run: &mut SourceRun,
    mut lazy: Box<dyn LazyPages>,
) -> Result<(), MigrateError> {
    let criu_end = lazy.criu_socket().map_err(DumpError::PageStream)?;
    run.freeze_and_lock().await?;

    let t = Instant::now();
    let plan = run.dump_plan(PageTransport::LazySocket {
        fd: HELPER_SOCKET_FD,
    });
    let LazyDump { ready, done } = run.ports.subject.checkpoint_lazy(plan, criu_end);
    // The engine's tool runs as long as CRIU serves pages: on a task of its own.
    let dumping = tokio::spawn(done);
    if !matches!(tokio::time::timeout(READY_WITHIN, ready).await, Ok(true)) {
        drop(lazy);
        let err = match tokio::time::timeout(EXIT_WITHIN, dumping).await {
            Ok(Ok(Err(e))) => e,
            _ => ContainerError::Failed("the lazy dump did not get ready".into()),
        };
        return Err(run.criu_failure(&err).into());
    }
    run.progress.dumped = true;
    run.tl.record("dump", t);

    // Serve pages from now on: the destination's restore itself faults on some, and
    // once it finished, every other page is pushed.
    let pump = match lazy.pump(&run.dir, run.fault(Fault::CutPostcopy)) {
        Ok(p) => p,
        Err(e) => {
            stop(None, dumping).await;
            return Err(DumpError::Pagemaps(e).into());
        }
    };
    let mut pump = Some(pump);
    match after_dump(run, &mut pump).await {
        Ok(()) => {
            finish_dump(run, dumping).await;
            Ok(())
        }
        Err(e) => {
            stop(pump, dumping).await;
            Err(e)
        }
    }
}

/// From the lazy dump until every page arrived.
async fn after_dump(
    run: &mut SourceRun,
    pump: &mut Option<Box<dyn Pump>>,
) -> Result<(), MigrateError> {
    let pages_total = pump.as_ref().map_or(0, |p| p.pages_total());
    run.detach_and_send_images(0).await?;
    run.restore_remote().await?;
    let running = Instant::now();
    run.progress.pages_owed = true;
    run.commit().await?;
    if run.fault(Fault::SourceDiesDuringPostcopy) {
        tracing::error!(
            "fault injection: the source agent exits during post-copy, pages still owed"
        );
        std::process::exit(101);
    }

    let t = Instant::now();
    let Some(p) = pump.take() else {
        return Err(PostcopyError::Pump(PagesError::Failed("no pump".into())).into());
    };
    let counters = p.progress();
    let ticker = ticker(run, counters.clone(), pages_total);
    let pumped = p.wait().await;
    ticker.abort();
    run.pages_sent = counters.bytes.load(Ordering::Relaxed);
    let (reply, limit) = match pumped {
        Ok(stats) => {
            run.pages_sent = stats.bytes_sent;
            if let Some(pc) = run.report.precopy.as_mut() {
                pc.final_pages_referenced = stats.pages_referenced;
                pc.final_pages_sent = (stats.pages_pushed + stats.pages_answered)
                    .saturating_sub(stats.pages_referenced);
                pc.final_wire_bytes = stats.bytes_sent;
            }
            (None, Duration::from_secs(60))
        }
        // The destination stops its copy once its pages stop coming, then says so. Hear
        // it first (or its silence), so that nobody resumes the frozen copy here while
        // the other still runs there. A destination that had every page may close the
        // channel on pages it no longer reads: then it says so instead.
        Err(e) => (Some(e), DEST_STOPS_WITHIN),
    };
    let answer = run.expect_within("postcopy_done", limit).await;
    let dest = match (answer, reply) {
        (Ok(PeerReply::PostcopyDone { stats }), _) => stats,
        (_, Some(e)) => return Err(PostcopyError::Pump(e).into()),
        (Ok(PeerReply::PostcopyFailed { reason }), None) => {
            return Err(PostcopyError::Remote(reason).into())
        }
        (Ok(other), None) => {
            return Err(PostcopyError::Peer(PeerError::Unexpected(other.name())).into())
        }
        (Err(e), None) => return Err(PostcopyError::Peer(e).into()),
    };
    run.report.postcopy_ms = Some(ferry_types::ms(running.elapsed()));
    run.tl.record("postcopy", t);
    run.report.pages_total = Some(dest.pages_total.max(pages_total));
    run.report.pages_on_demand = Some(dest.pages_on_demand);
    run.report.pages_pushed = Some(dest.pages_pushed);
    run.progress.pages_owed = false;
    Ok(())
}

/// Progress while the pages follow the container.
fn ticker(run: &SourceRun, sent: Arc<PageCounters>, total: u64) -> tokio::task::JoinHandle<()> {
    let events = run.events.clone();
    tokio::spawn(async move {
        loop {
            let done = sent.pages.load(Ordering::Relaxed);
            events.progress("post-copy", done * PAGE_SIZE, total.max(done) * PAGE_SIZE);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Told that every page arrived, CRIU ends its dump and the engine's tool exits.
async fn finish_dump(run: &mut SourceRun, dumping: Dumping) {
    // (CRIU's stats-dump of a lazy dump holds zeros and a bogus frozen time: it is not
    // reported.)
    let why = match tokio::time::timeout(EXIT_WITHIN, dumping).await {
        Ok(Ok(Ok(()))) => return,
        Ok(Ok(Err(e))) => e.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "it did not exit within 30 s".to_string(),
    };
    let kept = crate::logs::keep_logs(&run.settings, &run.session, &run.dir);
    run.report.notes.push(format!(
        "the source's lazy dump ended badly after every page arrived ({why}); its logs are in {}",
        kept.display()
    ));
}

#[async_trait]
impl MigrationStrategy for Postcopy {
    fn kind(&self) -> Strategy {
        Strategy::Postcopy
    }

    async fn source(&self, run: &mut SourceRun) -> Result<(), MigrateError> {
        let lazy = run
            .ports
            .pages
            .lazy(&run.session)
            .await
            .map_err(stream_error)?;
        lazy_source(run, lazy).await
    }

    fn destination(&self, _session: &mut Arrival) -> Box<dyn DestHalf> {
        Box::new(LazyDest { daemon: None })
    }
}

/// The destination of post-copy: the restore runs under ferry's lazy-pages daemon.
pub(crate) struct LazyDest {
    pub(crate) daemon: Option<Box<dyn LazyDaemon>>,
}

/// What a restore under ferry's daemon asks CRIU.
pub(crate) fn lazy_plan(s: &Arrival) -> RestorePlan {
    RestorePlan {
        images: s.images.clone(),
        work: s.work.clone(),
        criu: RestoreSpec {
            tcp_established: s.tcp_established,
            file_locks: s.file_locks,
            lazy_pages: true,
            network_lock: NetworkLock::Skip,
            tcp_close: false,
        },
    }
}

/// If the source is lost before every page arrived, the processes must die while the
/// daemon still holds their userfaultfds, even during the restore.
pub(crate) fn on_loss(s: &Arrival) -> Box<dyn FnOnce() + Send> {
    s.killer()
}

/// Restores under `daemon`, which serves the restore's own faults.
pub(crate) async fn restore_under(
    s: &mut Arrival,
    daemon: &dyn LazyDaemon,
) -> Result<(), IncomingError> {
    let plan = lazy_plan(s);
    s.run_restore(&plan).await?;
    if daemon.has_failed() {
        // The daemon failed during the restore: the memory cannot be trusted.
        return Err(IncomingError::PageChannelLost);
    }
    s.stats.notes.push(format!(
        "post-copy: {} pages follow the restore",
        daemon.pages_total()
    ));
    Ok(())
}

#[async_trait]
impl DestHalf for LazyDest {
    async fn images_stored(&mut self, _pages_bytes: u64) -> Result<(), IncomingError> {
        Ok(())
    }

    async fn restore(&mut self, s: &mut Arrival) -> Result<(), IncomingError> {
        let t = Instant::now();
        let (images, work) = (s.images.clone(), s.work.clone());
        let loss = on_loss(s);
        let daemon = s.pages.postcopy(&images, &work, loss).await?;
        s.tl.record("daemon-start", t);
        let r = restore_under(s, &*daemon).await;
        self.daemon = Some(daemon);
        r
    }

    fn after_commit(self: Box<Self>) -> AfterCommit {
        match self.daemon {
            Some(d) => AfterCommit::LastPage(d),
            None => AfterCommit::Done,
        }
    }

    async fn abort(self: Box<Self>) {
        if let Some(d) = self.daemon {
            d.abort();
        }
    }
}
