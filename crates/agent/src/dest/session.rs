//! One incoming migration: what the destination builds, and how it is kept or dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_criu::features::ensure_pipe_max_size;
use ferry_criu::images::Stats;
use ferry_criu::log::diagnose;
use ferry_criu::plan::{CriuConfigTarget, CriuOptionPlan, NetworkLock, RestoreSpec};
use ferry_criu::process::{spawn_lazy_pages, LazyPagesDaemon};
use ferry_engine::timeline::Timeline;
use ferry_engine::usage::UsageMeter;
use ferry_netns::RealRunner;
use ferry_proto::Prepare;
use ferry_runtime::bundle::{Bundle, CRIU_CONFIG_ANNOTATION};
use ferry_runtime::manifest::{IncomingFile, Unpacker};
use ferry_runtime::{RestoreArgs, Runtime};
use ferry_types::{Fault, FileEntry, NetSpec, SessionState, Strategy};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

use super::DestStats;
use crate::config::valid_name;
use crate::containers::container_net;
use crate::logs::{keep_logs, logs_dir, remove_session_dir};
use crate::network::ContainerNet;
use crate::registry::ContainerRecord;
use crate::state::{Agent, Claim, SessionEntry};
use crate::AgentError;
use ferry_pages::precopy::receive::receive as receive_precopy;
use ferry_pages::precopy::store::{default_limit as store_limit, PageStore};

/// Waits for the page channel, then runs `receive` on it, blocking, off the runtime.
/// `what` names the stream in errors.
fn page_channel_task<T: Send + 'static>(
    rx: tokio::sync::oneshot::Receiver<ferry_transport::Stream>,
    what: &'static str,
    receive: impl FnOnce(std::os::fd::OwnedFd) -> std::io::Result<T> + Send + 'static,
) -> tokio::task::JoinHandle<Result<T, String>> {
    tokio::spawn(async move {
        let stream = match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(s)) => s,
            _ => return Err("the page channel never arrived".to_string()),
        };
        let fd = stream.into_blocking_fd().map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || receive(fd))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the {what} broke: {e}"))
    })
}

/// Receives a cold migration's page stream into `pages-<id>.img` files.
fn cold_pages_task(
    rx: tokio::sync::oneshot::Receiver<ferry_transport::Stream>,
    img: PathBuf,
) -> tokio::task::JoinHandle<Result<u64, String>> {
    page_channel_task(rx, "page stream", move |fd| {
        ferry_pages::stream::receive(fd, &img)
    })
}

/// Receives a pre-copy stream: rounds into a page store, then the final page files.
fn precopy_pages_task(
    rx: tokio::sync::oneshot::Receiver<ferry_transport::Stream>,
    img: PathBuf,
) -> tokio::task::JoinHandle<Result<u64, String>> {
    page_channel_task(rx, "pre-copy stream", move |fd| {
        let file = std::fs::File::from(fd);
        let ack = file.try_clone()?;
        let mut store = PageStore::new(store_limit());
        let got = receive_precopy(&file, ack, &img, &mut store)?;
        tracing::info!(
            rounds = got.rounds,
            stored = store.len(),
            refs = got.final_refs,
            "pre-copy pages received"
        );
        Ok(got.file_bytes)
    })
}

/// What hybrid's rounds leave for its post-copy: the store and the page channel.
pub(super) struct HybridRounds {
    pub store: PageStore,
    pub channel: std::os::fd::OwnedFd,
}

/// Receives hybrid's pre-copy rounds into a page store, until the source switches the
/// channel to post-copy.
fn hybrid_rounds_task(
    rx: tokio::sync::oneshot::Receiver<ferry_transport::Stream>,
    img: PathBuf,
) -> tokio::task::JoinHandle<Result<HybridRounds, String>> {
    page_channel_task(rx, "pre-copy stream", move |fd| {
        let file = std::fs::File::from(fd);
        let ack = file.try_clone()?;
        let mut store = PageStore::new(store_limit());
        let got = receive_precopy(&file, ack, &img, &mut store)?;
        if got.final_pages + got.final_refs > 0 {
            return Err(std::io::Error::other(
                "the source sent page files in a hybrid migration",
            ));
        }
        tracing::info!(
            rounds = got.rounds,
            stored = store.len(),
            "hybrid: pre-copy rounds received"
        );
        Ok(HybridRounds {
            store,
            channel: file.into(),
        })
    })
}

