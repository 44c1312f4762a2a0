//! The source side of a migration.
//!
//! The container is frozen (not killed) and its network locked from the freeze until the
//! destination confirms the container runs there. Every failure before `Commit` is sent
//! rolls back by the rules of [`ferry_engine::source::rollback`].

mod inspect;
mod send;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_criu::images::{ImageSizes, Stats};
use ferry_criu::log::diagnose;
use ferry_criu::plan::{CheckpointSpec, CriuOptionPlan, NetworkLock, PageTransport};
use ferry_engine::report::{CriuErrors, Operation, Outcome, Report};
use ferry_engine::source::{rollback, Rollback, SourceProgress, Undo};
use ferry_engine::timeline::{ms, Timeline};
use ferry_engine::usage::UsageMeter;
use ferry_proto::{Fault, Message, MigrateOptions, Role, SessionState, Strategy};
use ferry_runtime::{CheckpointArgs, Runtime};
use ferry_transport::{connect, ClientHello, Conn, Endpoint};
use tokio::sync::mpsc::UnboundedSender;

pub use inspect::{inspect, resident_bytes, Facts};
pub use send::{bundle_digest, image_files, send_bundle, send_images};

use crate::pagestream::PageFifos;
use crate::state::{Agent, Claim};
use crate::AgentError;

/// A migration as the CLI asked for it.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    pub container: String,
    pub dest: Endpoint,
    pub options: MigrateOptions,
}

/// How long the source waits for the destination's answers.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the source keeps asking where an in-doubt migration ended.
const RESOLVE_FOR: Duration = Duration::from_secs(30);

/// Why a migration stopped, with CRIU's words when CRIU failed.
#[derive(Debug)]
struct Failure {
    reason: String,
    criu: Option<CriuErrors>,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            criu: None,
        }
    }
}

impl From<AgentError> for Failure {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Transport(t) => t.into(),
            other => Failure::new(other.to_string()),
        }
    }
}

impl From<ferry_transport::TransportError> for Failure {
    fn from(e: ferry_transport::TransportError) -> Self {
        Failure::new(format!("lost the destination: {e}"))
    }
}

/// Which strategy actually runs for a request.
pub fn effective_strategy(s: Strategy) -> Result<Strategy, AgentError> {
    match s {
        Strategy::Cold | Strategy::Auto => Ok(Strategy::Cold),
        other => Err(AgentError::Input(format!(
            "strategy '{other}' is not implemented in this ferry version; use --strategy cold"
        ))),
    }
}

/// Migrates a container. Bad input is an error (nothing changed); anything else ends in a
/// report whose outcome says where the container runs.
pub async fn migrate(
    agent: Arc<Agent>,
    req: MigrateRequest,
    events: UnboundedSender<Message>,
) -> Result<Report, AgentError> {
    let strategy = effective_strategy(req.options.strategy)?;
    let claim = agent.claim(&req.container).map_err(AgentError::Input)?;
    if !agent
        .wait_memory_complete(&req.container, Duration::from_secs(300))
        .await
    {
        return Err(AgentError::Input(format!(
            "container '{}' is still receiving its memory from its last migration; try again when it is done",
            req.container
        )));
    }
    let facts = inspect(&agent, &req.container).await?;
    let mut run = SourceRun::new(agent, req, facts, strategy, events, claim)?;
    let outcome = run.forward().await;
    Ok(match outcome {
        Ok(()) => run.succeed().await,
        Err(f) => run.fail(f).await,
    })
}

struct SourceRun {
    agent: Arc<Agent>,
    req: MigrateRequest,
    facts: Facts,
    session: String,
    dir: PathBuf,
    tl: Timeline,
    meter: UsageMeter,
    p: SourceProgress,
    report: Report,
    conn: Option<Conn>,
    pages_sent: u64,
    t_freeze: Option<Instant>,
    events: UnboundedSender<Message>,
    _claim: Claim,
}

fn new_session_id(container: &str) -> Result<String, AgentError> {
    let mut r = [0u8; 8];
    getrandom::getrandom(&mut r).map_err(|e| AgentError::Input(format!("no randomness: {e}")))?;
    Ok(format!("{container}-{}", hex::encode(r)))
}

