//! Pre-copy: rounds of pages while the container runs, then a short stop-and-copy in
//! which CRIU's page files travel as references to what the destination already holds.
//! See `crate::precopy`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use ferry_engine::report::{PrecopyRound, PrecopySummary};
use ferry_proto::precopy::BlockKind;
use ferry_proto::ControlReply;
use ferry_transport::Stream;

use super::{Failure, SourceRun};
use ferry_engine::policy::stop_rule::{Costs, Estimator, StopRule, Verdict};
use ferry_pages::precopy::blocks::{BlockWriter, Compress, Sent};
use ferry_pages::precopy::hash::PageHasher;
use ferry_pages::precopy::refs::Dedupe;
use ferry_pages::precopy::scan::Scanner;
use ferry_pages::precopy::sink::DedupeSink;
use ferry_pages::precopy::{be_nice, round};
use ferry_pages::stream::PageFifos;
use ferry_types::StopReason;

/// The rounds' result, handed to the stop-and-copy (or to post-copy, for hybrid).
pub(super) struct RoundsDone {
    pub writer: BlockWriter<File>,
    pub scanner: Scanner,
    pub summary: PrecopySummary,
}

impl SourceRun {
    /// Sends rounds on `pages` until the stopping rule says freeze.
    pub(super) async fn precopy_rounds(&mut self, pages: Stream) -> Result<RoundsDone, Failure> {
        let compress =
            Compress::parse(self.req.options.compress.as_deref()).map_err(Failure::new)?;
        let file = File::from(
            pages
                .into_blocking_fd()
                .map_err(|e| Failure::new(format!("page channel: {e}")))?,
        );
        let mut ack = file
            .try_clone()
            .map_err(|e| Failure::new(format!("page channel: {e}")))?;
        let hasher =
            PageHasher::random().map_err(|e| Failure::new(format!("no randomness: {e}")))?;
        let mut writer = BlockWriter::new(file, compress)
            .map_err(|e| Failure::new(format!("cannot start zstd: {e}")))?;
        let rule = StopRule::from_options(&self.req.options);
        let freezer = self.facts.freezer.clone();
        let events = self.events.clone();
        let t = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            be_nice();
            let mut scanner = Scanner::new(hasher);
            let progress = |r: &PrecopyRound| {
                let _ = events.send(ControlReply::Progress {
                    phase: format!("round {}", r.round),
                    done: r.sent_bytes,
                    total: r.scanned_bytes,
                });
            };
            let r = run_rounds(
                &mut writer,
                &mut ack,
                &mut scanner,
                &|| freezer.procs(),
                &rule,
                &progress,
            );
            let _ = tx.send(r.map(|(est, reason)| (writer, scanner, est, reason)));
        });
        let (writer, scanner, est, reason) = rx
            .await
            .map_err(|_| Failure::new("the pre-copy rounds stopped unexpectedly"))?
            .map_err(|e| Failure::new(format!("pre-copy round failed: {e}")))?;
        self.tl.record("rounds", t);
        let summary = PrecopySummary {
            path: "ferry-hash".into(),
            link_mbit_s: est.link_bytes_per_ms().map(|b| b * 8.0 / 1000.0),
            rounds: est.rounds,
            stop_reason: reason,
            compress: match compress {
                Compress::Zstd => "zstd".into(),
                Compress::None => "none".into(),
            },
            final_pages_sent: 0,
            final_pages_referenced: 0,
            final_wire_bytes: 0,
        };
        tracing::info!(
            container = %self.req.container,
            rounds = summary.rounds.len(),
            reason = ?reason,
            "pre-copy rounds done"
        );
        Ok(RoundsDone {
            writer,
            scanner,
            summary,
        })
    }

    pub(super) async fn forward_precopy(&mut self, pages: Stream) -> Result<(), Failure> {
        let rounds = self.precopy_rounds(pages).await?;
        // In the report from now on, so that a failure later still shows the rounds.
        self.report.precopy = Some(rounds.summary);
        let round_wire = rounds.writer.sent.wire;
        let before = rounds.writer.sent;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Sent>();
        let sink = DedupeSink::new(
            rounds.writer,
            rounds.scanner.hasher,
            rounds.scanner.held,
            done_tx,
        );
        let streamer = PageFifos::create(&self.dir)
            .and_then(|f| f.stream_to(Box::new(sink)))
            .map_err(|e| Failure::new(format!("cannot start the page stream: {e}")))?;

        self.freeze_and_lock().await?;
        let streamer = self.dump_into_fifos(streamer, 0).await?;

        let t = Instant::now();
        let file_bytes = streamer
            .finish()
            .await
            .map_err(|e| Failure::new(format!("the page transfer broke: {e}")))?;
        let sent = done_rx
            .recv()
            .map_err(|_| Failure::new("the page stream ended without its totals"))?;
        self.tl.record("pages", t);
        if let Some(pc) = self.report.precopy.as_mut() {
            pc.final_pages_sent = sent.pages - before.pages;
            pc.final_pages_referenced = sent.refs - before.refs;
            pc.final_wire_bytes = sent.wire - round_wire;
        }
        self.pages_sent = sent.wire;
        self.progress("pages", file_bytes, file_bytes);

        self.detach_and_send_images(file_bytes).await?;
        self.restore_remote().await?;
        self.commit().await
    }
}

impl SourceRun {
    /// Hybrid: pre-copy rounds, then post-copy for what is left, where every page the
    /// destination holds travels as a reference.
    pub(super) async fn forward_hybrid(
        &mut self,
        pages: Stream,
        urgent: Stream,
    ) -> Result<(), Failure> {
        let mut rounds = self.precopy_rounds(pages).await?;
        rounds
            .writer
            .marker(BlockKind::End, 0, 0)
            .map_err(|e| Failure::new(format!("the page channel broke: {e}")))?;
        let round_wire = rounds.writer.sent.wire;
        let bulk = Stream::from_blocking_fd(OwnedFd::from(rounds.writer.into_inner()))
            .map_err(|e| Failure::new(format!("page channel: {e}")))?;
        self.report.precopy = Some(rounds.summary);
        let dedupe = Arc::new(Dedupe {
            hasher: rounds.scanner.hasher,
            held: rounds.scanner.held,
        });
        let r = self.forward_lazy(bulk, urgent, Some(dedupe)).await;
        self.pages_sent += round_wire;
        r
    }
}

/// Runs rounds until the rule says freeze.
fn run_rounds<W: std::io::Write, A: std::io::Read>(
    writer: &mut BlockWriter<W>,
    ack: &mut A,
    scanner: &mut Scanner,
    pids: &dyn Fn() -> Vec<u32>,
    rule: &StopRule,
    progress: &dyn Fn(&PrecopyRound),
) -> std::io::Result<(Estimator, StopReason)> {
    let costs = Costs::default();
    let mut est = Estimator::default();
    let mut k = 0u32;
    loop {
        k += 1;
        let r = round(writer, ack, scanner, &pids(), k)?;
        let resident = r.scanned_bytes;
        let verdict = est.push(r, resident, rule, &costs);
        if let Some(r) = est.rounds.last() {
            progress(r);
        }
        if let Verdict::Stop(reason) = verdict {
            return Ok((est, reason));
        }
    }
}