/// Below this much memory, the destination restores eagerly.
const LAZY_RESTORE_MIN: u64 = 32 << 20;

/// Written next to a session's images so that a restarted agent can clean up.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    container: String,
    net: NetSpec,
    phase: String,
}

enum Current {
    Bundle(IncomingFile),
    Image {
        file: std::fs::File,
        path: PathBuf,
        remaining: u64,
    },
}

pub struct DestSession {
    pub id: String,
    pub(super) agent: Arc<Agent>,
    pub(super) container: String,
    pub(super) net: ContainerNet,
    pub(super) spec: NetSpec,
    pub(super) dir: PathBuf,
    pub(super) images: PathBuf,
    pub(super) work: PathBuf,
    pub(super) staging: PathBuf,
    pub(super) unpacker: Option<Unpacker>,
    current: Option<Current>,
    pub(super) digest: String,
    pub(super) pages_task: Option<tokio::task::JoinHandle<Result<u64, String>>>,
    /// Post-copy: the page channel, kept for the lazy-pages daemon.
    pub(super) pages_rx: Option<tokio::sync::oneshot::Receiver<ferry_transport::Stream>>,
    /// Post-copy's urgent page channel.
    pub(super) urgent_rx: Option<tokio::sync::oneshot::Receiver<ferry_transport::Stream>>,
    /// Hybrid: the pre-copy rounds, ending with the store and the page channel.
    pub(super) hybrid_rounds: Option<tokio::task::JoinHandle<Result<HybridRounds, String>>>,
    pub(super) strategy: Strategy,
    /// Post-copy: the daemon installing the container's pages.
    pub(super) postcopy: Option<super::postcopy::PostcopyRun>,
    pub(super) lazy: Option<LazyPagesDaemon>,
    pub(super) restored: bool,
    pub(super) fault: Option<Fault>,
    pub(super) tcp_established: bool,
    pub(super) group: Option<String>,
    /// The pod it belongs to, and the members of it moving here with it.
    pub(super) pod: Option<String>,
    pub(super) pod_members: Vec<String>,
    pub(super) pages_bytes: u64,
    pub(super) tl: Timeline,
    pub(super) meter: UsageMeter,
    pub(super) stats: DestStats,
    pub(super) _permit: OwnedSemaphorePermit,
    pub(super) _claim: Claim,
}

impl std::fmt::Debug for DestSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestSession")
            .field("id", &self.id)
            .field("container", &self.container)
            .finish()
    }
}

fn io(path: &Path, e: std::io::Error) -> AgentError {
    AgentError::io(path.display().to_string(), e)
}

