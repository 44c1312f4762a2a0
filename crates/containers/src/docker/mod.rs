//! Docker (with its containerd and runc) as a container engine.
//!
//! At the source a Docker container is a runc container in the runc root Docker's
//! containerd uses: ferry freezes, dumps and kills it there as any other, and at the
//! freeze takes Docker's definition of it (`docker container inspect`) and what it wrote
//! to its root file system ([`definition`]). Its image travels when the destination's
//! Docker lacks it.
//!
//! At the destination ferry creates the same container through Docker's API (same
//! name, configuration, network, address and MAC), writes the layer into it, and starts
//! it from a checkpoint (`docker start --checkpoint`): Docker's containerd has runc
//! restore it, so Docker knows it as its own and `docker ps`, `logs`, `exec`, `stop`
//! and `rm` work on it. Docker copies a checkpoint's directory twice before runc reads
//! it, so the checkpoint Docker is given holds only runc's descriptor list: the host's
//! CRIU configuration file (`/etc/criu/runc.conf`, held for the restore) points CRIU at
//! ferry's images, and carries ferry's options (established TCP connections, the hold
//! lock's action script), which Docker's own checkpoint commands cannot pass.
//!
//! Docker restores only from complete images: post-copy and hybrid are refused.

mod admit;
pub mod api;
pub mod cli;
pub mod definition;
pub mod netns;
mod subject;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use ferry_criu::plan::{CriuConfigTarget, CriuOptionPlan, NetworkLock, RestoreSpec};
use ferry_engine::ports::container::{
    ContainerEngine, ContainerError, RestorePlan, ShipmentSink, Subject,
};
use ferry_runtime::bundle::Bundle;
use ferry_runtime::freezer::Freezer;
use ferry_runtime::{GlobalConfig, Runc, Runtime, RuntimeError};

pub use cli::{Docker, Inspected};
pub use subject::{digest_image, DockerSubject};

/// How this host's agent reaches Docker.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    pub docker: Docker,
    /// runc as Docker's containerd runs it: its root holds the containers' state.
    pub runc: Runc,
    /// This host's name, for messages.
    pub host: String,
    /// Where images wait to be sent, and received ones to be loaded.
    pub staging: PathBuf,
    /// What this host agrees to restore: a definition's `HostConfig` is checked.
    pub policy: std::sync::Arc<ferry_runtime::policy::RestorePolicy>,
}

/// Docker, driven through its command line and its API.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    pub settings: Arc<DockerSettings>,
    root: Arc<OnceLock<PathBuf>>,
}

/// Why post-copy and hybrid cannot move a Docker container.
pub const NO_LAZY: &str = "Docker starts a container from a checkpoint only with complete images ('docker start --checkpoint' has no lazy-pages mode), so post-copy and hybrid cannot move it";

/// The checkpoint ferry gives Docker at the destination.
const CHECKPOINT: &str = "ferry";

/// What the action script leaves once the hold lock is on.
const LOCKED: &str = "hold.locked";

