//! Checkpoint and restore of a container on one host.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_criu::images::{measure, Stats};
use ferry_criu::log::diagnose;
use ferry_criu::plan::{CheckpointSpec, CriuOptionPlan, NetworkLock, PageTransport, RestoreSpec};
use ferry_runtime::bundle::Bundle;
use ferry_runtime::freezer::Freezer;
use ferry_runtime::{CheckpointArgs, RestoreArgs, Runtime, RuntimeError};
use serde::{Deserialize, Serialize};

use crate::error::OpError;
use ferry_engine::timeline::Timeline;
use ferry_engine::usage::UsageMeter;
use ferry_types::{CriuErrors, Operation, Outcome, Report};

/// What ferry records next to a checkpoint, so that a restore can check its bundle.
pub const CHECKPOINT_META: &str = "ferry-checkpoint.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub container: String,
    pub bundle: PathBuf,
    pub bundle_identity: String,
    pub tcp_established: bool,
}

/// Freezes a container's processes. The real one uses the cgroup freezer.
pub trait Freeze {
    fn freeze(&self, pid: u32) -> Result<(), RuntimeError>;
    fn thaw(&self, pid: u32) -> Result<(), RuntimeError>;
}

/// The cgroup freezer.
#[derive(Debug, Clone, Copy, Default)]
pub struct CgroupFreeze;

impl Freeze for CgroupFreeze {
    fn freeze(&self, pid: u32) -> Result<(), RuntimeError> {
        Freezer::for_pid(pid)?.freeze().map(drop)
    }
    fn thaw(&self, pid: u32) -> Result<(), RuntimeError> {
        Freezer::for_pid(pid)?.thaw()
    }
}

/// `ferry checkpoint`.
#[derive(Debug, Clone)]
pub struct CheckpointRequest {
    pub container: String,
    pub images: PathBuf,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub file_locks: bool,
    pub network_lock: NetworkLock,
}

/// `ferry restore`.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub container: String,
    pub images: PathBuf,
    pub bundle: PathBuf,
    pub tcp_established: bool,
    pub file_locks: bool,
    pub network_lock: NetworkLock,
}

fn criu_error(context: &str, work: &Path, log: &str, err: &RuntimeError) -> OpError {
    let extra = err.to_string();
    let failure = diagnose(&work.join(log), &extra);
    OpError::Criu {
        context: context.to_string(),
        failure: Box::new(failure),
    }
}

/// Checkpoints a running container into `req.images`.
pub async fn checkpoint(
    rt: &impl Runtime,
    freezer: &impl Freeze,
    req: &CheckpointRequest,
) -> Result<Report, OpError> {
    let meter = UsageMeter::start();
    let mut tl = Timeline::new();
    let state = rt.state(&req.container).await?;
    if state.status != "running" && state.status != "paused" {
        return Err(RuntimeError::NotRunning {
            id: req.container.clone(),
            status: state.status,
        }
        .into());
    }
    if req.images.join("inventory.img").exists() {
        return Err(OpError::Input(format!(
            "{} already holds a checkpoint; choose an empty directory",
            req.images.display()
        )));
    }
    std::fs::create_dir_all(&req.images).map_err(|e| OpError::io(req.images.display(), e))?;
    let bundle = Bundle::load(&state.bundle)?;
    let target = state.criu_config_target();
    let plan = CriuOptionPlan::checkpoint(
        &CheckpointSpec {
            leave_running: req.leave_running,
            tcp_established: req.tcp_established,
            file_locks: req.file_locks,
            pages: PageTransport::ImagesDir,
            network_lock: req.network_lock,
        },
        &target,
    )
    .map_err(|e| OpError::Input(e.to_string()))?;

    let was_paused = state.status == "paused";
    let freeze_start = Instant::now();
    if !was_paused {
        freezer.freeze(state.pid)?;
    }
    tl.record("freeze", freeze_start);
    let dump_start = Instant::now();
    let result = rt
        .checkpoint(
            &req.container,
            CheckpointArgs {
                images: &req.images,
                work: &req.images,
                plan: &plan,
                config_target: &target,
                fds: Vec::new(),
                status_fd: None,
                hold: None,
            },
        )
        .await;
    tl.record("dump", dump_start);
    if let Err(e) = result {
        if !was_paused {
            let _ = freezer.thaw(state.pid);
        }
        return Err(criu_error(
            "checkpoint failed; the container keeps running",
            &req.images,
            "dump.log",
            &e,
        ));
    }
    let mut downtime = None;
    if req.leave_running && !was_paused {
        let t = Instant::now();
        freezer.thaw(state.pid)?;
        tl.record("resume", t);
        downtime = Some(ferry_types::ms(freeze_start.elapsed()));
    }
    write_meta(req, &state.bundle, &bundle)?;
    checkpoint_report(req, tl, meter, downtime)
}

