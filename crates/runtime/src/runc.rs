//! runc, driven through its command line.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ferry_criu::plan::{CriuConfigTarget, CriuOptionPlan};
use serde::Deserialize;
use tokio::process::Command;

use crate::RuntimeError;

/// runc's default `--root`.
pub const DEFAULT_ROOT: &str = "/run/runc";

/// What `runc state` reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    pub id: String,
    #[serde(default)]
    pub pid: u32,
    pub status: String,
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ContainerState {
    /// Where runc points CRIU for its configuration file.
    pub fn criu_config_target(&self) -> CriuConfigTarget {
        CriuConfigTarget::from_annotation(
            self.annotations.get("org.criu.config").map(String::as_str),
        )
    }
}

/// A checkpoint to run.
#[derive(Debug)]
pub struct CheckpointArgs<'a> {
    pub images: &'a Path,
    pub work: &'a Path,
    pub plan: &'a CriuOptionPlan,
    pub config_target: &'a CriuConfigTarget,
    /// Descriptors CRIU inherits, at the numbers the plan names.
    pub fds: Vec<(i32, OwnedFd)>,
    /// Lazy dumps: CRIU writes one byte here when its images are written and it serves
    /// pages (runc's `--status-fd`; the descriptor must be among `fds`).
    pub status_fd: Option<i32>,
    /// The container's freezer, frozen before CRIU is stopped at its memory bound: CRIU
    /// holds the processes by ptrace alone, and its death would let them run with their
    /// connections in repair mode.
    pub hold: Option<&'a crate::freezer::Freezer>,
}

/// A restore to run.
#[derive(Debug)]
pub struct RestoreArgs<'a> {
    pub images: &'a Path,
    pub work: &'a Path,
    pub bundle: &'a Path,
    pub plan: &'a CriuOptionPlan,
    pub config_target: &'a CriuConfigTarget,
}

/// The operations ferry needs from a container runtime.
pub trait Runtime: Send + Sync {
    fn state(&self, id: &str) -> impl Future<Output = Result<ContainerState, RuntimeError>> + Send;
    fn list(&self) -> impl Future<Output = Result<Vec<ContainerState>, RuntimeError>> + Send;
    fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn checkpoint(
        &self,
        id: &str,
        args: CheckpointArgs<'_>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn restore(
        &self,
        id: &str,
        args: RestoreArgs<'_>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn kill(&self, id: &str, signal: &str)
        -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn delete(
        &self,
        id: &str,
        force: bool,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn resume(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}

/// runc at `binary`, with its state under `root`, using CRIU at `criu`.
#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub criu: PathBuf,
    /// The memory bound CRIU's dumps and restores run in, if any.
    pub bound: Option<std::sync::Arc<ferry_criu::bound::MemoryBound>>,
}

/// Serialises operations that write the host-wide CRIU configuration file, in this
/// process (the lock below serialises processes).
static GLOBAL_CONFIG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The file whose lock serialises the processes that write the host-wide CRIU
/// configuration file (several agents may run on one machine).
const GLOBAL_CONFIG_LOCK: &str = "/run/ferry-criu-runc-conf.lock";

/// Holds the host-wide CRIU configuration file for one operation.
pub struct GlobalConfigLock {
    _file: std::fs::File,
    _guard: tokio::sync::MutexGuard<'static, ()>,
}

impl std::fmt::Debug for GlobalConfigLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GlobalConfigLock")
    }
}

/// Waits until this process may write the host-wide CRIU configuration file.
pub async fn lock_global_config() -> Result<GlobalConfigLock, RuntimeError> {
    let guard = GLOBAL_CONFIG.lock().await;
    let file = tokio::task::spawn_blocking(|| {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(GLOBAL_CONFIG_LOCK)?;
        // SAFETY: flock(2) on a descriptor this closure owns.
        match unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } {
            0 => Ok(f),
            _ => Err(std::io::Error::last_os_error()),
        }
    })
    .await
    .map_err(|e| RuntimeError::io(Path::new(GLOBAL_CONFIG_LOCK), std::io::Error::other(e)))?
    .map_err(|e| RuntimeError::io(Path::new(GLOBAL_CONFIG_LOCK), e))?;
    Ok(GlobalConfigLock {
        _file: file,
        _guard: guard,
    })
}

/// The host-wide CRIU configuration file (`/etc/criu/runc.conf`) holding ferry's lines
/// for one operation of an engine that gives its containers no file of their own
/// (Docker's); what was there before comes back when it is dropped.
#[derive(Debug)]
pub struct GlobalConfig {
    _config: ConfigFile,
    _lock: GlobalConfigLock,
}

