//! The steps every strategy's source half is made of: prepare the destination, freeze
//! and lock, dump, detach and send the images, restore, commit. Each records its phase
//! and what it did (for the rollback).

use std::time::{Duration, Instant};

use ferry_criu::log::diagnose;
use ferry_criu::plan::{CheckpointSpec, NetworkLock, PageTransport};
use ferry_proto::{PeerReply, PeerRequest, Prepare, WireMessage};
use ferry_types::{CriuErrors, DestStats, Fault};

use super::journal::{OutJournal, JOURNAL};

/// The destination's steps at the commit, noted in the report.
const COMMIT_STEPS: [&str; 3] = ["unlock", "deliver-held", "watch-peers"];
use super::{SourceRun, HOLD_LIMIT, PEER_TIMEOUT, READY, RESTORE_HOLD_LIMIT, RESTORE_READY};
use crate::error::{
    CommitError, DumpError, PeerError, PrepareError, RestoreError, SendError, TransferError,
};
use crate::ports::container::{ContainerError, DumpPlan};
use crate::ports::pages::DumpStream;
use crate::ports::peer::{Frame, ToDest};

impl SourceRun {
    pub(crate) fn progress(&self, phase: &str, done: u64, total: u64) {
        self.events.progress(phase, done, total);
    }

    fn link(&mut self) -> Result<&mut ToDest, PeerError> {
        match self.link.as_mut() {
            Some(l) => Ok(l.as_mut()),
            None => Err(PeerError::Lost(crate::ports::peer::LinkError::Closed)),
        }
    }

    pub(crate) async fn send(&mut self, msg: &PeerRequest) -> Result<(), PeerError> {
        Ok(self.link()?.send(msg).await?)
    }

    pub(crate) async fn send_data(&mut self, data: &[u8]) -> Result<(), PeerError> {
        Ok(self.link()?.send_data(data).await?)
    }

    /// The destination's next answer; its refusal is an error.
    pub(crate) async fn expect(&mut self, what: &'static str) -> Result<PeerReply, PeerError> {
        self.expect_within(what, PEER_TIMEOUT).await
    }