impl DestSession {
    /// Builds everything before the container arrives: its network (locked, unreachable),
    /// its directories on tmpfs, and the page server that receives its memory.
    pub async fn prepare(agent: &Arc<Agent>, msg: Prepare) -> Result<(Self, bool), AgentError> {
        let Prepare {
            session,
            container,
            strategy,
            bundle_digest,
            net,
            tcp_established,
            inject_fault,
            group,
            pod_members,
        } = msg;
        if !valid_name(&session, 80) || !valid_name(&container, 40) {
            return Err(AgentError::Input(
                "invalid session or container name".into(),
            ));
        }
        if matches!(strategy, Strategy::Postcopy | Strategy::Hybrid) && !agent.lazy_pages {
            return Err(AgentError::Input(format!(
                "{} cannot take a post-copy migration: it lacks userfaultfd or fs.pipe-max-size (see 'ferry doctor' there); use --strategy cold",
                agent.cfg.name
            )));
        }
        let permit = agent.slots.clone().try_acquire_owned().map_err(|_| {
            AgentError::Input(format!(
                "{} already takes part in {} migrations, its limit; try again later",
                agent.cfg.name, agent.cfg.max_sessions
            ))
        })?;
        let claim = agent.claim(&container).map_err(AgentError::Input)?;
        if agent.runc.state(&container).await.is_ok() || agent.registry.get(&container).is_some() {
            return Err(AgentError::Input(format!(
                "a container named '{container}' already exists on {}",
                agent.cfg.name
            )));
        }
        let spec = net;
        let pod = check_pod(agent, &container, &spec, &pod_members)?;
        let cnet = container_net(agent, &container, &spec)?;
        let mut tl = Timeline::new();
        let t = Instant::now();
        // A pod's namespace is built by its first arriving member; the others join it.
        let _setup = match &pod {
            Some(_) => Some(agent.pod_setup.lock().await),
            None => None,
        };
        let joined = pod.as_deref().is_some_and(|p| agent.pods.arriving(p));
        if !joined {
            if cnet.netns.exists() {
                cnet.destroy().await?;
            }
            cnet.create().await?;
        }
        if let Err(e) = cnet.hold_lock().install(&RealRunner).await {
            if !joined {
                let _ = cnet.destroy().await;
            }
            return Err(e.into());
        }
        if let Some(p) = &pod {
            agent.pods.join(p);
        }
        tl.record("network", t);

        let dir = agent.cfg.images_dir().join(format!("in-{session}"));
        let images = dir.join("images");
        let work = dir.join("work");
        for d in [&images, &work] {
            std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
        }
        let bundle_dir = agent.cfg.bundles_dir().join(&container);
        let have = std::fs::read_to_string(bundle_dir.join(".ferry-digest")).unwrap_or_default();
        let need_bundle = have.trim() != bundle_digest || !bundle_dir.join("config.json").exists();

        // The page channel arrives as its own connection; its page stream is spliced into
        // `pages-<id>.img` files in the images directory.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lazy_strategy = matches!(strategy, Strategy::Postcopy | Strategy::Hybrid);
        let (urgent_tx, urgent_rx) = if lazy_strategy {
            let (t, r) = tokio::sync::oneshot::channel();
            (Some(t), Some(r))
        } else {
            (None, None)
        };
        if let Ok(mut s) = agent.sessions.lock() {
            s.insert(
                session.clone(),
                SessionEntry {
                    container: container.clone(),
                    state: SessionState::Pending,
                    pages: Some(tx),
                    urgent: urgent_tx,
                },
            );
        }
        let img = images.clone();
        let mut hybrid_rounds = None;
        let (pages_task, pages_rx) = match strategy {
            Strategy::Postcopy => (None, Some(rx)),
            Strategy::Hybrid => {
                hybrid_rounds = Some(hybrid_rounds_task(rx, img));
                (None, None)
            }
            Strategy::Precopy => (Some(precopy_pages_task(rx, img)), None),
            Strategy::Cold => (Some(cold_pages_task(rx, img)), None),
        };
        let s = DestSession {
            id: session,
            agent: agent.clone(),
            staging: agent
                .cfg
                .bundles_dir()
                .join(format!(".{container}.incoming")),
            container,
            net: cnet,
            spec,
            dir,
            images,
            work,
            unpacker: None,
            current: None,
            digest: bundle_digest,
            pages_task,
            pages_rx,
            urgent_rx,
            hybrid_rounds,
            strategy,
            postcopy: None,
            lazy: None,
            restored: false,
            fault: if agent.cfg.allow_fault_injection {
                inject_fault
            } else {
                None
            },
            tcp_established,
            group,
            pod,
            pod_members,
            pages_bytes: 0,
            tl,
            meter: UsageMeter::start(),
            stats: DestStats::default(),
            _permit: permit,
            _claim: claim,
        };
        s.journal("prepared");
        Ok((s, need_bundle))
    }

    fn journal(&self, phase: &str) {
        let j = Journal {
            container: self.container.clone(),
            net: self.spec.clone(),
            phase: phase.into(),
        };
        let _ = std::fs::write(
            self.dir.join("session.json"),
            serde_json::to_vec(&j).unwrap_or_default(),
        );
    }

    pub fn begin_bundle_file(&mut self, entry: &FileEntry) -> Result<(), AgentError> {
        if self.unpacker.is_none() {
            let _ = std::fs::remove_dir_all(&self.staging);
            self.unpacker = Some(Unpacker::new(&self.staging)?);
        }
        let u = self
            .unpacker
            .as_ref()
            .ok_or_else(|| AgentError::Input("no unpacker".into()))?;
        if let Some(f) = u.begin(entry)? {
            self.current = Some(Current::Bundle(f));
        }
        Ok(())
    }

