//! Post-copy: CRIU dumps everything but the memory (a lazy dump) and then serves pages
//! on a local socket pair for as long as ferry asks; the container restarts at the
//! destination at once, and ferry's pump moves its pages there afterwards.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_criu::plan::{CheckpointSpec, CriuOptionPlan, NetworkLock, PageTransport};
use ferry_criu::process::HELPER_SOCKET_FD;
use ferry_engine::timeline::ms;
use ferry_proto::postcopy::PAGE_SIZE;
use ferry_proto::{ControlReply, PeerReply};
use ferry_runtime::{CheckpointArgs, Runtime, RuntimeError};
use ferry_transport::Stream;
use ferry_types::Fault;
use tokio::task::JoinHandle;

use super::{Failure, SourceRun};
use ferry_pages::postcopy::pump::{lazy_runs, pump, PumpError, PumpStats, Sent};
use ferry_pages::postcopy::Channels;
use ferry_pages::precopy::refs::Dedupe;

/// Where CRIU reports that its lazy dump is ready (runc's `--status-fd`).
const STATUS_FD: i32 = HELPER_SOCKET_FD + 1;
/// How long a lazy dump may take to get ready.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// A lazy dump in progress: runc (and CRIU under it) run until every page was served.
#[derive(Debug)]
pub(super) struct LazyDump {
    runc: Option<JoinHandle<Result<(), RuntimeError>>>,
    criu: Option<tokio::net::UnixStream>,
    pump: Option<JoinHandle<Result<PumpStats, PumpError>>>,
}

