//! The source side of a migration.
//!
//! The container is frozen (not killed) and its network locked from the freeze until the
//! destination confirms the container runs there. Every failure before `Commit` is sent
//! rolls back by the rules of [`ferry_engine::source::rollback`]. The dump itself is
//! either cold ([`cold`]: every page travels before the restore) or lazy ([`lazy`]:
//! post-copy, the pages follow once the container runs at the destination).

mod cold;
mod inspect;
mod lazy;
mod precopy;
pub mod recover;
mod send;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_engine::policy::auto::{effective_strategy, pick_auto};
use ferry_engine::report::{CriuErrors, Operation, Outcome, Report};
use ferry_engine::source::{rollback, Rollback, SourceProgress, Undo};
use ferry_engine::timeline::{ms, Timeline};
use ferry_engine::usage::UsageMeter;
use ferry_netns::RealRunner;
use ferry_proto::{ControlReply, PeerReply, PeerRequest, Prepare, Role, WireMessage};
use ferry_runtime::freezer::Freezer;
use ferry_runtime::Runtime;
use ferry_transport::{connect, ClientHello, Conn, Endpoint, Stream};
use ferry_types::{MigrateOptions, SessionState, Strategy, StrategyChoice};
use tokio::sync::mpsc::UnboundedSender;

pub use inspect::{inspect, resident_bytes, Facts};
pub use send::{bundle_digest, image_files, send_bundle, send_images};