/// Records, next to the images, the bundle a restore must match.
fn write_meta(req: &CheckpointRequest, dir: &Path, bundle: &Bundle) -> Result<(), OpError> {
    let meta = CheckpointMeta {
        container: req.container.clone(),
        bundle: dir.to_path_buf(),
        bundle_identity: bundle.identity_digest(),
        tcp_established: req.tcp_established,
    };
    let meta_path = req.images.join(CHECKPOINT_META);
    std::fs::write(
        &meta_path,
        serde_json::to_vec_pretty(&meta).unwrap_or_default(),
    )
    .map_err(|e| OpError::io(meta_path.display(), e))
}

fn checkpoint_report(
    req: &CheckpointRequest,
    tl: Timeline,
    meter: UsageMeter,
    downtime: Option<f64>,
) -> Result<Report, OpError> {
    let mut report = Report::new(Operation::Checkpoint, &req.container);
    report.outcome = Outcome::Checkpointed;
    report.downtime_ms = downtime;
    report.criu.dump = Stats::read(&req.images.join("stats-dump"))?.dump;
    report.images = Some(measure(&req.images).map_err(|e| OpError::io(req.images.display(), e))?);
    report.total_ms = tl.elapsed_ms();
    report.phases = tl.into_phases();
    report.usage = Some(meter.finish());
    if req.leave_running {
        report
            .notes
            .push("the container kept running (--leave-running)".into());
    } else {
        report
            .notes
            .push("the container was stopped; restore it with 'ferry restore'".into());
    }
    Ok(report)
}

/// Checks that `bundle` can restore the checkpoint in `images`.
pub fn check_bundle(images: &Path, bundle: &Bundle) -> Result<(), OpError> {
    if !images.join("inventory.img").exists() {
        return Err(OpError::Input(format!(
            "{} holds no checkpoint (no inventory.img); pass the directory 'ferry checkpoint --images' wrote",
            images.display()
        )));
    }
    let meta_path = images.join(CHECKPOINT_META);
    if let Ok(text) = std::fs::read(&meta_path) {
        let meta: CheckpointMeta = serde_json::from_slice(&text)
            .map_err(|e| OpError::Input(format!("{} is damaged: {e}", meta_path.display())))?;
        if meta.bundle_identity != bundle.identity_digest() {
            return Err(OpError::Input(format!(
                "the bundle {} does not match the checkpoint: it was taken from a container whose config.json (process, mounts or namespaces) differs; pass the bundle it was taken from ({})",
                bundle.dir.display(),
                meta.bundle.display()
            )));
        }
    }
    if let Some(ns) = bundle.netns_path() {
        if !Path::new(&ns).exists() {
            return Err(OpError::Input(format!(
                "the bundle's network namespace {ns} does not exist; create it (ip netns add) or point config.json at one that does"
            )));
        }
    }
    Ok(())
}