    pub fn begin_image(&mut self, name: &str, size: u64) -> Result<(), AgentError> {
        if self.fault == Some(Fault::DestDiesDuringTransfer) {
            tracing::error!("fault injection: the destination agent exits during the transfer");
            std::process::exit(101);
        }
        let path = self.images.join(name);
        let file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
        self.current = Some(Current::Image {
            file,
            path,
            remaining: size,
        });
        Ok(())
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), AgentError> {
        match self.current.as_mut() {
            Some(Current::Bundle(f)) => Ok(f.write(data)?),
            Some(Current::Image {
                file,
                path,
                remaining,
            }) => {
                let n = data.len() as u64;
                if n > *remaining {
                    return Err(AgentError::Input(format!(
                        "{}: more data than announced",
                        path.display()
                    )));
                }
                *remaining -= n;
                file.write_all(data).map_err(|e| io(path, e))
            }
            None => Err(AgentError::Input("data without a file".into())),
        }
    }

    pub fn end_file(&mut self) -> Result<(), AgentError> {
        match self.current.take() {
            Some(Current::Bundle(f)) => Ok(f.finish()?),
            Some(Current::Image { remaining: 0, .. }) | None => Ok(()),
            Some(Current::Image { path, .. }) => Err(AgentError::Input(format!(
                "{}: bytes missing",
                path.display()
            ))),
        }
    }

