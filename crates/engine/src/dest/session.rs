//! One incoming migration: what the destination builds, and how it is kept or dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_criu::log::diagnose;
use ferry_proto::Prepare;
use ferry_types::{DestStats, Fault, FileEntry, NetSpec, SessionState};
use serde::{Deserialize, Serialize};

use super::DestPorts;
use crate::error::IncomingError;
use crate::logs::{keep_logs, logs_dir, remove_session_dir};
use crate::ports::container::{RestorePlan, ShipmentSink};
use crate::ports::host::{HostSettings, PodArrival};
use crate::ports::network::ContainerNetwork;
use crate::ports::pages::{LazyDaemon, LocalLazy, SessionPages};
use crate::strategies::DestHalf;
use crate::timeline::Timeline;
use crate::usage::UsageMeter;

/// How long a restored pod member waits for the rest of its pod.
pub const POD_WAIT: Duration = Duration::from_secs(90);

/// Written next to a session's images so that a restarted agent can clean up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InJournal {
    pub container: String,
    pub net: NetSpec,
    /// `prepared`, `images`, `restored` or `committed`.
    pub phase: String,
}

/// The file a data frame belongs to.
enum Current {
    Shipment,
    Image {
        file: std::fs::File,
        path: PathBuf,
        remaining: u64,
    },
}

/// What goes on after the commit, until the container holds all its memory.
pub enum AfterCommit {
    /// Nothing: the memory is all in place.
    Done,
    /// CRIU's lazy-pages daemon fills it from the local images.
    LocalMemory(Box<dyn LocalLazy>),
    /// Post-copy: ferry's daemon fills it from the source, which waits on the peer
    /// connection for the last page.
    LastPage(Box<dyn LazyDaemon>),
}

impl std::fmt::Debug for AfterCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AfterCommit::Done => "Done",
            AfterCommit::LocalMemory(_) => "LocalMemory",
            AfterCommit::LastPage(_) => "LastPage",
        })
    }
}

/// One incoming migration.
pub struct DestSession {
    pub(crate) id: String,
    pub(crate) container: String,
    pub(crate) ports: DestPorts,
    pub(crate) settings: HostSettings,
    pub(crate) net: Box<dyn ContainerNetwork>,
    pub(crate) dir: PathBuf,
    pub(crate) images: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) pages: Box<dyn SessionPages>,
    sink: Option<Box<dyn ShipmentSink>>,
    current: Option<Current>,
    digest: String,
    half: Option<Box<dyn DestHalf>>,
    pub(crate) restored: bool,
    pub(crate) fault: Option<Fault>,
    pub(crate) tcp_established: bool,
    group: Option<String>,
    pod: Option<Box<dyn PodArrival>>,
    pub(crate) pages_bytes: u64,
    pub(crate) tl: Timeline,
    pub(crate) meter: UsageMeter,
    pub(crate) stats: DestStats,
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for DestSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestSession")
            .field("id", &self.id)
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

fn create_dirs(dirs: &[&Path]) -> Result<(), IncomingError> {
    for d in dirs {
        std::fs::create_dir_all(d).map_err(|e| IncomingError::io(d.display(), e))?;
    }
    Ok(())
}

