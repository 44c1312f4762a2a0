//! One incoming migration: what the destination builds, and how it is kept or dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_proto::Prepare;
use ferry_types::held::{HELD_BYTES, HELD_PACKETS};
use ferry_types::{DestStats, EngineKind, Fault, FileEntry, Held, NetSpec, SessionState};
use serde::{Deserialize, Serialize};

use super::arrival::{AfterCommit, Arrival};
use super::DestPorts;
use crate::error::IncomingError;
use crate::logs::{keep_logs, remove_session_dir};
use crate::ports::container::ShipmentSink;
use crate::ports::host::{AdmitError, HostSettings, PodArrival};
use crate::ports::network::{deliver_and_log, ContainerNetwork, PeerWatch};
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
    /// The engine that restores it.
    #[serde(default)]
    pub engine: EngineKind,
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

/// One incoming migration.
pub struct DestSession {
    /// What the strategy's half works with.
    a: Arrival,
    ports: DestPorts,
    net: Box<dyn ContainerNetwork>,
    dir: PathBuf,
    sink: Option<Box<dyn ShipmentSink>>,
    current: Option<Current>,
    digest: String,
    half: Option<Box<dyn DestHalf>>,
    fault: Option<Fault>,
    group: Option<String>,
    /// The engine that restores it.
    engine: EngineKind,
    pod: Option<Box<dyn PodArrival>>,
    meter: UsageMeter,
    /// When the restore ended: peers' first packets count from here.
    restored_at: Option<Instant>,
    /// `--new-ip`: the container's sockets move from the first address to the second.
    readdress: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for DestSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestSession")
            .field("session", &self.a.session)
            .field("container", &self.a.container)
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
        let ports = &ports.for_engine(p.engine)?;
        if crate::policy::auto::needs_lazy_pages(p.strategy) && !ports.engine.restores_lazily() {
            return Err(AdmitError::EngineNotLazy(p.engine).into());
        }
        let readdress = readdress_of(&p)?;
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
            a: Arrival {
                session: p.session.clone(),
                container: p.container.clone(),
                settings: settings.clone(),
                engine: ports.engine.clone(),
                images,
                work,
                pages: admission.pages,
                tcp_established: p.tcp_established,
                file_locks: p.file_locks,
                pages_bytes: 0,
                tl,
                stats: DestStats::default(),
                restored: false,
            },
            ports: ports.clone(),
            net,
            dir,
            sink: None,
            current: None,
            digest: p.bundle_digest.clone(),
            half: None,
            fault: p.inject_fault.filter(|_| settings.allow_fault_injection),
            group: p.group.clone(),
            engine: p.engine,
            pod: admission.pod,
            meter: UsageMeter::start(),
            restored_at: None,
            readdress,
            _guard: admission.guard,
        };
        if let Err(e) = create_dirs(&[&s.a.images, &s.a.work]) {
            s.drop_all().await;
            return Err(e);
        }
        s.journal("prepared", &p.net);
        let need = !ports.engine.has_shipment(&p.container, &p.bundle_digest);
        s.half = Some(crate::strategies::of(p.strategy).destination(&mut s.a));
        Ok((s, need))
    }

    fn journal(&self, phase: &str, net: &NetSpec) {
        let j = InJournal {
            container: self.a.container.clone(),
            net: net.clone(),
            phase: phase.into(),
            engine: self.engine,
        };
        let path = self.dir.join(crate::source::journal::JOURNAL);
        if let Err(e) =
            crate::durable::write_atomic(&path, &serde_json::to_vec(&j).unwrap_or_default())
        {
            tracing::error!(container = %self.a.container, "cannot journal the incoming migration ({phase}): {e}");
        }
    }

    pub(crate) fn mark(&self, phase: &str) {
        self.journal(phase, &self.net.spec().clone());
    }

    pub fn begin_bundle_file(&mut self, entry: &FileEntry) -> Result<(), IncomingError> {
        if self.sink.is_none() {
            self.sink = Some(self.ports.engine.receive(&self.a.container, &self.digest)?);
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
        let path = self.a.images.join(name);
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
            None => self.ports.engine.receive(&self.a.container, &self.digest)?,
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
        self.a.pages_bytes = pages_bytes;
        self.a.tl.record("pages-stored", t);
        if let Some((old, new)) = self.readdress {
            let t = Instant::now();
            let side = ferry_criu::images::wire::readdress::Side::Local;
            let n = ferry_criu::images::wire::readdress::readdress(&self.a.images, old, new, side)
                .map_err(|e| IncomingError::Readdress(e.to_string()))?;
            tracing::info!(
                "{}: {n} socket(s) moved from {old} to {new}",
                self.a.container
            );
            self.a.tl.record("readdress", t);
        }
        self.mark("images");
        Ok(())
    }

    /// Restores the container, reachable but still behind ferry's lock. A pod member
    /// counts as restored once every member of its pod is.
    pub async fn restore(&mut self) -> Result<DestStats, IncomingError> {
        let t = Instant::now();
        self.net.attach().await?;
        self.net.announce().await?;
        self.a.tl.record("link-up", t);
        if self.fault == Some(Fault::RestoreFails) {
            tracing::error!("fault injection: corrupting core-1.img so that the restore fails");
            let _ = std::fs::write(self.a.images.join("core-1.img"), [0u8; 4]);
        }
        let half = self.half.as_mut().ok_or(IncomingError::NoSession)?;
        half.restore(&mut self.a).await?;
        self.restored_at = Some(Instant::now());
        self.mark("restored");
        self.a.stats.phases = self.a.tl.phases().to_vec();
        self.a.stats.usage = self.meter.finish();
        let Some(pod) = &self.pod else {
            return Ok(self.a.stats.clone());
        };
        let t = Instant::now();
        pod.restored();
        pod.wait_all().await?;
        self.a.tl.record("pod-wait", t);
        self.a.stats.phases = self.a.tl.phases().to_vec();
        Ok(self.a.stats.clone())
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
    pub async fn commit(mut self, from_source: Held) -> Committed {
        let t = Instant::now();
        if let Err(e) = self.net.unlock().await {
            tracing::error!("cannot remove the hold lock of {}: {e}", self.a.container);
        }
        self.a.tl.record("unlock", t);
        let delivered = self.deliver_held(from_source).await;
        let t = Instant::now();
        let peers = watch_peers(&*self.net, self.restored_at, &delivered).await;
        if peers.is_some() {
            self.a.tl.record("watch-peers", t);
        }
        if let Some(p) = &self.pod {
            p.leave();
        }
        let host = self.ports.host.clone();
        // Another engine's container is that engine's own; ferry keeps no record of it.
        if self.engine == EngineKind::Runc {
            host.adopt(&self.a.container, self.net.spec(), self.group.as_deref());
        }
        let after = match self.half.take() {
            Some(h) => h.after_commit(),
            None => AfterCommit::Done,
        };
        // Post-copy owes pages from the source: until the last one is here, the source's
        // frozen copy is the only whole one, so a source that asks hears "undecided".
        let state = match &after {
            AfterCommit::LastPage(_) => SessionState::Pending,
            _ => SessionState::Committed,
        };
        host.set_session(&self.a.session, state);
        self.mark("committed");
        if self.fault == Some(Fault::DestDiesAfterCommit) {
            tracing::error!("fault injection: the destination agent exits after committing, before the source hears of it");
            std::process::exit(101);
        }
        self.a.stats.phases = self.a.tl.phases().to_vec();
        self.a.stats.watching_peers = peers.as_ref().map_or(0, |p| p.watch.watching());
        let stats = self.a.stats.clone();
        let last = self.go_on(after);
        Committed { stats, last, peers }
    }

    /// Delivers what the locks held, the source's first (older): its peers' packets only,
    /// and within the bounds a catcher keeps; then this side's own, both ways.
    async fn deliver_held(&mut self, from_source: Held) -> Held {
        let t = Instant::now();
        let peers =
            if from_source.inbound.len() <= HELD_PACKETS && from_source.bytes() <= HELD_BYTES {
                Held {
                    inbound: from_source.inbound,
                    outbound: Vec::new(),
                    overflow: from_source.overflow,
                }
            } else {
                tracing::warn!(
                    "the source sent {} held packets ({} bytes), over the bounds: not delivered",
                    from_source.inbound.len(),
                    from_source.bytes()
                );
                Held::default()
            };
        let held = peers.then(self.net.take_held().await);
        let when = format!("for {} at the commit", self.a.container);
        if deliver_and_log(&*self.net, held.clone(), &when).await {
            self.a.tl.record("deliver-held", t);
        }
        held
    }

    /// Lets what fills the memory run on after the commit.
    fn go_on(self, after: AfterCommit) -> Option<super::LastPage> {
        let host = self.ports.host.clone();
        match after {
            AfterCommit::Done => {
                remove_session_dir(&self.a.settings, &self.a.session, &self.dir);
                None
            }
            AfterCommit::LocalMemory(lazy) => {
                // No checkpoint of it may start before its memory is all in place.
                let guard = host.memory_arriving(&self.a.container);
                let (settings, id, dir, container) =
                    (self.a.settings, self.a.session, self.dir, self.a.container);
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
                // The session's directory (its journal) stays until the last page: a
                // restarted agent finds there what it must stop.
                if self.fault == Some(Fault::DestDiesDuringPostcopy) {
                    tracing::error!("fault injection: the destination agent exits during post-copy, pages still owed");
                    tokio::spawn(async {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        std::process::exit(101);
                    });
                } else {
                    daemon.go();
                }
                Some(super::LastPage {
                    session: self.a.session,
                    settings: self.a.settings,
                    dir: self.dir,
                    daemon,
                    guard: host.memory_arriving(&self.a.container),
                    container: self.a.container,
                    ports: self.ports,
                    net: self.net,
                })
            }
        }
    }

    /// Drops everything this session built.
    /// Why the page transfer failed here, if it did.
    pub async fn page_failure(&mut self) -> Option<String> {
        self.half.as_mut()?.page_failure().await
    }

    pub async fn drop_all(mut self) {
        if self.a.restored {
            let _ = self.ports.engine.delete(&self.a.container).await;
        }
        // Only after the processes are gone: a post-copy daemon holds their
        // userfaultfds.
        if let Some(h) = self.half.take() {
            h.abort().await;
        }
        self.ports
            .host
            .set_session(&self.a.session, SessionState::Dropped);
        if let Some(p) = &self.pod {
            p.failed();
            p.leave();
        }
        let _ = self.net.release().await;
        let _ = keep_logs(&self.a.settings, &self.a.session, &self.a.work);
        let _ = std::fs::remove_dir_all(&self.dir);
        tracing::info!(session = %self.a.session, "dropped the incoming container");
    }

    /// The session's id.
    pub fn id(&self) -> &str {
        &self.a.session
    }
}

/// Starts watching the restored connections' peers.
async fn watch_peers(
    net: &dyn ContainerNetwork,
    restored_at: Option<Instant>,
    delivered: &Held,
) -> Option<PeersPending> {
    let watch = net.watch_peers(delivered).await?;
    let since_restore_ms = restored_at.map_or(0.0, |t| ferry_types::ms(t.elapsed()));
    Some(PeersPending {
        watch,
        since_restore_ms,
    })
}

/// What a commit leaves to do after `Committed` is sent.
pub struct Committed {
    pub stats: DestStats,
    /// Post-copy's wait for the last page.
    pub last: Option<super::LastPage>,
    /// The watch over the peers, for `PeersResumed`.
    pub peers: Option<PeersPending>,
}

/// A watch over the peers, and how long after the restore it started.
pub struct PeersPending {
    watch: Box<dyn PeerWatch>,
    since_restore_ms: f64,
}

impl std::fmt::Debug for Committed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committed")
            .field("stats", &self.stats)
            .field("last_page_owed", &self.last.is_some())
            .field("peers", &self.peers)
            .finish()
    }
}

impl std::fmt::Debug for PeersPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeersPending")
            .field("watching", &self.watch.watching())
            .field("since_restore_ms", &self.since_restore_ms)
            .finish()
    }
}

impl PeersPending {
    /// Waits for the watch; the figures count from the end of the restore.
    pub async fn finish(self) -> Vec<ferry_types::PeerResumed> {
        let mut peers = self.watch.finish().await;
        for p in &mut peers {
            if let Some(ms) = p.first_packet_ms.as_mut() {
                *ms += self.since_restore_ms;
            }
        }
        peers
    }
}

/// The addresses a `--new-ip` move rewrites the container's sockets between: from the
/// source's, to the one the destination builds the namespace with.
fn readdress_of(
    p: &Prepare,
) -> Result<Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>, IncomingError> {
    let Some(from) = &p.readdress_from else {
        return Ok(None);
    };
    let bad = || {
        IncomingError::Readdress(format!("the source asked to move the container's sockets from '{from}' to '{}', which are not two IPv4 addresses", p.net.address))
    };
    let old = from.parse().map_err(|_| bad())?;
    let new = p
        .net
        .address
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(bad)?;
    Ok(Some((old, new)))
}
