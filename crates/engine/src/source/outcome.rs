//! How an outgoing migration ends: the source's copy removed, or the container back as it
//! was, or (when nobody can tell where it runs) kept frozen. The report says which.

use std::time::{Duration, Instant};

use ferry_proto::{PeerReply, WireMessage};
use ferry_types::{Outcome, Report, SessionState};

use super::journal::{ask_destination, JOURNAL};
use super::rollback::{rollback, undo, Rollback, SourceProgress};
use super::SourceRun;
use crate::error::MigrateError;

/// How long the source keeps asking where an in-doubt migration ended, by default.
pub const RESOLVE_FOR: Duration = Duration::from_secs(30);
/// How long the source waits for `PeersResumed` (the destination watches for 1 s).
const PEERS_WITHIN: Duration = Duration::from_secs(3);

impl SourceRun {
    /// The container runs at the destination with all its memory: remove it here.
    pub(crate) async fn succeed(mut self) -> Report {
        let t = Instant::now();
        self.progress("cleanup", 0, 0);
        let mut warnings = Vec::new();
        self.ports.subject.kill_frozen();
        if let Err(e) = self.ports.subject.remove().await {
            warnings.push(format!("removing the source container: {e}"));
        }
        if let Err(e) = self.ports.network.release().await {
            warnings.push(format!("removing the source network namespace: {e}"));
        }
        crate::logs::remove_session_dir(&self.settings, &self.session, &self.dir);
        self.tl.record("cleanup", t);
        self.report.source_released_ms = Some(self.tl.elapsed_ms());
        self.report.notes.extend(warnings);
        self.report.outcome = Outcome::Migrated;
        // The migration is over; what the destination saw of the peers comes after.
        let total = self.tl.elapsed_ms();
        self.hear_peers().await;
        let mut report = self.finish_report();
        report.total_ms = total;
        report
    }

    /// Waits for `PeersResumed` when the destination said it watches peers.
    async fn hear_peers(&mut self) {
        if self.peers_watched == 0 {
            return;
        }
        match self.expect_within("peers_resumed", PEERS_WITHIN).await {
            Ok(PeerReply::PeersResumed { peers }) => self.report.peers_resumed = peers,
            Ok(other) => self.report.notes.push(format!(
                "the destination sent {} where it was to say when the peers came back",
                other.name()
            )),
            Err(e) => self.report.notes.push(format!(
                "the destination did not say when the peers came back: {e}"
            )),
        }
    }

    /// Nothing was done: forget the session.
    pub(crate) fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn finish_report(mut self) -> Report {
        self.report.bytes_sent = self.bytes_sent();
        self.report.total_ms = self.tl.elapsed_ms();
        self.report.phases = std::mem::take(&mut self.tl).into_phases();
        self.report.usage = Some(self.meter.finish());
        self.report
    }

    fn exited(&self, reason: &str) -> String {
        format!(
            "container '{}' exited by itself during the migration, so there is nothing to move or resume ({reason})",
            self.req.container
        )
    }