impl DestSession {
    /// Builds everything before the container arrives: its network (locked,
    /// unreachable), its directories, and what receives its memory. Returns whether the
    /// source must send the shipment.
    pub async fn prepare(
        ports: &DestPorts,
        settings: &HostSettings,
        p: Prepare,
    ) -> Result<(Self, bool), IncomingError> {
        let admission = ports.host.admit(&p).await?;
        let mut tl = Timeline::new();
        let t = Instant::now();
        let net = match ports
            .network
            .prepare(&p.container, &p.net, admission.join)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                ports.host.set_session(&p.session, SessionState::Dropped);
                return Err(e.into());
            }
        };
        drop(admission.setup);
        if let Some(pod) = &admission.pod {
            pod.arrived();
        }
        tl.record("network", t);

        let dir = settings.images_dir.join(format!("in-{}", p.session));
        let (images, work) = (dir.join("images"), dir.join("work"));
        let mut s = DestSession {
            id: p.session.clone(),
            container: p.container.clone(),
            ports: ports.clone(),
            settings: settings.clone(),
            net,
            dir,
            images,
            work,
            pages: admission.pages,
            sink: None,
            current: None,
            digest: p.bundle_digest.clone(),
            half: None,
            restored: false,
            fault: p.inject_fault.filter(|_| settings.allow_fault_injection),
            tcp_established: p.tcp_established,
            group: p.group.clone(),
            pod: admission.pod,
            pages_bytes: 0,
            tl,
            meter: UsageMeter::start(),
            stats: DestStats::default(),
            _guard: admission.guard,
        };
        if let Err(e) = create_dirs(&[&s.images, &s.work]) {
            s.drop_all().await;
            return Err(e);
        }
        s.journal("prepared", &p.net);
        let need = !ports.engine.has_shipment(&p.container, &p.bundle_digest);
        s.half = Some(crate::strategies::of(p.strategy).destination(&mut s));
        Ok((s, need))
    }

    fn journal(&self, phase: &str, net: &NetSpec) {
        let j = InJournal {
            container: self.container.clone(),
            net: net.clone(),
            phase: phase.into(),
        };
        let _ = std::fs::write(
            self.dir.join(crate::source::journal::JOURNAL),
            serde_json::to_vec(&j).unwrap_or_default(),
        );
    }

    pub(crate) fn mark(&self, phase: &str) {
        self.journal(phase, &self.net.spec().clone());
    }

    pub fn begin_bundle_file(&mut self, entry: &FileEntry) -> Result<(), IncomingError> {
        if self.sink.is_none() {
            self.sink = Some(self.ports.engine.receive(&self.container, &self.digest)?);
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.begin(entry)?;
        }
        self.current = Some(Current::Shipment);
        Ok(())
    }

    pub fn begin_image(&mut self, name: &str, size: u64) -> Result<(), IncomingError> {
        if self.fault == Some(Fault::DestDiesDuringTransfer) {
            tracing::error!("fault injection: the destination agent exits during the transfer");
            std::process::exit(101);
        }
        let path = self.images.join(name);
        let file =
            std::fs::File::create(&path).map_err(|e| IncomingError::io(path.display(), e))?;
        self.current = Some(Current::Image {
            file,
            path,
            remaining: size,
        });
        Ok(())
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), IncomingError> {
        match self.current.as_mut() {
            Some(Current::Shipment) => match self.sink.as_mut() {
                Some(sink) => Ok(sink.write(data)?),
                None => Err(IncomingError::DataWithoutFile),
            },
            Some(Current::Image {
                file,
                path,
                remaining,
            }) => {
                let n = data.len() as u64;
                if n > *remaining {
                    return Err(IncomingError::TooMuchData(path.display().to_string()));
                }
                *remaining -= n;
                file.write_all(data)
                    .map_err(|e| IncomingError::io(path.display(), e))
            }
            None => Err(IncomingError::DataWithoutFile),
        }
    }

    pub fn end_file(&mut self) -> Result<(), IncomingError> {
        match self.current.take() {
            Some(Current::Shipment) => match self.sink.as_mut() {
                Some(sink) => Ok(sink.end_file()?),
                None => Ok(()),
            },
            Some(Current::Image { remaining: 0, .. }) | None => Ok(()),
            Some(Current::Image { path, .. }) => {
                Err(IncomingError::BytesMissing(path.display().to_string()))
            }
        }
    }

    /// Puts the received shipment in place, pointing it at this host's namespace.
    pub fn store_bundle(&mut self) -> Result<(), IncomingError> {
        let sink = match self.sink.take() {
            Some(s) => s,
            None => self.ports.engine.receive(&self.container, &self.digest)?,
        };
        sink.store(&self.net.netns_path())?;
        Ok(())
    }

    /// The image files arrived: waits for what the page channel carries into them.
    pub async fn store_images(&mut self, pages_bytes: u64) -> Result<(), IncomingError> {
        let t = Instant::now();
        if let Some(half) = self.half.as_mut() {
            half.images_stored(pages_bytes).await?;
        }
        self.pages_bytes = pages_bytes;
        self.tl.record("pages-stored", t);
        self.mark("images");
        Ok(())
    }

    /// Restores the container, reachable but still behind ferry's lock. A pod member
    /// counts as restored once every member of its pod is.
    pub async fn restore(&mut self) -> Result<DestStats, IncomingError> {
        let t = Instant::now();
        self.net.attach().await?;
        self.net.announce().await?;
        self.tl.record("link-up", t);
        if self.fault == Some(Fault::RestoreFails) {
            tracing::error!("fault injection: corrupting core-1.img so that the restore fails");
            let _ = std::fs::write(self.images.join("core-1.img"), [0u8; 4]);
        }
        let mut half = self.half.take().ok_or(IncomingError::NoSession)?;
        let r = half.restore(self).await;
        self.half = Some(half);
        r?;
        self.stats.phases = self.tl.phases().to_vec();
        self.stats.usage = self.meter.finish();
        let Some(pod) = &self.pod else {
            return Ok(self.stats.clone());
        };
        let t = Instant::now();
        pod.restored();
        pod.wait_all().await.map_err(IncomingError::Pod)?;
        self.tl.record("pod-wait", t);
        self.stats.phases = self.tl.phases().to_vec();
        Ok(self.stats.clone())
    }

    /// Restores by `plan`; on success the container runs (behind the lock).
    pub(crate) async fn run_restore(&mut self, plan: &RestorePlan) -> Result<(), IncomingError> {
        let t = Instant::now();
        // From the first attempt on, a dropped session deletes what the restore may have
        // left running here.
        self.restored = true;
        let r = self.ports.engine.restore(&self.container, plan).await;
        self.tl.record("restore", t);
        if let Err(e) = r {
            let mut f = diagnose(&self.work.join("restore.log"), &e.to_string());
            f.log_path = logs_dir(&self.settings, &self.id).join("restore.log");
            if f.error_lines.is_empty() {
                return Err(IncomingError::RestoreTool {
                    error: e.to_string(),
                    log: f.log_path.display().to_string(),
                });
            }
            return Err(IncomingError::Restore(Box::new(f)));
        }
        self.mark("restored");
        self.stats.criu_restore = ferry_criu::images::Stats::read(&self.work.join("stats-restore"))
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

    /// The source committed: release the container's network and keep it. Returns what
    /// the connection still waits for (post-copy's last page).
    pub async fn commit(mut self) -> (DestStats, Option<super::LastPage>) {
        let t = Instant::now();
        if let Err(e) = self.net.unlock().await {
            tracing::error!("cannot remove the hold lock of {}: {e}", self.container);
        }
        self.tl.record("unlock", t);
        if let Some(p) = &self.pod {
            p.leave();
        }
        let host = self.ports.host.clone();
        host.adopt(&self.container, self.net.spec(), self.group.as_deref());
        host.set_session(&self.id, SessionState::Committed);
        self.mark("committed");
        let after = match self.half.take() {
            Some(h) => h.after_commit(),
            None => AfterCommit::Done,
        };
        self.stats.phases = self.tl.phases().to_vec();
        let stats = self.stats.clone();
        let last = self.go_on(after);
        (stats, last)
    }

    /// Lets what fills the memory run on after the commit.
    fn go_on(self, after: AfterCommit) -> Option<super::LastPage> {
        let host = self.ports.host.clone();
        match after {
            AfterCommit::Done => {
                remove_session_dir(&self.settings, &self.id, &self.dir);
                None
            }
            AfterCommit::LocalMemory(lazy) => {
                // No checkpoint of it may start before its memory is all in place.
                let guard = host.memory_arriving(&self.container);
                let (settings, id, dir, container) =
                    (self.settings.clone(), self.id, self.dir, self.container);
                tokio::spawn(async move {
                    if let Err(e) = lazy.wait().await {
                        tracing::error!(%container, "the lazy-pages daemon ended badly ({e}); the container may be missing memory");
                    }
                    drop(guard);
                    remove_session_dir(&settings, &id, &dir);
                });
                None
            }
            AfterCommit::LastPage(mut daemon) => {
                remove_session_dir(&self.settings, &self.id, &self.dir);
                daemon.go();
                Some(super::LastPage {
                    daemon,
                    guard: host.memory_arriving(&self.container),
                    container: self.container,
                    ports: self.ports,
                    net: self.net,
                })
            }
        }
    }

    /// Drops everything this session built.
    pub async fn drop_all(mut self) {
        if self.restored {
            let _ = self.ports.engine.delete(&self.container).await;
        }
        // Only after the processes are gone: a post-copy daemon holds their
        // userfaultfds.
        if let Some(h) = self.half.take() {
            h.abort().await;
        }
        self.ports.host.set_session(&self.id, SessionState::Dropped);
        if let Some(p) = &self.pod {
            p.failed();
            p.leave();
        }
        let _ = self.net.release().await;
        let _ = keep_logs(&self.settings, &self.id, &self.work);
        let _ = std::fs::remove_dir_all(&self.dir);
        tracing::info!(session = %self.id, "dropped the incoming container");
    }

    /// The engine, for strategies that ask it to kill the container at once.
    pub(crate) fn engine(&self) -> Arc<dyn crate::ports::container::ContainerEngine> {
        self.ports.engine.clone()
    }
}