impl LazyDump {
    /// Ends the lazy dump: CRIU sees its socket close, lets go of the processes (they stay
    /// frozen: ferry froze them, and CRIU only thaws what it froze), and runc exits.
    pub(super) async fn stop(mut self) {
        if let Some(p) = self.pump.take() {
            p.abort();
            let _ = p.await;
        }
        drop(self.criu.take());
        if let Some(r) = self.runc.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), r).await;
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl SourceRun {
    pub(super) async fn forward_lazy(
        &mut self,
        bulk: Stream,
        urgent: Stream,
        dedupe: Option<Arc<Dedupe>>,
    ) -> Result<(), Failure> {
        let (ours, criu_end) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Failure::new(format!("page server socket: {e}")))?;
        ours.set_nonblocking(true)
            .map_err(|e| Failure::new(e.to_string()))?;
        let ours =
            tokio::net::UnixStream::from_std(ours).map_err(|e| Failure::new(e.to_string()))?;
        let (status_r, status_w) = pipe().map_err(|e| Failure::new(format!("status pipe: {e}")))?;

        self.freeze_and_lock().await?;

        let t = Instant::now();
        let plan = CriuOptionPlan::checkpoint(
            &CheckpointSpec {
                leave_running: true,
                tcp_established: self.req.options.tcp_established,
                file_locks: self.req.options.file_locks,
                pages: PageTransport::LazySocket {
                    fd: HELPER_SOCKET_FD,
                },
                network_lock: NetworkLock::Skip,
            },
            &self.facts.config_target,
        )
        .map_err(|e| Failure::new(e.to_string()))?;
        // runc runs as long as CRIU serves pages: on a task of its own.
        let (runc, container, dir, target) = (
            self.agent.runc.clone(),
            self.req.container.clone(),
            self.dir.clone(),
            self.facts.config_target.clone(),
        );
        let task = tokio::spawn(async move {
            let args = CheckpointArgs {
                images: &dir,
                work: &dir,
                plan: &plan,
                config_target: &target,
                fds: vec![(HELPER_SOCKET_FD, criu_end.into()), (STATUS_FD, status_w)],
                status_fd: Some(STATUS_FD),
            };
            runc.checkpoint(&container, args).await
        });
        self.lazy = Some(LazyDump {
            runc: Some(task),
            criu: Some(ours),
            pump: None,
        });

        // CRIU writes a byte when its images are written and it serves pages; the pipe
        // ends without one if the dump failed.
        let ready = tokio::time::timeout(
            READY_WITHIN,
            tokio::task::spawn_blocking(move || {
                let mut f = std::fs::File::from(status_r);
                let mut b = [0u8; 1];
                f.read(&mut b).map(|n| n == 1)
            }),
        )
        .await;
        if !matches!(ready, Ok(Ok(Ok(true)))) {
            let err = match self.lazy.as_mut().and_then(|l| l.runc.take()) {
                Some(r) => match tokio::time::timeout(Duration::from_secs(30), r).await {
                    Ok(Ok(Err(e))) => e.to_string(),
                    _ => "the lazy dump did not get ready".to_string(),
                },
                None => "the lazy dump did not get ready".to_string(),
            };
            return Err(self.criu_failure(&err));
        }
        self.p.dumped = true;
        self.tl.record("dump", t);

        let runs = lazy_runs(&self.dir)
            .map_err(|e| Failure::new(format!("reading the lazy pagemaps: {e}")))?;
        let pages_total: u64 = runs.iter().map(|r| r.nr_pages).sum();

        // Serve pages from now on: the destination's restore itself faults on some, and
        // once it finished, every other page is pushed.
        let counter = Arc::new(Sent::default());
        let cut = (self.req.options.inject_fault == Some(Fault::CutPostcopy)
            && self.agent.cfg.allow_fault_injection)
            .then(|| (pages_total / 4).max(1));
        let criu = self
            .lazy
            .as_mut()
            .and_then(|l| l.criu.take())
            .ok_or_else(|| Failure::new("no page server"))?;
        let handle = tokio::spawn(pump(
            criu,
            Channels { bulk, urgent },
            runs,
            counter.clone(),
            cut,
            dedupe,
        ));
        if let Some(l) = self.lazy.as_mut() {
            l.pump = Some(handle);
        }

        self.detach_and_send_images(0).await?;
        self.restore_remote().await?;
        let running = Instant::now();
        self.p.pages_owed = true;
        self.commit().await?;

        let t = Instant::now();
        let ticker = self.postcopy_ticker(counter.clone(), pages_total);
        let pumped = match self.lazy.as_mut().and_then(|l| l.pump.take()) {
            Some(h) => h.await.map_err(|e| Failure::new(e.to_string()))?,
            None => return Err(Failure::new("no pump")),
        };
        ticker.abort();
        self.pages_sent = counter.bytes.load(Ordering::Relaxed);
        let stats = pumped.map_err(|e| Failure::new(format!("post-copy broke: {e}")))?;
        self.pages_sent = stats.bytes_sent;
        if let Some(pc) = self.report.precopy.as_mut() {
            pc.final_pages_referenced = stats.pages_referenced;
            pc.final_pages_sent =
                (stats.pages_pushed + stats.pages_answered).saturating_sub(stats.pages_referenced);
            pc.final_wire_bytes = stats.bytes_sent;
        }
        let dest = match self
            .expect_within("postcopy_done", Duration::from_secs(60))
            .await?
        {
            PeerReply::PostcopyDone { stats } => stats,
            PeerReply::PostcopyFailed { reason } => {
                return Err(Failure::new(format!(
                    "post-copy broke at the destination: {reason}"
                )))
            }
            other => return Err(Failure::unexpected(&other)),
        };
        self.report.postcopy_ms = Some(ms(running.elapsed()));
        self.tl.record("postcopy", t);
        self.report.pages_total = Some(dest.pages_total.max(pages_total));
        self.report.pages_on_demand = Some(dest.pages_on_demand);
        self.report.pages_pushed = Some(dest.pages_pushed);
        self.p.pages_owed = false;

        // Told that every page arrived, CRIU ends its dump; runc exits.
        if let Some(mut l) = self.lazy.take() {
            if let Some(r) = l.runc.take() {
                match tokio::time::timeout(Duration::from_secs(30), r).await {
                    // (CRIU's stats-dump of a lazy dump holds zeros and a bogus frozen
                    // time: it is not reported.)
                    Ok(Ok(Ok(()))) => {}
                    other => {
                        let kept = crate::logs::keep_logs(&self.agent, &self.session, &self.dir);
                        let why = match other {
                            Ok(Ok(Err(e))) => e.to_string(),
                            Ok(Err(e)) => e.to_string(),
                            _ => "it did not exit within 30 s".to_string(),
                        };
                        self.report.notes.push(format!(
                            "the source's lazy dump ended badly after every page arrived ({why}); its logs are in {}",
                            kept.display()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn postcopy_ticker(&self, counter: Arc<Sent>, total: u64) -> JoinHandle<()> {
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                let done = counter.pages.load(Ordering::Relaxed);
                let _ = events.send(ControlReply::Progress {
                    phase: "post-copy".into(),
                    done: done * PAGE_SIZE,
                    total: total.max(done) * PAGE_SIZE,
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}