impl SourceRun {
    fn new(
        agent: Arc<Agent>,
        req: MigrateRequest,
        facts: Facts,
        strategy: Strategy,
        events: UnboundedSender<Message>,
        claim: Claim,
    ) -> Result<Self, AgentError> {
        let session = new_session_id(&req.container)?;
        let dir = agent.cfg.images_dir().join(format!("out-{session}"));
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(dir.display().to_string(), e))?;
        let mut report = Report::new(Operation::Migrate, &req.container);
        report.strategy = Some(strategy);
        report.source = Some(agent.cfg.name.clone());
        report.destination = Some(req.dest.to_string());
        Ok(Self {
            agent,
            req,
            facts,
            session,
            dir,
            tl: Timeline::new(),
            meter: UsageMeter::start(),
            p: SourceProgress::default(),
            report,
            conn: None,
            pages_sent: 0,
            t_freeze: None,
            events,
            _claim: claim,
        })
    }

    fn progress(&self, phase: &str, done: u64, total: u64) {
        let _ = self.events.send(Message::Progress {
            phase: phase.into(),
            done,
            total,
        });
    }

    fn conn(&mut self) -> Result<&mut Conn, Failure> {
        self.conn
            .as_mut()
            .ok_or_else(|| Failure::new("not connected to the destination"))
    }

    async fn expect(&mut self, what: &str) -> Result<Message, Failure> {
        let conn = self.conn()?;
        match tokio::time::timeout(PEER_TIMEOUT, conn.recv_msg()).await {
            Err(_) => Err(Failure::new(format!(
                "the destination did not answer within {PEER_TIMEOUT:?} (waiting for {what})"
            ))),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(Message::Error { message })) => {
                Err(Failure::new(format!("the destination refused: {message}")))
            }
            Ok(Ok(m)) => Ok(m),
        }
    }

    /// Everything up to the destination's confirmation.
    async fn forward(&mut self) -> Result<(), Failure> {
        let secret = self.agent.cfg.secret.clone();
        let me = self.agent.cfg.name.clone();
        let hello = move |role, session| ClientHello {
            role,
            host: me.clone(),
            session,
        };

        let t = Instant::now();
        self.progress("connect", 0, 0);
        let conn = connect(&self.req.dest, hello(Role::Peer, None), secret.as_ref())
            .await
            .map_err(|e| Failure::new(format!("destination unreachable: {e}")))?;
        self.report.destination = Some(conn.peer_host().to_string());
        self.conn = Some(conn);
        self.tl.record("connect", t);

        let t = Instant::now();
        let digest = bundle_digest(&self.facts.bundle)?;
        let prepare = Message::Prepare {
            session: self.session.clone(),
            container: self.req.container.clone(),
            strategy: Strategy::Cold,
            bundle_digest: digest.clone(),
            net: Some(self.facts.spec.clone()),
            tcp_established: self.req.options.tcp_established,
            inject_fault: self.req.options.inject_fault,
        };
        self.conn()?.send(&prepare).await?;
        let need_bundle = match self.expect("prepared").await? {
            Message::Prepared { need_bundle } => need_bundle,
            other => {
                return Err(Failure::new(format!(
                    "unexpected {} from the destination",
                    other.name()
                )))
            }
        };
        self.tl.record("prepare", t);

        if need_bundle {
            let t = Instant::now();
            self.progress("bundle", 0, 0);
            let bundle = self.facts.bundle.clone();
            let bytes = send_bundle(self.conn()?, &bundle).await?;
            match self.expect("bundle_stored").await? {
                Message::BundleStored => {}
                other => {
                    return Err(Failure::new(format!(
                        "unexpected {} from the destination",
                        other.name()
                    )))
                }
            }
            self.report.bundle_bytes = bytes;
            self.tl.record("bundle", t);
            let _ = std::fs::write(self.facts.bundle.dir.join(".ferry-digest"), &digest);
        } else {
            self.report
                .notes
                .push("the destination already had the bundle".into());
        }

        // The page channel: a second authenticated connection. CRIU dumps pages into
        // FIFOs that a streamer splices into its socket (see pagestream).
        let pages = connect(
            &self.req.dest,
            hello(Role::Pages, Some(self.session.clone())),
            secret.as_ref(),
        )
        .await?;
        let sock = pages
            .into_stream()
            .into_blocking_fd()
            .map_err(|e| Failure::new(format!("page channel: {e}")))?;
        let streamer = PageFifos::create(&self.dir)
            .and_then(|f| f.stream(sock))
            .map_err(|e| Failure::new(format!("cannot start the page stream: {e}")))?;

        let estimate = resident_bytes(&self.facts.freezer);
        let t = Instant::now();
        self.t_freeze = Some(t);
        let freezer = self.facts.freezer.clone();
        tokio::task::spawn_blocking(move || freezer.freeze())
            .await
            .map_err(|e| Failure::new(e.to_string()))?
            .map_err(|e| Failure::new(format!("cannot freeze the container: {e}")))?;
        self.p.frozen = true;
        self.tl.record("freeze", t);

        let t = Instant::now();
        self.facts
            .net
            .hold_lock()
            .install(&ferry_netns::RealRunner)
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        self.p.locked = true;
        self.tl.record("lock", t);

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
                },
            )
            .await;
        ticker.abort();
        if let Err(e) = dump {
            streamer.abort().await;
            let failure = diagnose(&self.dir.join("dump.log"), &e.to_string());
            return Err(Failure {
                reason: format!("checkpoint failed: {failure}"),
                criu: Some(CriuErrors {
                    log: failure.log_path.display().to_string(),
                    lines: failure.error_lines,
                }),
            });
        }
        self.p.dumped = true;
        self.tl.record("dump", t);

        let t = Instant::now();
        let pages_bytes = streamer
            .finish()
            .await
            .map_err(|e| Failure::new(format!("the page transfer broke: {e}")))?;
        self.tl.record("pages", t);
        self.pages_sent = pages_bytes;
        self.progress("pages", pages_bytes, pages_bytes);

        let t = Instant::now();
        self.facts
            .net
            .down()
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        self.p.link_down = true;
        self.tl.record("detach", t);

        let t = Instant::now();
        let dir = self.dir.clone();
        send_images(self.conn()?, &dir, pages_bytes).await?;
        match self.expect("images_stored").await? {
            Message::ImagesStored => {}
            other => {
                return Err(Failure::new(format!(
                    "unexpected {} from the destination",
                    other.name()
                )))
            }
        }
        self.tl.record("images", t);
        let mut sizes = ImageSizes::measure(&self.dir).unwrap_or_default();
        sizes.pages_bytes += pages_bytes;
        sizes.total_bytes += pages_bytes;
        self.report.images = Some(sizes);
        self.report.criu.dump = Stats::read(&self.dir.join("stats-dump"))
            .ok()
            .and_then(|s| s.dump);

        let t = Instant::now();
        self.progress("restore", 0, 0);
        self.conn()?.send(&Message::Restore).await?;
        let stats = match self.expect("restored").await? {
            Message::Restored { stats } => stats,
            Message::RestoreFailed { reason } => {
                return Err(Failure::new(format!(
                    "the destination could not restore the container: {reason}"
                )))
            }
            other => {
                return Err(Failure::new(format!(
                    "unexpected {} from the destination",
                    other.name()
                )))
            }
        };
        self.tl.record("restore", t);
        self.absorb_dest_stats(&stats);

        let t = Instant::now();
        self.conn()?.send(&Message::Commit).await?;
        self.p.commit_sent = true;
        match self.expect("committed").await? {
            Message::Committed { .. } => {}
            other => {
                return Err(Failure::new(format!(
                    "unexpected {} from the destination",
                    other.name()
                )))
            }
        }
        self.p.committed = true;
        self.tl.record("commit", t);
        if let Some(f) = self.t_freeze {
            self.report.downtime_ms = Some(ms(f.elapsed()));
        }
        Ok(())
    }

    fn start_ticker(
        &self,
        streamer: &crate::pagestream::Streamer,
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
                let _ = events.send(Message::Progress {
                    phase: "pages".into(),
                    done,
                    total: estimate.max(done),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn absorb_dest_stats(&mut self, stats: &serde_json::Value) {
        if let Ok(d) = serde_json::from_value::<crate::dest::DestStats>(stats.clone()) {
            self.report.criu.restore = d.criu_restore;
            self.report.destination_usage = Some(d.usage);
            for p in d.phases {
                self.report
                    .notes
                    .push(format!("destination {}: {:.1} ms", p.name, p.ms));
            }
            self.report.notes.extend(d.notes);
        }
    }

    /// Everything sent to the destination: messages, bundle, images and pages.
    fn bytes_sent(&self) -> u64 {
        self.conn.as_ref().map_or(0, Conn::bytes_sent) + self.pages_sent
    }

    /// The container runs at the destination: remove it here.
    async fn succeed(mut self) -> Report {
        let t = Instant::now();
        self.progress("cleanup", 0, 0);
        let mut warnings = Vec::new();
        // Kill while frozen, then thaw: the processes die without running again.
        for pid in self.facts.freezer.procs() {
            // SAFETY: plain kill(2) on a pid of the container's cgroup.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = self.facts.freezer.thaw();
        if let Err(e) = self.agent.runc.delete(&self.req.container, true).await {
            warnings.push(format!("removing the source container: {e}"));
        }
        if let Err(e) = self.facts.net.destroy().await {
            warnings.push(format!("removing the source network namespace: {e}"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        self.agent.registry.remove(&self.req.container);
        self.tl.record("cleanup", t);
        self.report.notes.extend(warnings);
        self.report.outcome = Outcome::Migrated;
        self.finish_report()
    }

    fn finish_report(mut self) -> Report {
        self.report.bytes_sent = self.bytes_sent();
        self.report.total_ms = self.tl.elapsed_ms();
        self.report.phases = std::mem::take(&mut self.tl).into_phases();
        self.report.usage = Some(self.meter.finish());
        self.report
    }

    /// Asks the destination, on a new connection, how a session ended.
    async fn resolve(&self) -> Option<SessionState> {
        let start = Instant::now();
        while start.elapsed() < RESOLVE_FOR {
            let hello = ClientHello {
                role: Role::Peer,
                host: self.agent.cfg.name.clone(),
                session: None,
            };
            if let Ok(mut c) = connect(&self.req.dest, hello, self.agent.cfg.secret.as_ref()).await
            {
                if c.send(&Message::Resolve {
                    session: self.session.clone(),
                })
                .await
                .is_ok()
                {
                    if let Ok(Ok(Message::Resolution { state, .. })) =
                        tokio::time::timeout(Duration::from_secs(5), c.recv_msg()).await
                    {
                        if state != SessionState::Pending {
                            return Some(state);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    async fn fail(mut self, f: Failure) -> Report {
        tracing::warn!(container = %self.req.container, reason = %f.reason, "migration failed");
        self.report.reason = Some(f.reason.clone());
        self.report.criu_errors = f.criu;
        let mut plan = rollback(&self.p);
        if plan == Rollback::InDoubt {
            match self.resolve().await {
                Some(SessionState::Committed) => {
                    self.report.notes.push(
                        "the destination confirmed the commit after the connection broke".into(),
                    );
                    self.report.reason = None;
                    return self.succeed().await;
                }
                Some(_) => {
                    plan = rollback(&SourceProgress {
                        commit_sent: false,
                        ..self.p
                    })
                }
                None => {
                    self.report.outcome = Outcome::Failed;
                    self.report.reason = Some(format!(
                        "{}; the destination may or may not run the container, so it stays frozen on {} until ferry can ask the destination again",
                        f.reason, self.agent.cfg.name
                    ));
                    return self.finish_report();
                }
            }
        }
        // Tell the destination to drop what it built, but do not wait long for it.
        if let Some(c) = self.conn.as_mut() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                c.send(&Message::Abort {
                    reason: f.reason.clone(),
                }),
            )
            .await;
        }
        let t = Instant::now();
        let mut undo_errors = Vec::new();
        if let Rollback::Undo(steps) = &plan {
            for step in steps {
                let r = match step {
                    Undo::LinkUp => self.facts.net.up().await.map_err(|e| e.to_string()),
                    Undo::Unlock => self
                        .facts
                        .net
                        .hold_lock()
                        .remove(&ferry_netns::RealRunner)
                        .await
                        .map_err(|e| e.to_string()),
                    Undo::Thaw => self.facts.freezer.thaw().map_err(|e| e.to_string()),
                    Undo::Announce => self.facts.net.announce().await.map_err(|e| e.to_string()),
                };
                if let Err(e) = r {
                    undo_errors.push(format!("{step:?}: {e}"));
                }
            }
        }
        self.tl.record("rollback", t);
        if let Some(fz) = self.t_freeze {
            self.report.downtime_ms = Some(ms(fz.elapsed()));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        self.report.outcome = if undo_errors.is_empty() {
            Outcome::RolledBack
        } else {
            Outcome::Failed
        };
        if !undo_errors.is_empty() {
            self.report.reason = Some(format!(
                "{}; rolling back also failed: {}",
                f.reason,
                undo_errors.join("; ")
            ));
        }
        self.finish_report()
    }
}