/// Restores a checkpoint as a running container.
pub async fn restore(rt: &impl Runtime, req: &RestoreRequest) -> Result<Report, OpError> {
    let meter = UsageMeter::start();
    let mut tl = Timeline::new();
    let bundle = Bundle::load(&req.bundle)?;
    check_bundle(&req.images, &bundle)?;
    match rt.state(&req.container).await {
        Ok(s) => {
            return Err(OpError::Input(format!(
                "a container named '{}' already exists ({}); delete it first or restore under another name",
                req.container, s.status
            )))
        }
        Err(RuntimeError::NotFound { .. }) | Err(RuntimeError::RootMissing(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let target = ferry_criu::plan::CriuConfigTarget::from_annotation(
        bundle.annotation(ferry_runtime::bundle::CRIU_CONFIG_ANNOTATION),
    );
    let plan = CriuOptionPlan::restore(
        &RestoreSpec {
            tcp_established: req.tcp_established,
            file_locks: req.file_locks,
            lazy_pages: false,
            network_lock: req.network_lock,
            tcp_close: false,
        },
        &target,
    )
    .map_err(|e| OpError::Input(e.to_string()))?;
    let _ = std::fs::remove_file(req.images.join("stats-restore"));
    let start = Instant::now();
    let result = rt
        .restore(
            &req.container,
            RestoreArgs {
                images: &req.images,
                work: &req.images,
                bundle: &req.bundle,
                plan: &plan,
                config_target: &target,
            },
        )
        .await;
    tl.record("restore", start);
    if let Err(e) = result {
        return Err(criu_error("restore failed", &req.images, "restore.log", &e));
    }
    let mut report = Report::new(Operation::Restore, &req.container);
    report.outcome = Outcome::Restored;
    report.criu.restore = Stats::read(&req.images.join("stats-restore"))
        .ok()
        .and_then(|s| s.restore);
    report.images = measure(&req.images).ok();
    report.total_ms = tl.elapsed_ms();
    report.phases = tl.into_phases();
    report.usage = Some(meter.finish());
    Ok(report)
}

/// Fills a report's error section from a CRIU failure.
pub fn attach_criu_errors(report: &mut Report, err: &OpError) {
    if let OpError::Criu { failure, .. } = err {
        report.criu_errors = Some(CriuErrors {
            log: failure.log_path.display().to_string(),
            lines: failure.error_lines.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_runtime::bundle::{create_host_program_bundle, HostProgramSpec};
    use ferry_runtime::ContainerState;
    use std::sync::Mutex;

    /// A runtime that pretends, recording calls; the checkpoint writes a stats file like
    /// CRIU would, or fails like CRIU would.
    struct FakeRuntime {
        state: Option<ContainerState>,
        fail_checkpoint: bool,
        calls: Mutex<Vec<String>>,
    }

    const STATS: &[u8] = &[
        0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0x0c, 0x00, 0x00, 0x00, 0x0a, 0x0a, 0x08,
        0x01, 0x10, 0x02, 0x18, 0x03, 0x20, 0x04, 0x28, 0x05,
    ];

    impl Runtime for FakeRuntime {
        async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
            self.state.clone().ok_or(RuntimeError::NotFound {
                id: id.into(),
                root: "/r".into(),
            })
        }
        async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
            Ok(vec![])
        }
        async fn run_detached(&self, _: &str, _: &Path) -> Result<(), RuntimeError> {
            Ok(())
        }
        async fn checkpoint(&self, _: &str, a: CheckpointArgs<'_>) -> Result<(), RuntimeError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("checkpoint leave={}", a.plan.leave_running));
            if self.fail_checkpoint {
                std::fs::write(
                    a.work.join("dump.log"),
                    "(0.1) Error (criu/files-reg.c:1): Some file locks are hold by dumping tasks!\n",
                )
                .unwrap();
                return Err(RuntimeError::CommandFailed {
                    command: "runc checkpoint".into(),
                    status: "1".into(),
                    stderr: "criu failed".into(),
                });
            }
            std::fs::write(a.images.join("inventory.img"), [0x16, 0x31, 0x31, 0x58]).unwrap();
            std::fs::write(a.images.join("stats-dump"), STATS).unwrap();
            Ok(())
        }
        async fn restore(&self, _: &str, _: RestoreArgs<'_>) -> Result<(), RuntimeError> {
            Ok(())
        }
        async fn kill(&self, _: &str, _: &str) -> Result<(), RuntimeError> {
            Ok(())
        }
        async fn delete(&self, _: &str, _: bool) -> Result<(), RuntimeError> {
            Ok(())
        }
        async fn resume(&self, _: &str) -> Result<(), RuntimeError> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct FakeFreezer(Mutex<Vec<&'static str>>);
    impl Freeze for FakeFreezer {
        fn freeze(&self, _: u32) -> Result<(), RuntimeError> {
            self.0.lock().unwrap().push("freeze");
            Ok(())
        }
        fn thaw(&self, _: u32) -> Result<(), RuntimeError> {
            self.0.lock().unwrap().push("thaw");
            Ok(())
        }
    }

    fn setup(fail: bool) -> (tempfile::TempDir, FakeRuntime, CheckpointRequest) {
        let d = tempfile::tempdir().unwrap();
        let b = d.path().join("bundle");
        create_host_program_bundle(
            &b,
            &HostProgramSpec {
                args: vec!["/bin/sleep".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let rt = FakeRuntime {
            state: Some(ContainerState {
                id: "c".into(),
                pid: 1,
                status: "running".into(),
                bundle: b,
                annotations: Default::default(),
            }),
            fail_checkpoint: fail,
            calls: Mutex::new(vec![]),
        };
        let req = CheckpointRequest {
            container: "c".into(),
            images: d.path().join("img"),
            leave_running: true,
            tcp_established: true,
            file_locks: false,
            network_lock: NetworkLock::Nftables,
        };
        (d, rt, req)
    }

    #[tokio::test]
    async fn leave_running_freezes_dumps_and_thaws_with_a_report() {
        let (_d, rt, req) = setup(false);
        let fz = FakeFreezer::default();
        let r = checkpoint(&rt, &fz, &req).await.unwrap();
        assert_eq!(*fz.0.lock().unwrap(), vec!["freeze", "thaw"]);
        assert_eq!(r.outcome, Outcome::Checkpointed);
        assert!(r.downtime_ms.is_some());
        let names: Vec<_> = r.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["freeze", "dump", "resume"]);
        assert_eq!(r.criu.dump.unwrap().pages_scanned, 5);
        assert!(req.images.join(CHECKPOINT_META).exists());
    }

    #[tokio::test]
    async fn a_failed_dump_thaws_and_explains_with_criu_lines() {
        let (_d, rt, req) = setup(true);
        let fz = FakeFreezer::default();
        let err = checkpoint(&rt, &fz, &req).await.unwrap_err();
        assert_eq!(*fz.0.lock().unwrap(), vec!["freeze", "thaw"]);
        let text = err.to_string();
        assert!(text.contains("--file-locks"), "{text}");
        assert!(text.contains("dump.log"), "{text}");
        assert!(text.contains("keeps running"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_container_is_one_sentence() {
        let (_d, mut rt, req) = setup(false);
        rt.state = None;
        let err = checkpoint(&rt, &FakeFreezer::default(), &req)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }

    #[tokio::test]
    async fn restore_refuses_a_bundle_that_does_not_match() {
        let (d, rt, req) = setup(false);
        checkpoint(&rt, &FakeFreezer::default(), &req)
            .await
            .unwrap();
        let other = d.path().join("other");
        create_host_program_bundle(
            &other,
            &HostProgramSpec {
                args: vec!["/bin/true".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let mut rt2 = rt;
        rt2.state = None;
        let rr = RestoreRequest {
            container: "c".into(),
            images: req.images.clone(),
            bundle: other,
            tcp_established: true,
            file_locks: false,
            network_lock: NetworkLock::Nftables,
        };
        let err = restore(&rt2, &rr).await.unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[tokio::test]
    async fn restore_refuses_a_directory_without_a_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let b = d.path().join("b");
        create_host_program_bundle(&b, &HostProgramSpec::default()).unwrap();
        let rt = FakeRuntime {
            state: None,
            fail_checkpoint: false,
            calls: Mutex::new(vec![]),
        };
        let rr = RestoreRequest {
            container: "c".into(),
            images: d.path().join("empty"),
            bundle: b,
            tcp_established: false,
            file_locks: false,
            network_lock: NetworkLock::Iptables,
        };
        let err = restore(&rt, &rr).await.unwrap_err().to_string();
        assert!(err.contains("holds no checkpoint"), "{err}");
    }
}