    /// Puts the received bundle in place, pointing it at this host's namespace.
    pub fn store_bundle(&mut self) -> Result<(), AgentError> {
        self.unpacker = None;
        let mut b = Bundle::load(&self.staging)?;
        b.set_netns_path(&self.net.netns_path().display().to_string());
        b.set_cgroups_path(&self.agent.cfg.cgroups_path(&self.container));
        b.set_annotation(
            CRIU_CONFIG_ANNOTATION,
            &self
                .agent
                .cfg
                .criu_conf(&self.container)
                .display()
                .to_string(),
        );
        b.save()?;
        std::fs::write(self.staging.join(".ferry-digest"), &self.digest)
            .map_err(|e| io(&self.staging, e))?;
        let dest = self.agent.cfg.bundles_dir().join(&self.container);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&self.staging, &dest).map_err(|e| io(&dest, e))?;
        Ok(())
    }

    /// Waits until the page server wrote all pages.
    pub async fn store_images(&mut self, pages_bytes: u64) -> Result<(), AgentError> {
        let t = Instant::now();
        if let Some(task) = self.pages_task.take() {
            match tokio::time::timeout(Duration::from_secs(120), task).await {
                Ok(Ok(Ok(n))) if n == pages_bytes => {}
                Ok(Ok(Ok(n))) => {
                    return Err(AgentError::Input(format!(
                        "received {n} bytes of pages where the source sent {pages_bytes}"
                    )))
                }
                Ok(Ok(Err(e))) => return Err(AgentError::Input(e)),
                Ok(Err(e)) => {
                    return Err(AgentError::Input(format!(
                        "the page server task failed: {e}"
                    )))
                }
                Err(_) => {
                    return Err(AgentError::Input(
                        "the page server did not finish within 120 s".into(),
                    ))
                }
            }
        }
        self.pages_bytes = pages_bytes;
        self.tl.record("pages-stored", t);
        self.journal("images");
        Ok(())
    }

    /// Restores the container, reachable but still behind ferry's lock. A pod member
    /// counts as restored once every member of its pod is.
    pub async fn restore(&mut self) -> Result<DestStats, String> {
        let stats = self.restore_one().await?;
        let Some(pod) = self.pod.clone() else {
            return Ok(stats);
        };
        let t = Instant::now();
        let pods = &self.agent.pods;
        pods.restored(&pod, &self.container);
        pods.wait_all(&pod, &self.pod_members, crate::pod::POD_WAIT)
            .await?;
        self.tl.record("pod-wait", t);
        let mut stats = stats;
        stats.phases = self.tl.phases().to_vec();
        Ok(stats)
    }

    async fn restore_one(&mut self) -> Result<DestStats, String> {
        let t = Instant::now();
        self.net.up().await.map_err(|e| e.to_string())?;
        self.net.announce().await.map_err(|e| e.to_string())?;
        self.tl.record("link-up", t);

        if self.fault == Some(Fault::RestoreFails) {
            tracing::error!("fault injection: corrupting core-1.img so that the restore fails");
            let _ = std::fs::write(self.images.join("core-1.img"), [0u8; 4]);
        }
        if matches!(self.strategy, Strategy::Postcopy | Strategy::Hybrid) {
            return self.restore_postcopy().await;
        }

        // Restoring memory lazily from the local images lets the container run before
        // its pages are in place; for small memories starting the daemon costs more than
        // it saves.
        let lazy = self.agent.lazy_pages
            && self.pages_bytes >= LAZY_RESTORE_MIN
            && ensure_pipe_max_size().is_ok();
        if lazy {
            let t = Instant::now();
            let d = spawn_lazy_pages(&self.agent.cfg.criu, &self.images, &self.work)
                .await
                .map_err(|e| e.to_string())?;
            self.lazy = Some(d);
            self.tl.record("lazy-start", t);
            self.stats
                .notes
                .push("memory restored lazily from local images while the container runs".into());
        }
        let plan = CriuOptionPlan::restore(
            &RestoreSpec {
                tcp_established: self.tcp_established,
                file_locks: false,
                lazy_pages: lazy,
                // ferry's hold lock covers the namespace until Commit.
                network_lock: NetworkLock::Skip,
            },
            &CriuConfigTarget::Annotation(self.agent.cfg.criu_conf(&self.container)),
        )
        .map_err(|e| e.to_string())?;
        self.run_restore(&plan).await?;
        self.stats.phases = self.tl.phases().to_vec();
        self.stats.usage = self.meter.finish();
        Ok(self.stats.clone())
    }

    /// `runc restore` with `plan`; on success the container runs (behind the lock).
    pub(super) async fn run_restore(&mut self, plan: &CriuOptionPlan) -> Result<(), String> {
        let t = Instant::now();
        let bundle = self.agent.cfg.bundles_dir().join(&self.container);
        let target = CriuConfigTarget::Annotation(self.agent.cfg.criu_conf(&self.container));
        let r = self
            .agent
            .runc
            .restore(
                &self.container,
                RestoreArgs {
                    images: &self.images,
                    work: &self.work,
                    bundle: &bundle,
                    plan,
                    config_target: &target,
                },
            )
            .await;
        self.tl.record("restore", t);
        if let Err(e) = r {
            let mut f = diagnose(&self.work.join("restore.log"), &e.to_string());
            f.log_path = logs_dir(&self.agent, &self.id).join("restore.log");
            if f.error_lines.is_empty() {
                return Err(format!("{e}; CRIU's log: {}", f.log_path.display()));
            }
            return Err(f.to_string());
        }
        self.restored = true;
        self.journal("restored");
        self.stats.criu_restore = Stats::read(&self.work.join("stats-restore"))
            .ok()
            .and_then(|s| s.restore);
        Ok(())
    }

    /// Fault injection: exit after restoring, before the source hears of it.
    pub fn fault_after_restore(&self) {
        if self.fault == Some(Fault::DestDiesAfterRestore) {
            tracing::error!("fault injection: the destination agent exits after restoring");
            std::process::exit(101);
        }
    }

    /// The source committed: release the container's network and keep it. For post-copy,
    /// also returns what waits for the last page.
    pub async fn commit(mut self) -> (DestStats, Option<super::postcopy::PostcopyWait>) {
        let t = Instant::now();
        if let Err(e) = self.net.hold_lock().remove(&RealRunner).await {
            tracing::error!("cannot remove the hold lock of {}: {e}", self.container);
        }
        self.tl.record("unlock", t);
        if let Some(p) = &self.pod {
            self.agent.pods.leave(p);
        }
        let _ = self.agent.registry.put(&ContainerRecord {
            name: self.container.clone(),
            bundle: self.agent.cfg.bundles_dir().join(&self.container),
            net: Some(self.spec.clone()),
            group: self.group.clone(),
        });
        self.agent.set_session(&self.id, SessionState::Committed);
        self.journal("committed");
        let dir = self.dir.clone();
        let wait = self
            .postcopy
            .take()
            .map(|run| run.wait(&self.agent, &self.container, &self.spec));
        if let Some(mut lazy) = self.lazy.take() {
            // The container's memory is still being filled in from the local images: no
            // checkpoint of it may start before this ends.
            let done = self.agent.lazy_started(&self.container);
            let agent = self.agent.clone();
            let container = self.container.clone();
            let id = self.id.clone();
            tokio::spawn(async move {
                match lazy.child.wait().await {
                    Ok(s) if s.success() => {}
                    other => {
                        tracing::error!(%container, "the lazy-pages daemon ended badly ({other:?}); the container may be missing memory")
                    }
                }
                agent.lazy_finished(&container);
                let _ = done.send(true);
                remove_session_dir(&agent, &id, &dir);
            });
        } else {
            remove_session_dir(&self.agent, &self.id, &dir);
        }
        self.stats.phases = self.tl.phases().to_vec();
        (self.stats.clone(), wait)
    }

    /// Drops everything this session built.
    pub async fn drop_all(mut self) {
        if self.restored {
            let _ = self.agent.runc.delete(&self.container, true).await;
        }
        if let Some(mut l) = self.lazy.take() {
            let _ = l.child.kill().await;
        }
        if let Some(t) = self.pages_task.take() {
            t.abort();
        }
        if let Some(t) = self.hybrid_rounds.take() {
            t.abort();
        }
        // Only after the processes are gone: the daemon holds their userfaultfds.
        if let Some(p) = self.postcopy.take() {
            p.abort();
        }
        self.agent.set_session(&self.id, SessionState::Dropped);
        if let Some(p) = &self.pod {
            self.agent.pods.failed(p, &self.container);
            self.agent.pods.leave(p);
        }
        let _ = crate::pod::release_net(&self.agent, &self.net).await;
        let _ = std::fs::remove_dir_all(&self.staging);
        let _ = keep_logs(&self.agent, &self.id, &self.work);
        let _ = std::fs::remove_dir_all(&self.dir);
        tracing::info!(session = %self.id, "dropped the incoming container");
    }
}