impl DockerEngine {
    pub fn new(settings: DockerSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            root: Arc::default(),
        }
    }

    pub fn docker(&self) -> &Docker {
        &self.settings.docker
    }

    /// Where the daemon keeps its state (asked once).
    pub fn root_dir(&self) -> Result<PathBuf, ContainerError> {
        if let Some(r) = self.root.get() {
            return Ok(r.clone());
        }
        let r = self.docker().root_dir()?;
        let _ = self.root.set(r.clone());
        Ok(r)
    }

    /// The running container `name`, if Docker has one by that name.
    pub async fn running(&self, name: &str) -> Result<DockerSubject, ContainerError> {
        self.open(name, true).await
    }

    /// Container `name` in any state runc knows (a frozen one, to resume it), or only a
    /// running one; refused when its address and connections could not follow it.
    pub async fn open(&self, name: &str, running: bool) -> Result<DockerSubject, ContainerError> {
        let not_found = || ContainerError::NotFound {
            name: name.to_string(),
            host: self.settings.host.clone(),
        };
        let (c, whole) = self.docker().inspect(name).await?.ok_or_else(not_found)?;
        let status = match c.state.status.as_str() {
            // Docker calls a frozen container paused.
            "paused" if !running => "running",
            s => s,
        };
        if status != "running" {
            return Err(ContainerError::NotRunning {
                name: name.to_string(),
                status: c.state.status,
            });
        }
        if let Some(why) = definition::unfit(&whole) {
            return Err(ContainerError::Refused(format!(
                "Docker's container '{name}' cannot move with its connections: {why}"
            )));
        }
        let state = self.settings.runc.state(&c.id).await.map_err(|e| match e {
            RuntimeError::NotFound { .. } => ContainerError::Refused(format!(
                "Docker's container '{name}' is not in runc's root {}; ferry moves Docker containers that run with runc (give the agent --docker-runc-root)",
                self.settings.runc.root.display()
            )),
            other => ContainerError::Failed(other.to_string()),
        })?;
        let mut bundle =
            Bundle::load(&state.bundle).map_err(|e| ContainerError::Failed(e.to_string()))?;
        let freezer =
            Freezer::for_pid(state.pid).map_err(|e| ContainerError::Failed(e.to_string()))?;
        let sandbox = c
            .network
            .as_ref()
            .map(|n| PathBuf::from(&n.sandbox_key))
            .filter(|p| p.is_absolute())
            .ok_or_else(|| {
                ContainerError::Refused(format!(
                    "Docker names no network namespace for container '{name}'"
                ))
            })?;
        let netns = netns::Attached::new(&sandbox, &c.id)?;
        // ferry's view of its bundle names the namespace (runc's file is left alone).
        bundle.set_netns_path(&ferry_netns::netns_path(&netns.name).to_string_lossy());
        let inner =
            crate::runc::RuncSubject::new(self.settings.runc.clone(), state, bundle, freezer);
        Ok(DockerSubject {
            inner,
            name: c.short_name().to_string(),
            image: c.image.trim_start_matches("sha256:").to_string(),
            image_name: c.config.image.clone(),
            upper: c.upper_dir(),
            whole: Arc::new(whole),
            netns: Arc::new(netns),
            settings: self.settings.clone(),
        })
    }

    /// The network namespace Docker made for container `name`.
    pub async fn netns_of(&self, name: &str) -> Option<PathBuf> {
        let out = self
            .docker()
            .run(&[
                "container",
                "inspect",
                "--format",
                "{{.NetworkSettings.SandboxKey}}",
                "--",
                name,
            ])
            .await
            .ok()?;
        let p = PathBuf::from(out.trim());
        (p.is_absolute() && p.exists()).then_some(p)
    }

    /// ferry's options for CRIU while Docker restores the container: its images where
    /// ferry keeps them, and the action script that locks the namespace Docker made.
    fn criu_plan(&self, plan: &RestorePlan) -> Result<CriuOptionPlan, ContainerError> {
        let spec = RestoreSpec {
            network_lock: NetworkLock::Skip,
            ..plan.criu.clone()
        };
        let mut options = CriuOptionPlan::restore(&spec, &CriuConfigTarget::Global)
            .map_err(|e| ContainerError::Refused(e.to_string()))?;
        let hook = crate::hold::write_lock_hook(&plan.work, LOCKED)?;
        let lines = &mut options.config_lines;
        lines.push(format!("images-dir {}", plan.images.display()));
        lines.push(format!("action-script {}", hook.display()));
        if plan.criu.tcp_established {
            lines.push("tcp-established".into());
        }
        if plan.criu.file_locks {
            lines.push("file-locks".into());
        }
        Ok(options)
    }

    /// Creates the container again from the definition that arrived; returns its id.
    async fn create(
        &self,
        name: &str,
        whole: &serde_json::Value,
    ) -> Result<String, ContainerError> {
        let body = definition::create_body(whole)?;
        let socket = self.settings.docker.socket.clone();
        let path = format!("/containers/create?name={name}");
        let answer =
            tokio::task::spawn_blocking(move || api::request(&socket, "POST", &path, Some(&body)))
                .await
                .map_err(|e| ContainerError::Failed(e.to_string()))??;
        if answer.status != 201 {
            return Err(ContainerError::Failed(format!(
                "Docker on {} did not create container '{name}': {}",
                self.settings.host,
                answer.message()
            )));
        }
        serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["Id"].as_str().map(str::to_string))
            .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                ContainerError::Failed("Docker created a container without an id".into())
            })
    }

    /// Writes the layer into the new container and gives Docker the checkpoint: runc's
    /// descriptor list only (CRIU reads the rest where ferry keeps it).
    async fn prepare(
        &self,
        name: &str,
        id: &str,
        images: &Path,
    ) -> Result<PathBuf, ContainerError> {
        let (c, whole) = self.docker().inspect(name).await?.ok_or_else(|| {
            ContainerError::Failed(format!(
                "Docker lost container '{name}' it had just created"
            ))
        })?;
        if let Some(upper) = c.upper_dir() {
            crate::layer::apply(
                &upper,
                &images.join(definition::LAYER),
                &images.join(definition::DELETED),
            )?;
        }
        let container_dir = self.root_dir()?.join("containers").join(id);
        // Docker's json-file log, which it appends to: what the container logged so far.
        let json_file = matches!(
            whole["HostConfig"]["LogConfig"]["Type"].as_str(),
            Some("json-file") | Some("") | None
        );
        let log = images.join(definition::LOG);
        if json_file && log.exists() {
            let to = container_dir.join(format!("{id}-json.log"));
            std::fs::copy(&log, &to).map_err(|e| ContainerError::io(&to, e))?;
        }
        let dir = container_dir.join("checkpoints").join(CHECKPOINT);
        std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io(&dir, e))?;
        let from = images.join("descriptors.json");
        std::fs::copy(&from, dir.join("descriptors.json"))
            .map_err(|e| ContainerError::io(&from, e))?;
        Ok(dir)
    }

    /// What a failed restore left: CRIU's log for ferry's diagnosis, and the container.
    async fn after_failed_restore(&self, name: &str, id: Option<&str>, work: &Path) {
        if let Some(id) = id {
            let exec_root = self.settings.runc.root.parent().and_then(Path::parent);
            if let Some(exec) = exec_root {
                let log = exec
                    .join("containerd/daemon/io.containerd.runtime.v2.task/moby")
                    .join(id)
                    .join("work/restore.log");
                let _ = std::fs::copy(log, work.join("restore.log"));
            }
        }
        let _ = self.docker().remove(name).await;
    }

    async fn restore_created(
        &self,
        name: &str,
        id: &str,
        plan: &RestorePlan,
    ) -> Result<(), ContainerError> {
        let checkpoint = self.prepare(name, id, &plan.images).await?;
        let options = self.criu_plan(plan)?;
        let held = GlobalConfig::hold(&options)
            .await
            .map_err(|e| ContainerError::Failed(e.to_string()))?;
        let r = self
            .docker()
            .run(&["container", "start", "--checkpoint", CHECKPOINT, "--", name])
            .await;
        drop(held);
        let _ = std::fs::remove_dir_all(&checkpoint);
        r.map(drop)
    }
}

