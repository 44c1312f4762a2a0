//! Cold migration: every page travels before the restore. CRIU dumps into FIFOs whose
//! content is spliced into the page channel while it dumps (see `pagestream`).

use std::time::{Duration, Instant};

use ferry_criu::log::diagnose;
use ferry_criu::plan::{CheckpointSpec, CriuOptionPlan, NetworkLock, PageTransport};
use ferry_engine::report::CriuErrors;
use ferry_proto::ControlReply;
use ferry_runtime::{CheckpointArgs, Runtime};
use ferry_transport::Stream;
use ferry_types::Fault;

use super::{resident_bytes, Failure, SourceRun};
use ferry_pages::stream::{PageFifos, Streamer};

impl SourceRun {
    pub(super) async fn forward_cold(&mut self, pages: Stream) -> Result<(), Failure> {
        let sock = pages
            .into_blocking_fd()
            .map_err(|e| Failure::new(format!("page channel: {e}")))?;
        let streamer = PageFifos::create(&self.dir)
            .and_then(|f| f.stream(sock))
            .map_err(|e| Failure::new(format!("cannot start the page stream: {e}")))?;
        let estimate = resident_bytes(&self.facts.freezer);

        self.freeze_and_lock().await?;
        let streamer = self.dump_into_fifos(streamer, estimate).await?;

        let t = Instant::now();
        let pages_bytes = streamer
            .finish()
            .await
            .map_err(|e| Failure::new(format!("the page transfer broke: {e}")))?;
        self.tl.record("pages", t);
        self.pages_sent = pages_bytes;
        self.progress("pages", pages_bytes, pages_bytes);

        self.detach_and_send_images(pages_bytes).await?;
        self.restore_remote().await?;
        self.commit().await
    }

    /// Runs CRIU's full dump into the FIFOs `streamer` drains; on failure the streamer
    /// is stopped and CRIU's words are in the failure.
    pub(super) async fn dump_into_fifos(
        &mut self,
        streamer: Streamer,
        estimate: u64,
    ) -> Result<Streamer, Failure> {
        let t = Instant::now();
        let plan = CriuOptionPlan::checkpoint(
            &CheckpointSpec {
                leave_running: true,
                tcp_established: self.req.options.tcp_established,
                file_locks: self.req.options.file_locks,
                pages: PageTransport::ImagesDir,
                // ferry's hold lock is already in place and outlives the dump.
                network_lock: NetworkLock::Skip,
            },
            &self.facts.config_target,
        )
        .map_err(|e| Failure::new(e.to_string()))?;
        let ticker = self.start_ticker(&streamer, estimate);
        let dump = self
            .agent
            .runc
            .checkpoint(
                &self.req.container,
                CheckpointArgs {
                    images: &self.dir,
                    work: &self.dir,
                    plan: &plan,
                    config_target: &self.facts.config_target,
                    fds: Vec::new(),
                    status_fd: None,
                },
            )
            .await;
        ticker.abort();
        if let Err(e) = dump {
            streamer.abort().await;
            return Err(self.criu_failure(&e.to_string()));
        }
        self.p.dumped = true;
        self.tl.record("dump", t);
        Ok(streamer)
    }

    /// A failed dump, with CRIU's error lines and its log.
    pub(super) fn criu_failure(&self, err: &str) -> Failure {
        let failure = diagnose(&self.dir.join("dump.log"), err);
        // CRIU that dies without a word (killed) may leave the sockets it was saving in
        // repair mode: the container survives, its connections may not.
        let died = failure.error_lines.is_empty() && self.req.options.tcp_established;
        let warning = if died {
            "; CRIU ended without reporting an error (it was probably killed), so the container's established TCP connections may have been reset"
        } else {
            ""
        };
        Failure {
            reason: format!("checkpoint failed: {failure}{warning}"),
            criu: Some(CriuErrors {
                log: failure.log_path.display().to_string(),
                lines: failure.error_lines,
            }),
        }
    }

    pub(super) fn start_ticker(
        &self,
        streamer: &Streamer,
        estimate: u64,
    ) -> tokio::task::JoinHandle<()> {
        if self.req.options.inject_fault == Some(Fault::CutTransfer)
            && self.agent.cfg.allow_fault_injection
        {
            tracing::warn!("fault injection: the page channel breaks after its first chunk");
            streamer.cut_after(1);
        }
        let sent = streamer.counter();
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                let done = sent.load(std::sync::atomic::Ordering::Relaxed);
                let _ = events.send(ControlReply::Progress {
                    phase: "pages".into(),
                    done,
                    total: estimate.max(done),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}