/// The pod an incoming container belongs to, once checked: its members must be named,
/// include it, and not already run here (a pod lives on one host at a time).
fn check_pod(
    agent: &Agent,
    container: &str,
    spec: &NetSpec,
    members: &[String],
) -> Result<Option<String>, AgentError> {
    let Some(pod) = spec.pod.clone() else {
        return Ok(None);
    };
    if !valid_name(&pod, 40) || members.iter().any(|m| !valid_name(m, 40)) || members.len() > 64 {
        return Err(AgentError::Input("invalid pod or pod member name".into()));
    }
    if !members.iter().any(|m| m == container) {
        return Err(AgentError::Input(format!(
            "container '{container}' of pod '{pod}' arrives without the list of its pod's members"
        )));
    }
    let here = crate::pod::registered_members(agent, &pod, container);
    if let Some(m) = here.first() {
        return Err(AgentError::Input(format!(
            "pod '{pod}' already runs on {} (container '{m}'); a pod lives on one host at a time",
            agent.cfg.name
        )));
    }
    Ok(Some(pod))
}

/// Cleans up incoming sessions a previous run of the agent left unfinished.
pub async fn recover(agent: &Arc<Agent>) {
    let Ok(rd) = std::fs::read_dir(agent.cfg.images_dir()) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with("in-") {
            if let Ok(j) = serde_json::from_slice::<Journal>(
                &std::fs::read(path.join("session.json")).unwrap_or_default(),
            ) {
                if j.phase != "committed" && agent.registry.get(&j.container).is_none() {
                    tracing::warn!(container = %j.container, "removing what an interrupted incoming migration left");
                    let _ = agent.runc.delete(&j.container, true).await;
                    if let Ok(n) = container_net(agent, &j.container, &j.net) {
                        let _ = n.destroy().await;
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&path);
        } else if name.starts_with("out-") {
            tracing::warn!("an outgoing migration ({name}) was interrupted; asking its destination how it ended");
            crate::source::recover::recover(agent, &path);
        }
    }
}