    /// The migration failed: roll back, or keep the container frozen where only the
    /// destination can tell whether it runs there.
    pub(crate) async fn fail(mut self, e: MigrateError) -> Report {
        // The logs outlive the session's directory: the reason points at them.
        crate::logs::keep_logs(&self.settings, &self.session, &self.dir);
        let mut reason = e.to_string();
        if self.ports.subject.processes().is_empty() {
            reason = self.exited(&reason);
        }
        tracing::warn!(container = %self.req.container, reason = ?reason, "migration failed");
        self.report.reason = Some(reason.clone());
        self.report.criu_errors = Self::criu_errors(&e);
        let mut plan = rollback(&self.progress);
        if plan == Rollback::KeepFrozen {
            return self.keep_frozen(&reason);
        }
        if plan == Rollback::InDoubt {
            let dialer = &*self.ports.dialer;
            let within = self.settings.resolve_for;
            let pause = Duration::from_millis(500).min(within);
            match ask_destination(dialer, &self.session, within, pause).await {
                Some(SessionState::Committed) => {
                    self.report.notes.push(
                        "the destination confirmed the commit after the connection broke".into(),
                    );
                    self.report.reason = None;
                    return self.succeed().await;
                }
                Some(SessionState::Dropped) => {
                    plan = rollback(&SourceProgress {
                        commit_sent: false,
                        ..self.progress
                    })
                }
                // Only a recorded outcome decides: a destination that does not know the
                // session may have lost its records, not the container.
                answer @ (Some(SessionState::Pending | SessionState::Unknown) | None) => {
                    let why = match answer {
                        Some(SessionState::Unknown) => {
                            "the destination does not know this migration"
                        }
                        _ => "the destination did not say how the migration ended",
                    };
                    self.report.outcome = Outcome::Failed;
                    self.report.reason = Some(format!(
                        "{reason}; {why}, so it may or may not run the container there, and it stays frozen on {}: once you have made sure it does not run on the destination, 'ferry resume {}' resumes it here",
                        self.settings.name, self.req.container
                    ));
                    return self.finish_report();
                }
            }
        }
        self.roll_back(plan, &reason).await
    }

    /// Post-copy broke after the container started at the destination: resuming is the
    /// user's call ('ferry resume'), not a restarted agent's.
    fn keep_frozen(mut self, reason: &str) -> Report {
        let _ = std::fs::remove_file(self.dir.join(JOURNAL));
        tracing::error!(container = %self.req.container, "post-copy broke after the container started at the destination; it stays frozen here");
        self.report.outcome = Outcome::Failed;
        self.report.reason = Some(format!(
            "{reason}; the container had started on {} but cannot go on there without its memory, so the destination stops that copy; it is kept frozen on {} as it was when it left: 'ferry resume {}' resumes it here (whatever it did at the destination is lost)",
            self.report.destination.clone().unwrap_or_default(),
            self.settings.name,
            self.req.container
        ));
        self.finish_report()
    }

    /// Tells the destination to drop what it built, then undoes the source's steps.
    async fn roll_back(mut self, plan: Rollback, reason: &str) -> Report {
        let aborted = self.abort_remote(reason).await;
        let t = Instant::now();
        let undo_errors = match &plan {
            Rollback::Undo(steps) => undo(&*self.ports.network, &*self.ports.subject, steps).await,
            Rollback::Nothing | Rollback::InDoubt | Rollback::Done | Rollback::KeepFrozen => {
                Vec::new()
            }
        };
        self.tl.record("rollback", t);
        // Once the container runs again: what the destination says broke there.
        let theirs = match aborted {
            true => self.abort_answer().await,
            false => None,
        };
        let reason = match theirs {
            Some(w) if !reason.contains(&w) => format!("{reason}; the destination says: {w}"),
            _ => reason.to_string(),
        };
        self.report.reason = Some(reason.clone());
        if let Some(fz) = self.freeze_started() {
            self.report.downtime_ms = Some(ferry_types::ms(fz.elapsed()));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        self.report.outcome = Outcome::Failed;
        if !undo_errors.is_empty() {
            let errors: Vec<String> = undo_errors.iter().map(ToString::to_string).collect();
            self.report.reason = Some(format!(
                "{reason}; rolling back also failed: {}",
                errors.join("; ")
            ));
        } else if let Err(why) = self.ports.subject.alive() {
            // A rolled-back container is checked, never assumed, to run again. The source
            // never stops it before the commit: with no process left, it ended itself
            // (its last process may have been reaped only now).
            tracing::error!(container = %self.req.container, "after the rollback the container does not run: {why}");
            self.report.reason = Some(match self.ports.subject.processes().is_empty() {
                true if !reason.contains("exited by itself") => self.exited(&reason),
                true => reason.clone(),
                false => format!("{reason}; the container was lost: after rolling back, {why}"),
            });
        } else {
            self.report.outcome = Outcome::RolledBack;
        }
        self.finish_report()
    }
}
