//! Pre-copy: rounds of pages while the container runs, until the stopping rule
//! ([`crate::policy::stop_rule`]) says freeze; then a short stop-and-copy in which CRIU's
//! page files travel as references to what the destination already holds. No dirty
//! tracking is needed: ferry reads and hashes the memory itself.

use std::time::Instant;

use async_trait::async_trait;
use ferry_types::{Compress, PrecopySummary, Strategy};

use super::cold::{stream_error, FilesDest};
use super::{DestHalf, MigrationStrategy};
use crate::dest::arrival::Arrival;
use crate::error::{DumpError, MigrateError, PrepareError, TransferError};
use crate::policy::stop_rule::{Costs, Estimator, StopRule, Verdict};
use crate::ports::pages::Rounds;
use crate::source::SourceRun;

#[derive(Debug, Clone, Copy)]
pub struct Precopy;

/// Sends rounds until the stopping rule says freeze; returns the channel, ready for the
/// final copy (or post-copy), and the rounds for the report.
pub(crate) async fn run_rounds(
    run: &mut SourceRun,
) -> Result<(Box<dyn Rounds>, PrecopySummary), MigrateError> {
    let compress =
        Compress::parse(run.req.options.compress.as_deref()).map_err(PrepareError::from)?;
    let mut rounds = run
        .ports
        .pages
        .rounds(&run.session, compress)
        .await
        .map_err(stream_error)?;
    let rule = StopRule::from_options(&run.req.options);
    let costs = Costs::default();
    let mut est = Estimator::default();
    let t = Instant::now();
    let reason = loop {
        let k = est.rounds.len() as u32 + 1;
        let pids = run.ports.subject.processes();
        let r = rounds.round(k, pids).await.map_err(TransferError::Round)?;
        let resident = r.scanned_bytes;
        let verdict = est.push(r, resident, &rule, &costs);
        if let Some(r) = est.rounds.last() {
            run.progress(&format!("round {}", r.round), r.sent_bytes, r.scanned_bytes);
        }
        if let Verdict::Stop(reason) = verdict {
            break reason;
        }
    };
    run.tl.record("rounds", t);
    let summary = PrecopySummary {
        path: "ferry-hash".into(),
        link_mbit_s: est.link_bytes_per_ms().map(|b| b * 8.0 / 1000.0),
        rounds: est.rounds,
        stop_reason: reason,
        compress: rounds.compress().name().into(),
        final_pages_sent: 0,
        final_pages_referenced: 0,
        final_wire_bytes: 0,
    };
    tracing::info!(
        container = %run.req.container,
        rounds = summary.rounds.len(),
        reason = ?reason,
        "pre-copy rounds done"
    );
    Ok((rounds, summary))
}

#[async_trait]
impl MigrationStrategy for Precopy {
    fn kind(&self) -> Strategy {
        Strategy::Precopy
    }

    async fn source(&self, run: &mut SourceRun) -> Result<(), MigrateError> {
        let (rounds, summary) = run_rounds(run).await?;
        // In the report from now on, so that a failure later still shows the rounds.
        run.report.precopy = Some(summary);
        let before = rounds.sent();
        let stream = rounds
            .final_copy(&run.dir)
            .await
            .map_err(DumpError::PageStream)?;

        run.freeze_and_lock().await?;
        let stream = run.dump_into(stream, 0).await?;

        let t = Instant::now();
        let totals = stream.finish().await.map_err(TransferError::Pages)?;
        run.tl.record("pages", t);
        if let Some(pc) = run.report.precopy.as_mut() {
            pc.final_pages_sent = totals.sent.pages - before.pages;
            pc.final_pages_referenced = totals.sent.refs - before.refs;
            pc.final_wire_bytes = totals.sent.wire - before.wire;
        }
        run.pages_sent = totals.sent.wire;
        run.progress("pages", totals.file_bytes, totals.file_bytes);

        run.detach_and_send_images(totals.file_bytes).await?;
        run.restore_remote().await?;
        run.commit().await?;
        Ok(())
    }

    fn destination(&self, session: &mut Arrival) -> Box<dyn DestHalf> {
        let task = session.pages.receive_precopy(&session.images);
        Box::new(FilesDest::new(task))
    }
}
