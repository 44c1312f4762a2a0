//! A runc container being moved: its freezer, its bundle, and CRIU run through runc.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_criu::plan::{CriuConfigTarget, CriuOptionPlan};
use ferry_criu::process::HELPER_SOCKET_FD;
use ferry_engine::ports::container::{
    ContainerError, DumpPlan, LazyDump, Shipment, ShipmentChanges, Subject,
};
use ferry_runtime::bundle::Bundle;
use ferry_runtime::delta::{snapshot, write_delta, Snapshot};
use ferry_runtime::freezer::Freezer;
use ferry_runtime::{CheckpointArgs, ContainerState, Runc, Runtime};
use ferry_types::FileEntry;

use super::failed;
use super::shipment::{bundle_shipment, DIGEST_FILE};

/// The image file that carries the bundle's late changes to the destination.
pub(crate) const BUNDLE_DELTA: &str = "bundle-delta.img";

/// Where CRIU reports that its lazy dump is ready (runc's `--status-fd`).
const STATUS_FD: i32 = HELPER_SOCKET_FD + 1;

/// A container in a runc root.
#[derive(Debug, Clone)]
pub struct RuncSubject {
    runc: Runc,
    state: ContainerState,
    bundle: Bundle,
    config_target: CriuConfigTarget,
    freezer: Freezer,
    /// The entries of the last shipment, stamped as they were before they were read.
    sent: Arc<Mutex<Option<Sent>>>,
}

/// A shipment's entries and their stamps.
type Sent = (Vec<FileEntry>, Snapshot);

/// Kills every process of a cgroup (a process blocked on a missing page still dies).
pub(crate) fn kill_all(freezer: &Freezer) {
    for pid in freezer.procs() {
        // SAFETY: kill(2) on the processes of the container's own cgroup.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl RuncSubject {
    pub(crate) fn new(runc: Runc, state: ContainerState, bundle: Bundle, freezer: Freezer) -> Self {
        let config_target = state.criu_config_target();
        Self {
            runc,
            state,
            bundle,
            config_target,
            freezer,
            sent: Arc::default(),
        }
    }

    pub fn state(&self) -> &ContainerState {
        &self.state
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn config_target(&self) -> &CriuConfigTarget {
        &self.config_target
    }

    pub fn freezer(&self) -> &Freezer {
        &self.freezer
    }

    fn criu_plan(&self, plan: &DumpPlan) -> Result<CriuOptionPlan, ContainerError> {
        CriuOptionPlan::checkpoint(&plan.criu, &self.config_target)
            .map_err(|e| ContainerError::Refused(e.to_string()))
    }
}

#[async_trait]
impl Subject for RuncSubject {
    fn name(&self) -> &str {
        &self.state.id
    }

    fn processes(&self) -> Vec<u32> {
        self.freezer.procs()
    }

    fn resident_bytes(&self) -> u64 {
        resident_bytes(&self.freezer.procs())
    }

    fn freeze(&self) -> Result<(), ContainerError> {
        self.freezer.freeze().map(drop).map_err(failed)
    }

    fn thaw(&self) -> Result<(), ContainerError> {
        self.freezer.thaw().map_err(failed)
    }

    fn release_sockets(&self) -> Result<u32, ContainerError> {
        let n = ferry_criu::repair::release_repair(&self.freezer.procs())
            .map_err(|e| ContainerError::Failed(format!("releasing its TCP sockets: {e}")))?;
        if n > 0 {
            tracing::warn!(container = %self.state.id, sockets = n, "took TCP connections out of the repair mode CRIU left them in");
        }
        Ok(n)
    }

    fn kill_frozen(&self) {
        // Tearing down a large memory takes CPU time: at the lowest priority, so that it
        // does not slow down another migration's downtime on this host.
        for pid in self.freezer.procs() {
            // SAFETY: plain setpriority(2) and kill(2) on a pid of the container's cgroup.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, 19);
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        let _ = self.freezer.thaw();
    }

    fn alive(&self) -> Result<(), ContainerError> {
        if self.freezer.procs().is_empty() {
            return Err(ContainerError::Failed("its processes are gone".into()));
        }
        match self.freezer.is_frozen() {
            Ok(false) => Ok(()),
            Ok(true) => Err(ContainerError::Failed("it is still frozen".into())),
            Err(e) => Err(failed(e)),
        }
    }

    fn shipment(&self) -> Result<Shipment, ContainerError> {
        let s = bundle_shipment(&self.bundle)?;
        let stamps = snapshot(&s.root, &s.entries);
        if let Ok(mut sent) = self.sent.lock() {
            *sent = Some((s.entries.clone(), stamps));
        }
        Ok(s)
    }

    fn shipment_changes(&self, images: &Path) -> Result<ShipmentChanges, ContainerError> {
        let Some((entries, stamps)) = self.sent.lock().ok().and_then(|s| s.clone()) else {
            return Ok(ShipmentChanges::default());
        };
        let now = bundle_shipment(&self.bundle)?;
        let out = images.join(BUNDLE_DELTA);
        let n = write_delta(&now.root, &entries, &stamps, &now.entries, &out).map_err(failed)?;
        if n.is_empty() {
            let _ = std::fs::remove_file(&out);
        }
        Ok(ShipmentChanges {
            changed: n.changed,
            removed: n.removed,
            bytes: n.bytes,
        })
    }

    fn shipped(&self, digest: &str) {
        let _ = std::fs::write(self.bundle.dir.join(DIGEST_FILE), digest);
    }

    async fn checkpoint(&self, plan: &DumpPlan) -> Result<(), ContainerError> {
        let criu = self.criu_plan(plan)?;
        self.runc
            .checkpoint(
                &self.state.id,
                CheckpointArgs {
                    images: &plan.images,
                    work: &plan.work,
                    plan: &criu,
                    config_target: &self.config_target,
                    fds: Vec::new(),
                    status_fd: None,
                    hold: Some(&self.freezer),
                },
            )
            .await
            .map_err(failed)
    }

    fn checkpoint_lazy(&self, plan: DumpPlan, page_socket: OwnedFd) -> LazyDump {
        let fail = |e: ContainerError| LazyDump {
            ready: Box::pin(async { false }),
            done: Box::pin(async move { Err(e) }),
        };
        let criu = match self.criu_plan(&plan) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let (status_r, status_w) = match pipe() {
            Ok(p) => p,
            Err(e) => return fail(ContainerError::Failed(format!("status pipe: {e}"))),
        };
        let (runc, id, target, freezer) = (
            self.runc.clone(),
            self.state.id.clone(),
            self.config_target.clone(),
            self.freezer.clone(),
        );
        let done = Box::pin(async move {
            let args = CheckpointArgs {
                images: &plan.images,
                work: &plan.work,
                plan: &criu,
                config_target: &target,
                fds: vec![(HELPER_SOCKET_FD, page_socket), (STATUS_FD, status_w)],
                status_fd: Some(STATUS_FD),
                hold: Some(&freezer),
            };
            runc.checkpoint(&id, args).await.map_err(failed)
        });
        // CRIU writes a byte when its images are written and it serves pages; the pipe
        // ends without one if the dump failed.
        let ready = Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || {
                let mut f = std::fs::File::from(status_r);
                let mut b = [0u8; 1];
                f.read(&mut b).map(|n| n == 1)
            });
            matches!(read.await, Ok(Ok(true)))
        });
        LazyDump { ready, done }
    }

    async fn remove(&self) -> Result<(), ContainerError> {
        self.runc.delete(&self.state.id, true).await.map_err(failed)
    }
}

/// Resident memory of processes, an estimate of what a dump sends.
pub fn resident_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}
