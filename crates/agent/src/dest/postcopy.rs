//! The destination side of post-copy: ferry's lazy-pages daemon starts with the restore,
//! takes the processes' userfaultfds as the restore hands them over, and fills their
//! memory from the source while they run.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_criu::plan::{CriuConfigTarget, CriuOptionPlan, NetworkLock, RestoreSpec};
use ferry_proto::PeerReply;
use ferry_runtime::freezer::Freezer;
use ferry_runtime::Runtime;
use ferry_transport::Stream;
use ferry_types::NetSpec;
use tokio::task::JoinHandle;

use super::{DestSession, DestStats};
use crate::containers::container_net;
use crate::state::Agent;
use ferry_pages::postcopy::daemon::{self, DaemonError, DaemonStats};
use ferry_pages::postcopy::Channels;

/// The daemon filling a restored container's memory.
#[derive(Debug)]
pub struct PostcopyRun {
    task: JoinHandle<Result<DaemonStats, DaemonError>>,
    /// Fired once the container may talk: the background pages start then.
    go: tokio::sync::oneshot::Sender<()>,
}

impl PostcopyRun {
    pub fn abort(self) {
        self.task.abort();
    }

    /// After `Commit`: what waits for the last page.
    pub fn wait(self, agent: &Arc<Agent>, container: &str, spec: &NetSpec) -> PostcopyWait {
        let _ = self.go.send(());
        PostcopyWait {
            task: self.task,
            done: agent.lazy_started(container),
            agent: agent.clone(),
            container: container.to_string(),
            spec: spec.clone(),
        }
    }
}

/// Waits for a committed container's last page.
#[derive(Debug)]
pub struct PostcopyWait {
    task: JoinHandle<Result<DaemonStats, DaemonError>>,
    done: tokio::sync::watch::Sender<bool>,
    agent: Arc<Agent>,
    container: String,
    spec: NetSpec,
}

impl PostcopyWait {
    /// Waits until every page is in place, or the source is lost; returns what to tell the
    /// source. If the source was lost, the container has been stopped: it cannot run
    /// without its memory.
    pub async fn finish(self) -> PeerReply {
        let r = self.task.await;
        self.agent.lazy_finished(&self.container);
        let _ = self.done.send(true);
        match r {
            Ok(Ok(stats)) => PeerReply::PostcopyDone { stats },
            other => {
                let reason = match other {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                tracing::error!(
                    container = %self.container,
                    "post-copy failed ({reason}): the container lacked memory and was stopped here; its frozen copy on the source is intact"
                );
                let _ = self.agent.runc.delete(&self.container, true).await;
                if let Ok(n) = container_net(&self.agent, &self.container, &self.spec) {
                    let _ = n.destroy().await;
                }
                self.agent.registry.remove(&self.container);
                PeerReply::PostcopyFailed { reason }
            }
        }
    }
}

/// Kills every process in a cgroup (they may be blocked on a missing page: a fatal
/// signal still ends them).
fn kill_cgroup(freezer: &Freezer) {
    for pid in freezer.procs() {
        // SAFETY: kill(2) on the processes of the container's own cgroup.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

/// Waits for a page channel the source opens.
async fn arrival(rx: Option<tokio::sync::oneshot::Receiver<Stream>>) -> Result<Stream, String> {
    let rx = rx.ok_or("no page channel")?;
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(s)) => Ok(s),
        _ => Err("the page channel never arrived".into()),
    }
}

impl DestSession {
    /// Restores under ferry's lazy-pages daemon, which serves the restore's own faults.
    pub(super) async fn restore_postcopy(&mut self) -> Result<DestStats, String> {
        let t = Instant::now();
        let mut prepared = daemon::prepare(&self.images, &self.work).map_err(|e| e.to_string())?;
        let pages_total = prepared.pages_total();
        let bulk = match self.hybrid_rounds.take() {
            Some(task) => {
                let rounds = task.await.map_err(|e| e.to_string())??;
                prepared = prepared.with_store(rounds.store);
                Stream::from_blocking_fd(rounds.channel).map_err(|e| e.to_string())?
            }
            None => arrival(self.pages_rx.take()).await?,
        };
        let urgent = arrival(self.urgent_rx.take()).await?;
        // If the source is lost before every page arrived, the processes must die while
        // the daemon still holds their userfaultfds, even during the restore.
        let cgroup = Freezer::for_cgroup(&self.agent.cfg.cgroups_path(&self.container))
            .map_err(|e| e.to_string())?;
        let on_loss = move || kill_cgroup(&cgroup);
        let installed = Arc::new(AtomicU64::new(0));
        let (go, go_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(daemon::run(
            prepared,
            Channels { bulk, urgent },
            installed,
            go_rx,
            on_loss,
        ));
        self.postcopy = Some(PostcopyRun { task, go });
        self.tl.record("daemon-start", t);

        let plan = CriuOptionPlan::restore(
            &RestoreSpec {
                tcp_established: self.tcp_established,
                file_locks: false,
                lazy_pages: true,
                network_lock: NetworkLock::Skip,
            },
            &CriuConfigTarget::Annotation(self.agent.cfg.criu_conf(&self.container)),
        )
        .map_err(|e| e.to_string())?;
        self.run_restore(&plan).await?;
        if self.postcopy.as_ref().is_some_and(|p| p.task.is_finished()) {
            // The daemon ended during the restore: the memory cannot be trusted.
            return Err("the page channel broke during the restore".into());
        }
        self.stats
            .notes
            .push(format!("post-copy: {pages_total} pages follow the restore"));
        self.stats.phases = self.tl.phases().to_vec();
        self.stats.usage = self.meter.finish();
        Ok(self.stats.clone())
    }
}