use crate::network::ContainerNet;
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

    fn unexpected(m: &PeerReply) -> Self {
        Self::new(format!("unexpected {} from the destination", m.name()))
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

/// A container belongs to one group at most: the one it last moved with.
pub fn check_group(
    container: &str,
    recorded: Option<&str>,
    asked: Option<&str>,
) -> Result<(), AgentError> {
    match (recorded, asked) {
        (Some(g), Some(h)) if g != h => Err(AgentError::Input(format!(
            "container '{container}' belongs to group '{g}', and group '{h}' claims it too; a container can be in one group only: remove it from one of the group files"
        ))),
        _ => Ok(()),
    }
}

/// The progress phase a migration started with `hold_freeze` reports when it waits for
/// the client's `Proceed` before freezing.
pub const READY: &str = "ready";
/// How long a held migration waits for `Proceed`.
const HOLD_LIMIT: Duration = Duration::from_secs(600);

/// Migrates a container. Bad input is an error (nothing changed); anything else ends in a
/// report whose outcome says where the container runs. With `hold`, the migration waits
/// for it to fire before freezing (it fails, unchanged, if it is dropped).
pub async fn migrate(
    agent: Arc<Agent>,
    req: MigrateRequest,
    events: UnboundedSender<ControlReply>,
    hold: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<Report, AgentError> {
    let strategy = effective_strategy(&req.options, agent.lazy_pages)
        .map_err(|e| AgentError::Input(e.to_string()))?;
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
    let recorded = agent.registry.get(&req.container).and_then(|r| r.group);
    check_group(
        &req.container,
        recorded.as_deref(),
        req.options.group.as_deref(),
    )?;
    if let Some(pod) = &facts.spec.pod {
        let mates = crate::pod::registered_members(&agent, pod, &req.container);
        crate::pod::check_moving_together(&req.container, pod, &mates, &req.options.pod)
            .map_err(AgentError::Input)?;
    }
    let (strategy, why) = match strategy {
        StrategyChoice::Auto => {
            let (s, why) = pick_auto(
                req.options.allow_postcopy,
                agent.lazy_pages,
                resident_bytes(&facts.freezer),
            );
            (s, Some(why))
        }
        StrategyChoice::Fixed(s) => (s, None),
    };
    let mut run = SourceRun::new(agent, req, facts, strategy, events, claim)?;
    run.report.notes.extend(why);
    run.hold = hold;
    let outcome = run.forward().await;
    Ok(match outcome {
        Ok(()) => run.succeed().await,
        Err(f) => run.fail(f).await,
    })
}

/// One outgoing migration.
pub(crate) struct SourceRun {
    agent: Arc<Agent>,
    req: MigrateRequest,
    facts: Facts,
    strategy: Strategy,
    session: String,
    dir: PathBuf,
    tl: Timeline,
    meter: UsageMeter,
    p: SourceProgress,
    report: Report,
    conn: Option<Conn>,
    pages_sent: u64,
    t_freeze: Option<Instant>,
    /// The lazy dump still running, if any (post-copy).
    lazy: Option<lazy::LazyDump>,
    /// Fires when the client lets the container freeze (`hold_freeze`).
    hold: Option<tokio::sync::oneshot::Receiver<()>>,
    events: UnboundedSender<ControlReply>,
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
        events: UnboundedSender<ControlReply>,
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
            strategy,
            session,
            dir,
            tl: Timeline::new(),
            meter: UsageMeter::start(),
            p: SourceProgress::default(),
            report,
            conn: None,
            pages_sent: 0,
            t_freeze: None,
            lazy: None,
            hold: None,
            events,
            _claim: claim,
        })
    }

    fn progress(&self, phase: &str, done: u64, total: u64) {
        let _ = self.events.send(ControlReply::Progress {
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

    fn hello(&self, role: Role, session: Option<String>) -> ClientHello {
        ClientHello {
            role,
            host: self.agent.cfg.name.clone(),
            session,
        }
    }

    async fn expect(&mut self, what: &str) -> Result<PeerReply, Failure> {
        self.expect_within(what, PEER_TIMEOUT).await
    }

    async fn expect_within(&mut self, what: &str, limit: Duration) -> Result<PeerReply, Failure> {
        let conn = self.conn()?;
        match tokio::time::timeout(limit, conn.recv_msg::<PeerReply>()).await {
            Err(_) => Err(Failure::new(format!(
                "the destination did not answer within {limit:?} (waiting for {what})"
            ))),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(PeerReply::Error { message })) => {
                Err(Failure::new(format!("the destination refused: {message}")))
            }
            Ok(Ok(m)) => Ok(m),
        }
    }

    async fn forward(&mut self) -> Result<(), Failure> {
        self.prepare_destination().await?;
        let pages = self.page_channel(Role::Pages).await?;
        match self.strategy {
            Strategy::Postcopy => {
                let urgent = self.page_channel(Role::UrgentPages).await?;
                self.forward_lazy(pages, urgent, None).await
            }
            Strategy::Hybrid => {
                let urgent = self.page_channel(Role::UrgentPages).await?;
                self.forward_hybrid(pages, urgent).await
            }
            Strategy::Precopy => self.forward_precopy(pages).await,
            Strategy::Cold => self.forward_cold(pages).await,
        }
    }

    /// Connect, prepare the destination, and send the bundle if it lacks it.
    async fn prepare_destination(&mut self) -> Result<(), Failure> {
        let t = Instant::now();
        self.progress("connect", 0, 0);
        let conn = connect(
            &self.req.dest,
            self.hello(Role::Peer, None),
            &self.agent.cfg.creds,
        )
        .await
        .map_err(|e| Failure::new(format!("destination unreachable: {e}")))?;
        self.report.destination = Some(conn.peer_host().to_string());
        self.conn = Some(conn);
        self.tl.record("connect", t);

        let t = Instant::now();
        let digest = bundle_digest(&self.facts.bundle)?;
        let prepare = PeerRequest::Prepare(Prepare {
            session: self.session.clone(),
            container: self.req.container.clone(),
            strategy: self.strategy,
            bundle_digest: digest.clone(),
            net: self.facts.spec.clone(),
            tcp_established: self.req.options.tcp_established,
            inject_fault: self.req.options.inject_fault,
            group: self.req.options.group.clone(),
            pod_members: match self.facts.spec.pod {
                Some(_) => self.req.options.pod.clone(),
                None => Vec::new(),
            },
        });
        self.conn()?.send(&prepare).await?;
        let need_bundle = match self.expect("prepared").await? {
            PeerReply::Prepared { need_bundle } => need_bundle,
            other => return Err(Failure::unexpected(&other)),
        };
        self.tl.record("prepare", t);

        if need_bundle {
            let t = Instant::now();
            self.progress("bundle", 0, 0);
            let bundle = self.facts.bundle.clone();
            let bytes = send_bundle(self.conn()?, &bundle).await?;
            match self.expect("bundle_stored").await? {
                PeerReply::BundleStored => {}
                other => return Err(Failure::unexpected(&other)),
            }
            self.report.bundle_bytes = bytes;
            self.tl.record("bundle", t);
            let _ = std::fs::write(self.facts.bundle.dir.join(".ferry-digest"), &digest);
        } else {
            self.report
                .notes
                .push("the destination already had the bundle".into());
        }
        Ok(())
    }

    /// The page channel: a second authenticated connection to the destination.
    async fn page_channel(&mut self, role: Role) -> Result<Stream, Failure> {
        let hello = self.hello(role, Some(self.session.clone()));
        Ok(connect(&self.req.dest, hello, &self.agent.cfg.creds)
            .await?
            .into_stream())
    }

    /// The downtime starts: freeze the container and lock its network (after the
    /// client's word, with `hold_freeze`).
    async fn freeze_and_lock(&mut self) -> Result<(), Failure> {
        if let Some(hold) = self.hold.take() {
            let t = Instant::now();
            self.progress(READY, 0, 0);
            match tokio::time::timeout(HOLD_LIMIT, hold).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(Failure::new(
                        "the client did not let the container freeze (it went away or waited too long); nothing changed",
                    ))
                }
            }
            self.tl.record("hold", t);
        }
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
            .install(&RealRunner)
            .await
            .map_err(|e| Failure::new(e.to_string()))?;
        self.p.locked = true;
        self.tl.record("lock", t);
        self.journal("frozen");
        Ok(())
    }

    /// Records where the migration stands, for a restarted agent ([`recover`]).
    fn journal(&self, phase: &str) {
        let j = recover::OutJournal {
            container: self.req.container.clone(),
            session: self.session.clone(),
            dest: self.req.dest.to_string(),
            phase: phase.into(),
        };
        if let Ok(text) = serde_json::to_vec(&j) {
            let _ = std::fs::write(self.dir.join(recover::JOURNAL), text);
        }
    }

    /// After the dump: detach the source's link and send the image files.
    async fn detach_and_send_images(&mut self, pages_bytes: u64) -> Result<(), Failure> {
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
            PeerReply::ImagesStored => {}
            other => return Err(Failure::unexpected(&other)),
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

    /// `Restore` until `Restored`: the container runs at the destination, still isolated.
    async fn restore_remote(&mut self) -> Result<(), Failure> {
        let t = Instant::now();
        self.progress("restore", 0, 0);
        self.conn()?.send(&PeerRequest::Restore).await?;
        let stats = match self.expect("restored").await? {
            PeerReply::Restored { stats } => stats,
            PeerReply::RestoreFailed { reason } => {
                return Err(Failure::new(format!(
                    "the destination could not restore the container: {reason}"
                )))
            }
            other => return Err(Failure::unexpected(&other)),
        };
        self.tl.record("restore", t);
        self.absorb_dest_stats(stats);
        Ok(())
    }

    /// `Commit` until `Committed`: the downtime ends.
    async fn commit(&mut self) -> Result<(), Failure> {
        let t = Instant::now();
        self.progress("commit", 0, 0);
        self.journal("commit-sent");
        self.conn()?.send(&PeerRequest::Commit).await?;
        self.p.commit_sent = true;
        match self.expect("committed").await? {
            PeerReply::Committed { .. } => {}
            other => return Err(Failure::unexpected(&other)),
        }
        self.p.committed = true;
        self.tl.record("commit", t);
        if let Some(f) = self.t_freeze {
            self.report.downtime_ms = Some(ms(f.elapsed()));
        }
        Ok(())
    }

    fn absorb_dest_stats(&mut self, d: ferry_types::DestStats) {
        self.report.criu.restore = d.criu_restore;
        self.report.destination_usage = Some(d.usage);
        for p in d.phases {
            self.report
                .notes
                .push(format!("destination {}: {:.1} ms", p.name, p.ms));
        }
        self.report.notes.extend(d.notes);
    }

    /// Everything sent to the destination: messages, bundle, images and pages.
    fn bytes_sent(&self) -> u64 {
        self.conn.as_ref().map_or(0, Conn::bytes_sent) + self.pages_sent
    }

    /// The container runs at the destination with all its memory: remove it here.
    async fn succeed(mut self) -> Report {
        let t = Instant::now();
        self.progress("cleanup", 0, 0);
        let mut warnings = Vec::new();
        warnings.extend(
            remove_frozen_copy(
                &self.agent,
                &self.req.container,
                Some(&self.facts.freezer),
                Some(&self.facts.net),
            )
            .await,
        );
        crate::logs::remove_session_dir(&self.agent, &self.session, &self.dir);
        self.tl.record("cleanup", t);
        self.report.source_released_ms = Some(self.tl.elapsed_ms());
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
            let hello = self.hello(Role::Peer, None);
            if let Ok(mut c) = connect(&self.req.dest, hello, &self.agent.cfg.creds).await {
                if c.send(&PeerRequest::Resolve {
                    session: self.session.clone(),
                })
                .await
                .is_ok()
                {
                    if let Ok(Ok(PeerReply::Resolution { state, .. })) =
                        tokio::time::timeout(Duration::from_secs(5), c.recv_msg::<PeerReply>())
                            .await
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
        let mut f = f;
        if self.facts.freezer.procs().is_empty() {
            f.reason = format!(
                "container '{}' exited by itself during the migration, so there is nothing to move or resume ({})",
                self.req.container, f.reason
            );
        }
        tracing::warn!(container = %self.req.container, reason = %f.reason, "migration failed");
        self.report.reason = Some(f.reason.clone());
        self.report.criu_errors = f.criu;
        // A lazy dump still serves pages: end it first, so CRIU lets go of the processes.
        if let Some(l) = self.lazy.take() {
            l.stop().await;
        }
        let mut plan = rollback(&self.p);
        if plan == Rollback::KeepFrozen {
            // Resuming is the user's call here ('ferry resume'), not a restarted agent's.
            let _ = std::fs::remove_file(self.dir.join(recover::JOURNAL));
            tracing::error!(container = %self.req.container, "post-copy broke after the container started at the destination; it stays frozen here");
            self.report.outcome = Outcome::Failed;
            self.report.reason = Some(format!(
                "{}; the container had started on {} but cannot go on there without its memory, so the destination stops that copy; it is kept frozen on {} as it was when it left: 'ferry resume {}' resumes it here (whatever it did at the destination is lost)",
                f.reason,
                self.report.destination.clone().unwrap_or_default(),
                self.agent.cfg.name,
                self.req.container
            ));
            return self.finish_report();
        }
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
                c.send(&PeerRequest::Abort {
                    reason: f.reason.clone(),
                }),
            )
            .await;
        }
        let t = Instant::now();
        let undo_errors = match &plan {
            Rollback::Undo(steps) => undo(&self.facts.net, &self.facts.freezer, steps).await,
            _ => Vec::new(),
        };
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

/// Removes the frozen copy of a container that runs elsewhere now: its processes die
/// without running again, then runc's container, its record and its network. Returns
/// what could not be removed.
pub(crate) async fn remove_frozen_copy(
    agent: &Agent,
    name: &str,
    freezer: Option<&Freezer>,
    net: Option<&ContainerNet>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(f) = freezer {
        kill_frozen(f);
    }
    if let Err(e) = agent.runc.delete(name, true).await {
        warnings.push(format!("removing the source container: {e}"));
    }
    agent.registry.remove(name);
    if let Some(n) = net {
        if let Err(e) = crate::pod::release_net(agent, n).await {
            warnings.push(format!("removing the source network namespace: {e}"));
        }
    }
    warnings
}

/// Kills a frozen container's processes; they die when thawed, without running again.
/// Tearing down a large memory takes CPU time: at the lowest priority, so that it does
/// not slow down another migration's downtime on this host.
fn kill_frozen(freezer: &Freezer) {
    for pid in freezer.procs() {
        // SAFETY: plain setpriority(2) and kill(2) on a pid of the container's own cgroup.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, 19);
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    let _ = freezer.thaw();
}

/// Undoes source steps; returns what could not be undone.
async fn undo(net: &ContainerNet, freezer: &Freezer, steps: &[Undo]) -> Vec<String> {
    let mut errors = Vec::new();
    for step in steps {
        let r = match step {
            Undo::LinkUp => net.up().await.map_err(|e| e.to_string()),
            Undo::Unlock => net
                .hold_lock()
                .remove(&RealRunner)
                .await
                .map_err(|e| e.to_string()),
            Undo::Thaw => freezer.thaw().map_err(|e| e.to_string()),
            Undo::Announce => net.announce().await.map_err(|e| e.to_string()),
        };
        if let Err(e) = r {
            errors.push(format!("{step:?}: {e}"));
        }
    }
    errors
}

/// Resumes a container this agent keeps frozen after a failed post-copy migration.
pub async fn resume(agent: &Arc<Agent>, name: &str) -> Result<(), AgentError> {
    let _claim = agent.claim(name).map_err(AgentError::Input)?;
    let state = agent.runc.state(name).await?;
    if state.status != "paused" {
        return Err(AgentError::Input(format!(
            "container '{name}' is {}, not frozen; there is nothing to resume",
            state.status
        )));
    }
    let spec = agent
        .registry
        .get(name)
        .and_then(|r| r.net)
        .ok_or_else(|| {
            AgentError::Input(format!("container '{name}' is not managed by this agent"))
        })?;
    let net = crate::containers::container_net(agent, name, &spec)?;
    let freezer = Freezer::for_pid(state.pid)?;
    let errors = undo(
        &net,
        &freezer,
        &[Undo::LinkUp, Undo::Unlock, Undo::Thaw, Undo::Announce],
    )
    .await;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AgentError::Input(format!(
            "resuming '{name}' failed: {}",
            errors.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_belongs_to_one_group() {
        assert!(check_group("db", None, Some("shop")).is_ok());
        assert!(check_group("db", Some("shop"), Some("shop")).is_ok());
        assert!(check_group("db", Some("shop"), None).is_ok());
        let e = check_group("db", Some("shop"), Some("blog")).unwrap_err();
        assert!(e.to_string().contains("'shop'") && e.to_string().contains("'blog'"));
    }
}