    pub(crate) async fn expect_within(
        &mut self,
        what: &'static str,
        limit: Duration,
    ) -> Result<PeerReply, PeerError> {
        let link = self.link()?;
        match tokio::time::timeout(limit, link.recv()).await {
            Err(_) => Err(PeerError::Timeout { limit, what }),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(Frame::Message(PeerReply::Error { message }))) => {
                Err(PeerError::Refused(message))
            }
            Ok(Ok(Frame::Message(m))) => Ok(m),
            Ok(Ok(Frame::Data(_))) => Err(PeerError::Unexpected("data")),
        }
    }

    /// Connects to the destination; returns the host name it proved.
    pub(crate) async fn connect(&mut self) -> Result<String, PrepareError> {
        let t = Instant::now();
        self.progress("connect", 0, 0);
        let link = self
            .ports
            .dialer
            .connect()
            .await
            .map_err(PrepareError::Unreachable)?;
        let host = link.peer_host().to_string();
        self.report.destination = Some(host.clone());
        self.link = Some(link);
        self.tl.record("connect", t);
        Ok(host)
    }

    /// Prepares the destination, and sends the shipment if it lacks it.
    pub(crate) async fn prepare_destination(&mut self) -> Result<(), PrepareError> {
        let t = Instant::now();
        let shipment = self.ports.subject.shipment()?;
        let o = &self.req.options;
        let mut spec = self.ports.network.spec().clone();
        let mut readdress_from = None;
        if let Some(ip) = &o.new_ip {
            let engine = self.ports.subject.engine();
            if engine != ferry_types::EngineKind::Runc {
                return Err(PrepareError::NewAddressEngine(engine.name()));
            }
            let n = spec.readdressed(ip).map_err(PrepareError::NewAddress)?;
            self.report.notes.push(format!(
                "the container takes the address {} at the destination (it had {}); its own sockets are rewritten there",
                n.spec.address, spec.address
            ));
            readdress_from = Some(n.old.to_string());
            spec = n.spec;
        }
        let prepare = PeerRequest::Prepare(Prepare {
            session: self.session.clone(),
            container: self.req.container.clone(),
            strategy: self.req.strategy,
            bundle_digest: shipment.digest.clone(),
            tcp_established: o.tcp_established,
            file_locks: o.file_locks,
            inject_fault: o.inject_fault,
            group: o.group.clone(),
            pod_members: match spec.pod {
                Some(_) => o.pod.clone(),
                None => Vec::new(),
            },
            net: spec,
            engine: self.ports.subject.engine(),
            readdress_from,
        });
        self.send(&prepare).await?;
        let need_bundle = match self.expect("prepared").await? {
            PeerReply::Prepared { need_bundle } => need_bundle,
            other => return Err(PeerError::Unexpected(other.name()).into()),
        };
        self.tl.record("prepare", t);

        if need_bundle {
            let t = Instant::now();
            self.progress("bundle", 0, 0);
            let bytes = self.send_shipment(&shipment).await?;
            match self.expect("bundle_stored").await? {
                PeerReply::BundleStored => {}
                other => return Err(PeerError::Unexpected(other.name()).into()),
            }
            self.report.bundle_bytes = bytes;
            self.tl.record("bundle", t);
            self.ports.subject.shipped(&shipment.digest);
        } else {
            self.report
                .notes
                .push("the destination already had the bundle".into());
        }
        Ok(())
    }

    /// The downtime starts: freeze the container and lock its network (after the
    /// client's word, with `hold_freeze`).
    pub(crate) async fn freeze_and_lock(&mut self) -> Result<(), crate::error::MigrateError> {
        if let Some(hold) = self.holds.freeze.take() {
            let t = Instant::now();
            self.progress(READY, 0, 0);
            match tokio::time::timeout(HOLD_LIMIT, hold).await {
                Ok(Ok(())) => {}
                _ => return Err(PrepareError::NotReleased.into()),
            }
            self.tl.record("hold", t);
        }
        // Written before the freeze: a crash between the two leaves a journal that
        // says so, never a paused container nobody knows about.
        self.journal("freezing");
        let t = Instant::now();
        self.t_freeze = Some(t);
        // Counted as frozen from the first attempt: a freeze that fails half-way (some
        // processes frozen, the cgroup stuck freezing) is undone by a thaw too.
        self.progress.frozen = true;
        let subject = self.ports.subject.clone();
        tokio::task::spawn_blocking(move || subject.freeze())
            .await
            .map_err(|e| DumpError::Freeze(ContainerError::Failed(e.to_string())))?
            .map_err(DumpError::Freeze)?;
        self.tl.record("freeze", t);

        let t = Instant::now();
        self.ports.network.lock().await.map_err(DumpError::Lock)?;
        self.progress.locked = true;
        self.tl.record("lock", t);
        self.journal("frozen");
        Ok(())
    }

    /// Records where the migration stands, for a restarted agent ([`super::journal`]).
    pub(crate) fn journal(&self, phase: &str) {
        let j = OutJournal {
            container: self.req.container.clone(),
            session: self.session.clone(),
            dest: self.ports.dialer.describe(),
            phase: phase.into(),
        };
        if let Ok(text) = serde_json::to_vec(&j) {
            if let Err(e) = crate::durable::write_atomic(&self.dir.join(JOURNAL), &text) {
                tracing::error!(container = %self.req.container, "cannot journal the migration ({phase}): {e}");
            }
        }
    }

    /// What CRIU is asked to do: dump everything, leave the processes (frozen by ferry),
    /// and let ferry's own network lock, already in place, outlive the dump.
    pub(crate) fn dump_plan(&self, pages: PageTransport) -> DumpPlan {
        DumpPlan {
            images: self.dir.clone(),
            work: self.dir.clone(),
            criu: CheckpointSpec {
                leave_running: true,
                tcp_established: self.req.options.tcp_established,
                file_locks: self.req.options.file_locks,
                pages,
                network_lock: NetworkLock::Skip,
            },
        }
    }

    /// Runs CRIU's full dump into the page files `stream` drains; on failure the stream
    /// is stopped and CRIU's words are in the error.
    pub(crate) async fn dump_into(
        &mut self,
        stream: Box<dyn DumpStream>,
        estimate: u64,
    ) -> Result<Box<dyn DumpStream>, DumpError> {
        let t = Instant::now();
        let plan = self.dump_plan(PageTransport::ImagesDir);
        let ticker = self.start_ticker(&*stream, estimate);
        let dump = self.ports.subject.checkpoint(&plan).await;
        ticker.abort();
        if let Err(e) = dump {
            stream.abort().await;
            return Err(self.criu_failure(&e));
        }
        self.progress.dumped = true;
        self.tl.record("dump", t);
        Ok(stream)
    }

    /// A failed dump, with CRIU's error lines and its log.
    pub(crate) fn criu_failure(&self, err: &ContainerError) -> DumpError {
        let mut failure = diagnose(&self.dir.join("dump.log"), &err.to_string());
        // Where the log is kept once the session's directory is gone.
        failure.log_path = crate::logs::logs_dir(&self.settings, &self.session).join("dump.log");
        // CRIU that dies without a word (killed) leaves the sockets it was saving in
        // repair mode; the rollback takes them out (`Undo::ReleaseSockets`).
        let died = failure.error_lines.is_empty() && self.req.options.tcp_established;
        DumpError::Criu {
            failure: Box::new(failure),
            died,
        }
    }

    /// Progress of the page stream while CRIU dumps.
    fn start_ticker(&self, stream: &dyn DumpStream, estimate: u64) -> tokio::task::JoinHandle<()> {
        if self.fault(Fault::CutTransfer) {
            tracing::warn!("fault injection: the page channel breaks after its first chunk");
            stream.cut_after(1);
        }
        let sent = stream.streamed();
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                let done = sent.load(std::sync::atomic::Ordering::Relaxed);
                events.progress("pages", done, estimate.max(done));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// After the dump: detach the source's link and send the image files.
    pub(crate) async fn detach_and_send_images(
        &mut self,
        pages_bytes: u64,
    ) -> Result<(), TransferError> {
        let t = Instant::now();
        self.ports
            .network
            .detach()
            .await
            .map_err(TransferError::Detach)?;
        self.progress.link_down = true;
        self.tl.record("detach", t);

        let t = Instant::now();
        let changes = self
            .ports
            .subject
            .shipment_changes(&self.dir)
            .map_err(TransferError::Changes)?;
        if changes.changed + changes.removed > 0 {
            self.report.notes.push(format!(
                "{} file(s) written and {} removed after the bundle was sent travelled with the images ({} bytes)",
                changes.changed, changes.removed, changes.bytes
            ));
        }
        self.send_images(pages_bytes).await?;
        match self.expect("images_stored").await? {
            PeerReply::ImagesStored => {}
            other => return Err(PeerError::Unexpected(other.name()).into()),
        }
        self.tl.record("images", t);
        let mut sizes = ferry_criu::images::measure(&self.dir).unwrap_or_default();
        sizes.pages_bytes += pages_bytes;
        sizes.total_bytes += pages_bytes;
        self.report.images = Some(sizes);
        self.report.criu.dump = ferry_criu::images::Stats::read(&self.dir.join("stats-dump"))
            .ok()
            .and_then(|s| s.dump);
        Ok(())
    }

    /// `Restore` until `Restored`: the container runs at the destination, still isolated
    /// (after the client's word, with `hold_restore`).
    pub(crate) async fn restore_remote(&mut self) -> Result<(), RestoreError> {
        if let Some(hold) = self.holds.restore.take() {
            let t = Instant::now();
            self.progress(RESTORE_READY, 0, 0);
            match tokio::time::timeout(RESTORE_HOLD_LIMIT, hold).await {
                Ok(Ok(())) => {}
                _ => return Err(RestoreError::NotReleased),
            }
            self.tl.record("restore-hold", t);
        }
        let t = Instant::now();
        self.progress("restore", 0, 0);
        self.send(&PeerRequest::Restore).await?;
        let stats = match self.expect("restored").await? {
            PeerReply::Restored { stats } => stats,
            PeerReply::RestoreFailed { reason } => return Err(RestoreError::Remote(reason)),
            other => return Err(PeerError::Unexpected(other.name()).into()),
        };
        self.tl.record("restore", t);
        self.absorb_dest_stats(stats);
        Ok(())
    }

    /// `Commit` until `Committed`: the downtime ends.
    pub(crate) async fn commit(&mut self) -> Result<(), CommitError> {
        let t = Instant::now();
        self.progress("commit", 0, 0);
        self.journal("commit-sent");
        // What the source's lock held goes with the commit; its own packets stay behind
        // (the destination's copy sends those itself).
        let mut held = self.ports.network.take_held().await;
        held.outbound.clear();
        self.send(&PeerRequest::Commit { held }).await?;
        self.progress.commit_sent = true;
        match self.expect("committed").await? {
            PeerReply::Committed { stats } => {
                self.peers_watched = stats.watching_peers;
                // The destination's steps after the restore, as it timed them.
                let steps = stats.phases.iter();
                let at_commit = steps.filter(|p| COMMIT_STEPS.contains(&p.name.as_str()));
                self.note_dest_phases(at_commit);
            }
            other => return Err(PeerError::Unexpected(other.name()).into()),
        }
        self.progress.committed = true;
        self.tl.record("commit", t);
        if let Some(f) = self.t_freeze {
            self.report.downtime_ms = Some(ferry_types::ms(f.elapsed()));
        }
        Ok(())
    }

    fn absorb_dest_stats(&mut self, d: DestStats) {
        self.report.criu.restore = d.criu_restore;
        self.report.destination_usage = Some(d.usage);
        self.note_dest_phases(d.phases.iter());
        self.report.notes.extend(d.notes);
    }

    /// Notes the destination's phases as it timed them.
    fn note_dest_phases<'a>(&mut self, phases: impl Iterator<Item = &'a ferry_types::Phase>) {
        for p in phases {
            self.report
                .notes
                .push(format!("destination {}: {:.1} ms", p.name, p.ms));
        }
    }

    /// Everything sent to the destination: messages, bundle, images and pages.
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.link.as_ref().map_or(0, |l| l.bytes_sent()) + self.pages_sent
    }

    pub(crate) fn freeze_started(&self) -> Option<Instant> {
        self.t_freeze
    }

    /// Sends an `Abort` without waiting long: the destination drops what it built.
    /// Returns whether it went.
    pub(crate) async fn abort_remote(&mut self, reason: &str) -> bool {
        let Some(l) = self.link.as_mut() else {
            return false;
        };
        let abort = PeerRequest::Abort {
            reason: reason.to_string(),
        };
        let sent = l.send(&abort);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), sent).await,
            Ok(Ok(()))
        )
    }

    /// The destination's answer to `Abort`: its own reason for the failure, if it has
    /// one (a page transfer that broke there, such as a full images tmpfs).
    pub(crate) async fn abort_answer(&mut self) -> Option<String> {
        match self.expect_within("aborted", Duration::from_secs(2)).await {
            Err(PeerError::Refused(why)) => Some(why.chars().take(600).collect()),
            _ => None,
        }
    }

    pub(crate) fn criu_errors(e: &crate::error::MigrateError) -> Option<CriuErrors> {
        e.criu().map(|f| CriuErrors {
            log: f.log_path.display().to_string(),
            lines: f.error_lines.clone(),
        })
    }
}

impl From<SendError> for crate::error::MigrateError {
    fn from(e: SendError) -> Self {
        TransferError::Send(e).into()
    }
}