#[async_trait]
impl ContainerEngine for DockerEngine {
    async fn inspect(&self, name: &str) -> Result<Box<dyn Subject>, ContainerError> {
        Ok(Box::new(self.running(name).await?))
    }

    async fn exists(&self, name: &str) -> bool {
        self.docker().exists(name).await
    }

    fn restores_lazily(&self) -> bool {
        false
    }

    fn has_shipment(&self, _name: &str, digest: &str) -> bool {
        digest_image(digest).is_some_and(|(id, name)| self.docker().image_is(name, id))
    }

    fn receive(&self, name: &str, digest: &str) -> Result<Box<dyn ShipmentSink>, ContainerError> {
        let image = digest_image(digest).ok_or_else(|| {
            ContainerError::Refused(format!("'{digest}' does not name a Docker image"))
        })?;
        Ok(Box::new(crate::image::ImageSink::new(
            self.docker().clone(),
            &self.settings.staging.join("in").join(name),
            image,
        )?))
    }

    async fn restore(&self, name: &str, plan: &RestorePlan) -> Result<(), ContainerError> {
        if plan.criu.lazy_pages {
            return Err(ContainerError::Refused(NO_LAZY.into()));
        }
        let whole = definition::read(&plan.images)?;
        let named = definition::name_of(&whole).unwrap_or_default();
        if named != name {
            return Err(ContainerError::Refused(format!(
                "the definition that arrived is of container '{named}', not '{name}'"
            )));
        }
        // Before Docker creates anything from it.
        admit::admit(&whole, &self.settings.policy)
            .map_err(|r| ContainerError::Refused(r.to_string()))?;
        crate::runc::unreserve(name, &plan.images)?;
        let id = match self.create(name, &whole).await {
            Ok(id) => id,
            Err(e) => {
                self.after_failed_restore(name, None, &plan.work).await;
                return Err(e);
            }
        };
        if let Err(e) = self.restore_created(name, &id, plan).await {
            self.after_failed_restore(name, Some(&id), &plan.work).await;
            return Err(e);
        }
        if !plan.work.join(LOCKED).exists() {
            tracing::warn!(
                container = name,
                "CRIU did not run the action script that holds the network lock: the container was reachable before the commit"
            );
        }
        Ok(())
    }

    fn kill(&self, name: &str) {
        let pid = self
            .docker()
            .run_blocking(&[
                "container",
                "inspect",
                "--format",
                "{{.State.Pid}}",
                "--",
                name,
            ])
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|p| *p > 0);
        let _ = self
            .docker()
            .run_blocking(&["container", "update", "--restart", "no", "--", name]);
        if let Some(freezer) = pid.and_then(|p| Freezer::for_pid(p).ok()) {
            crate::runc::kill_all(&freezer);
        }
    }

    async fn delete(&self, name: &str) -> Result<(), ContainerError> {
        self.docker().remove(name).await
    }
}