impl GlobalConfig {
    pub async fn hold(plan: &CriuOptionPlan) -> Result<Self, RuntimeError> {
        let lock = lock_global_config().await?;
        let config = ConfigFile::write(&CriuConfigTarget::Global, plan)?;
        Ok(Self {
            _config: config,
            _lock: lock,
        })
    }
}

impl Runc {
    pub fn new(root: impl Into<PathBuf>, criu: impl Into<PathBuf>) -> Self {
        Self {
            binary: PathBuf::from("runc"),
            root: root.into(),
            criu: criu.into(),
            bound: None,
        }
    }

    /// A dump or restore that runs short of memory is stopped, never the container: it
    /// runs in the memory bound (when there is one) and is the OOM killer's first
    /// choice. Returns how often helpers reached the bound so far.
    fn bind(&self, cmd: &mut Command) -> Option<u64> {
        ferry_criu::process::prefer_for_oom_killer(cmd);
        let bound = self.bound.as_ref()?;
        ferry_criu::process::join_cgroup(cmd, &bound.procs_file());
        Some(bound.hits())
    }

    /// Runs `work` (a dump or restore in the bound). When CRIU is held at the bound's
    /// limit, `hold` is frozen first, then CRIU is stopped, and `work` ends with its
    /// failure.
    async fn watched<T>(
        &self,
        work: impl std::future::Future<Output = T>,
        hold: Option<&crate::freezer::Freezer>,
    ) -> T {
        let Some(bound) = self.bound.clone() else {
            return work.await;
        };
        let mark = bound.pressure_mark();
        let watch = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                if bound.pressed(mark) {
                    if let Some(f) = hold {
                        if let Err(e) = f.freeze() {
                            tracing::warn!("freezing the container before stopping CRIU: {e}");
                        }
                    }
                    let n = bound.stop_all();
                    tracing::warn!(
                        helpers = n,
                        limit = bound.limit(),
                        "CRIU reached its memory bound: stopped it"
                    );
                    return;
                }
            }
        };
        tokio::pin!(work);
        tokio::select! {
            biased;
            r = &mut work => r,
            () = watch => work.await,
        }
    }

    /// The error of a CRIU that failed at its memory bound (stopped, killed, or refused
    /// memory there), if it did.
    fn out_of_memory(&self, hits_before: Option<u64>, what: &str) -> Option<RuntimeError> {
        let bound = self.bound.as_ref()?;
        (bound.hits() > hits_before?).then(|| RuntimeError::HelperOutOfMemory {
            what: what.to_string(),
            limit: bound.limit(),
        })
    }

    fn base(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c.arg("--criu").arg(&self.criu);
        c.stdin(Stdio::null());
        c.kill_on_drop(false);
        c
    }

    fn check_root(&self) -> Result<(), RuntimeError> {
        if !self.root.is_dir() {
            return Err(RuntimeError::RootMissing(self.root.clone()));
        }
        Ok(())
    }

    /// Runs a prepared command and maps its failure to a typed error that keeps stderr.
    async fn output(&self, mut cmd: Command, what: &str) -> Result<Vec<u8>, RuntimeError> {
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|source| RuntimeError::Spawn {
                program: self.binary.display().to_string(),
                source,
            })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(RuntimeError::CommandFailed {
            command: format!("runc {what}"),
            status: out.status.to_string(),
            stderr: clean_runc_stderr(&stderr),
        })
    }

    /// Runs a command whose container may inherit runc's standard streams (`run -d`,
    /// `restore -d`): they must be /dev/null, because a container holding a pipe would
    /// keep the caller waiting, and one holding a host file cannot be checkpointed. runc's
    /// own errors go to a log file instead, read back on failure.
    async fn detached(&self, mut cmd: Command, log: &Path, what: &str) -> Result<(), RuntimeError> {
        let _ = std::fs::remove_file(log);
        let status = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map_err(|source| RuntimeError::Spawn {
                program: self.binary.display().to_string(),
                source,
            })?;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let _ = std::fs::remove_file(log);
        if status.success() {
            return Ok(());
        }
        Err(RuntimeError::CommandFailed {
            command: format!("runc {what}"),
            status: status.to_string(),
            stderr: clean_runc_stderr(&text),
        })
    }

    /// A command with runc's log going to `log` as JSON lines.
    fn base_logged(&self, log: &Path) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c.arg("--criu").arg(&self.criu);
        c.arg("--log").arg(log).arg("--log-format").arg("json");
        c.stdin(Stdio::null());
        c
    }

    fn map_missing(&self, id: &str, e: RuntimeError) -> RuntimeError {
        match &e {
            RuntimeError::CommandFailed { stderr, .. } if stderr.contains("does not exist") => {
                RuntimeError::NotFound {
                    id: id.to_string(),
                    root: self.root.clone(),
                }
            }
            _ => e,
        }
    }

    fn add_plan_flags(cmd: &mut Command, plan: &CriuOptionPlan) {
        if plan.tcp_established {
            cmd.arg("--tcp-established");
        }
        if plan.file_locks {
            cmd.arg("--file-locks");
        }
        if plan.lazy_pages {
            cmd.arg("--lazy-pages");
        }
    }
}

/// runc prints JSON log lines on failure; keep their messages.
fn clean_runc_stderr(stderr: &str) -> String {
    let msgs: Vec<String> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| l.trim_start_matches("time=").to_string())
        })
        .filter(|l| !l.is_empty())
        .collect();
    msgs.join("; ")
}

/// Writes a CRIU configuration file for one operation, and puts back what was there
/// before when dropped.
#[derive(Debug)]
struct ConfigFile {
    path: Option<PathBuf>,
    previous: Option<Vec<u8>>,
}

impl ConfigFile {
    fn write(target: &CriuConfigTarget, plan: &CriuOptionPlan) -> Result<Self, RuntimeError> {
        let Some(path) = target.path() else {
            return Ok(Self {
                path: None,
                previous: None,
            });
        };
        let previous = std::fs::read(&path).ok();
        if plan.config_lines.is_empty() && previous.is_none() {
            return Ok(Self {
                path: None,
                previous: None,
            });
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
        }
        std::fs::write(&path, plan.config_text()).map_err(|e| RuntimeError::io(&path, e))?;
        Ok(Self {
            path: Some(path),
            previous,
        })
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = match &self.previous {
                Some(old) => std::fs::write(path, old),
                None => std::fs::remove_file(path),
            };
        }
    }
}

impl Runtime for Runc {
    async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        self.check_root()?;
        let mut cmd = self.base();
        cmd.arg("state").arg(id);
        let out = self
            .output(cmd, "state")
            .await
            .map_err(|e| self.map_missing(id, e))?;
        serde_json::from_slice(&out).map_err(|e| RuntimeError::BadOutput {
            program: "runc state".into(),
            detail: e.to_string(),
        })
    }

    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        self.check_root()?;
        let mut cmd = self.base();
        cmd.args(["list", "--format", "json"]);
        let out = self.output(cmd, "list").await?;
        if out.iter().all(u8::is_ascii_whitespace) || out.starts_with(b"null") {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&out).map_err(|e| RuntimeError::BadOutput {
            program: "runc list".into(),
            detail: e.to_string(),
        })
    }

    async fn run_detached(&self, id: &str, bundle: &Path) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.root).map_err(|e| RuntimeError::io(&self.root, e))?;
        let log = self.root.join(format!(".ferry-run-{id}.log"));
        let mut cmd = self.base_logged(&log);
        cmd.arg("run")
            .arg("--detach")
            .arg("--bundle")
            .arg(bundle)
            .arg(id);
        self.detached(cmd, &log, "run").await
    }

    async fn checkpoint(&self, id: &str, args: CheckpointArgs<'_>) -> Result<(), RuntimeError> {
        self.check_root()?;
        let _global = if *args.config_target == CriuConfigTarget::Global {
            Some(lock_global_config().await?)
        } else {
            None
        };
        let _config = ConfigFile::write(args.config_target, args.plan)?;
        let mut cmd = self.base();
        cmd.arg("checkpoint")
            .arg("--image-path")
            .arg(args.images)
            .arg("--work-path")
            .arg(args.work);
        if args.plan.leave_running {
            cmd.arg("--leave-running");
        }
        if let Some(fd) = args.status_fd {
            cmd.arg("--status-fd").arg(fd.to_string());
        }
        Self::add_plan_flags(&mut cmd, args.plan);
        cmd.arg(id);
        ferry_criu::process::inherit_fds(&mut cmd, &args.fds);
        let hits = self.bind(&mut cmd);
        let result = self
            .watched(self.output(cmd, "checkpoint"), args.hold)
            .await
            .map(drop);
        drop(args.fds);
        result.map_err(|e| {
            self.out_of_memory(hits, "dump")
                .unwrap_or_else(|| self.map_missing(id, e))
        })
    }

    async fn restore(&self, id: &str, args: RestoreArgs<'_>) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.root).map_err(|e| RuntimeError::io(&self.root, e))?;
        let _global = if *args.config_target == CriuConfigTarget::Global {
            Some(lock_global_config().await?)
        } else {
            None
        };
        let _config = ConfigFile::write(args.config_target, args.plan)?;
        let log = args.work.join("runc-restore.log");
        let mut cmd = self.base_logged(&log);
        cmd.arg("restore")
            .arg("--detach")
            .arg("--bundle")
            .arg(args.bundle)
            .arg("--image-path")
            .arg(args.images)
            .arg("--work-path")
            .arg(args.work);
        Self::add_plan_flags(&mut cmd, args.plan);
        cmd.arg(id);
        let hits = self.bind(&mut cmd);
        let result = self
            .watched(self.detached(cmd, &log, "restore"), None)
            .await;
        result.map_err(|e| self.out_of_memory(hits, "restore").unwrap_or(e))
    }

    async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.base();
        cmd.arg("kill").arg(id).arg(signal);
        self.output(cmd, "kill")
            .await
            .map(drop)
            .map_err(|e| self.map_missing(id, e))
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut cmd = self.base();
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        self.output(cmd, "delete")
            .await
            .map(drop)
            .map_err(|e| self.map_missing(id, e))
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.base();
        cmd.arg("resume").arg(id);
        self.output(cmd, "resume")
            .await
            .map(drop)
            .map_err(|e| self.map_missing(id, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(binary: &str, root: &Path) -> Runc {
        Runc {
            binary: binary.into(),
            root: root.to_path_buf(),
            criu: "/nonexistent/criu".into(),
            bound: None,
        }
    }

    #[tokio::test]
    async fn a_missing_root_is_reported_before_running_anything() {
        let r = fake("/bin/true", Path::new("/nonexistent/ferry-root"));
        let err = r.state("x").await.unwrap_err();
        assert!(matches!(err, RuntimeError::RootMissing(_)));
        assert!(err.to_string().contains("--runtime-root"));
    }

    #[tokio::test]
    async fn a_failing_runtime_keeps_its_stderr() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("runc");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'container does not exist' >&2\nexit 1\n",
        )
        .unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&script).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let r = fake(script.to_str().unwrap(), d.path());
        let err = r.state("ghost").await.unwrap_err();
        assert!(matches!(err, RuntimeError::NotFound { .. }), "{err}");
        let err = r.resume("ghost").await.unwrap_err();
        assert!(err.to_string().contains("ghost"));
    }

    #[tokio::test]
    async fn false_runtime_is_a_command_failure() {
        let d = tempfile::tempdir().unwrap();
        let r = fake("/bin/false", d.path());
        let err = r.kill("x", "KILL").await.unwrap_err();
        assert!(matches!(err, RuntimeError::CommandFailed { .. }));
    }

    #[tokio::test]
    async fn a_checkpoint_runs_as_the_oom_killer_s_first_choice() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("score");
        let script = d.path().join("runc");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat /proc/self/oom_score_adj > {}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let r = fake(script.to_str().unwrap(), d.path());
        let plan = CriuOptionPlan::default();
        let target = CriuConfigTarget::Disabled;
        r.checkpoint(
            "c",
            CheckpointArgs {
                images: d.path(),
                work: d.path(),
                plan: &plan,
                config_target: &target,
                fds: Vec::new(),
                status_fd: None,
                hold: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "1000");
    }

    #[test]
    fn runc_json_logs_are_reduced_to_their_messages() {
        let s = r#"{"level":"error","msg":"container does not exist","time":"x"}"#;
        assert_eq!(clean_runc_stderr(s), "container does not exist");
    }

    #[test]
    fn config_file_is_put_back_as_it_was() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.conf");
        std::fs::write(&path, "old").unwrap();
        let plan = CriuOptionPlan {
            config_lines: vec!["page-server".into()],
            ..Default::default()
        };
        let target = CriuConfigTarget::Annotation(path.clone());
        {
            let _g = ConfigFile::write(&target, &plan).unwrap();
            assert!(std::fs::read_to_string(&path)
                .unwrap()
                .contains("page-server"));
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        let fresh = d.path().join("new.conf");
        {
            let _g =
                ConfigFile::write(&CriuConfigTarget::Annotation(fresh.clone()), &plan).unwrap();
            assert!(fresh.exists());
        }
        assert!(!fresh.exists());
    }
}
