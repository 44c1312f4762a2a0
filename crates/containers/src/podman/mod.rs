//! Podman (rootful, with runc) as a container engine.
//!
//! At the source a Podman container is a runc container in the runc root Podman uses:
//! ferry freezes, dumps and kills it there as any other, and at the freeze takes what
//! Podman's own `container checkpoint --export` would hold besides CRIU's images
//! ([`definition`]). Its image travels when the destination's storage lacks it.
//!
//! At the destination `podman container restore --import` re-creates the container
//! under the same name and id from that definition, with CRIU's images linked into its
//! archive (not copied), so Podman knows it as its own: `podman ps`, `logs`, `exec`,
//! `stop` and `rm` work on it. CRIU reads ferry's options from a configuration file
//! named by the container's `org.criu.config` annotation; an action script puts
//! ferry's hold lock on the namespace Podman made before a socket is restored, and the
//! network port lifts it at the commit.
//!
//! Podman restores only from complete images: post-copy and hybrid are refused.

mod admit;
pub mod bolt;
pub mod cli;
pub mod definition;
mod sink;
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
use ferry_runtime::{Runc, Runtime, RuntimeError};

pub use cli::{Inspected, Podman, Store};
pub use subject::{digest_image, image_digest, PodmanSubject};

/// How this host's agent reaches Podman.
#[derive(Debug, Clone)]
pub struct PodmanSettings {
    pub podman: Podman,
    /// runc as Podman runs it: its root holds the containers' state.
    pub runc: Runc,
    /// This host's name, for messages.
    pub host: String,
    /// Where images wait to be sent, and received ones to be loaded.
    pub staging: PathBuf,
    /// Where the CRIU configuration files of restored containers go.
    pub criu_conf_dir: PathBuf,
    /// The cgroup parent of containers restored here, instead of the one they had.
    pub cgroup_parent: Option<String>,
    /// What a container that arrives may do on this host.
    pub policy: std::sync::Arc<ferry_runtime::policy::RestorePolicy>,
}

/// Podman, driven through its command line.
#[derive(Debug, Clone)]
pub struct PodmanEngine {
    pub settings: Arc<PodmanSettings>,
    store: Arc<OnceLock<Store>>,
}

/// Why post-copy and hybrid cannot move a Podman container.
pub const NO_LAZY: &str = "Podman restores a container only from complete images ('podman container restore' has no lazy-pages mode), so post-copy and hybrid cannot move it";

impl PodmanEngine {
    pub fn new(settings: PodmanSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            store: Arc::default(),
        }
    }

    pub fn podman(&self) -> &Podman {
        &self.settings.podman
    }

    /// Where this host's Podman keeps its state (asked once).
    pub fn store(&self) -> Result<Store, ContainerError> {
        if let Some(s) = self.store.get() {
            return Ok(s.clone());
        }
        let s = self.podman().store()?;
        let _ = self.store.set(s.clone());
        Ok(s)
    }

    /// The running container `name`, if Podman has one by that name.
    pub async fn running(&self, name: &str) -> Result<PodmanSubject, ContainerError> {
        self.open(name, true).await
    }

    /// Container `name` in any state runc knows (a frozen one, to resume it), or only a
    /// running one.
    pub async fn open(&self, name: &str, running: bool) -> Result<PodmanSubject, ContainerError> {
        let not_found = || ContainerError::NotFound {
            name: name.to_string(),
            host: self.settings.host.clone(),
        };
        let c = self.podman().inspect(name).await?.ok_or_else(not_found)?;
        if running && c.state.status != "running" {
            return Err(ContainerError::NotRunning {
                name: name.to_string(),
                status: c.state.status,
            });
        }
        let state = self.settings.runc.state(&c.id).await.map_err(|e| match e {
            RuntimeError::NotFound { .. } => ContainerError::Refused(format!(
                "Podman's container '{name}' is not in runc's root {}; ferry moves Podman containers that run with runc (give the agent --podman-runc-root)",
                self.settings.runc.root.display()
            )),
            other => ContainerError::Failed(other.to_string()),
        })?;
        let bundle =
            Bundle::load(&state.bundle).map_err(|e| ContainerError::Failed(e.to_string()))?;
        let freezer =
            Freezer::for_pid(state.pid).map_err(|e| ContainerError::Failed(e.to_string()))?;
        let upper = c
            .graph_driver
            .as_ref()
            .filter(|g| g.name == "overlay")
            .and_then(|g| g.data.get("UpperDir"))
            .map(PathBuf::from);
        Ok(PodmanSubject {
            inner: crate::runc::RuncSubject::new(
                self.settings.runc.clone(),
                state,
                bundle,
                freezer,
            ),
            name: c.name,
            image: c.image,
            image_name: c.image_name,
            upper,
            store: self.store()?,
            settings: self.settings.clone(),
        })
    }

    /// The network namespace Podman made for container `name`, read from its database
    /// (a file read, where asking Podman takes tens of milliseconds).
    pub fn netns_of(&self, name: &str) -> Option<PathBuf> {
        let store = self.store().ok()?;
        let db = bolt::Bolt::open(&store.database()).ok()?;
        let root = db.root();
        let id = root
            .bucket(b"name-registry")
            .ok()??
            .value(name.as_bytes())
            .ok()??;
        let ctr = root.bucket(b"ctr").ok()??.bucket(id).ok()??;
        let path = PathBuf::from(String::from_utf8_lossy(ctr.value(b"netns").ok()??).into_owned());
        (path.is_absolute() && path.exists()).then_some(path)
    }

    fn criu_conf(&self, name: &str) -> PathBuf {
        self.settings
            .criu_conf_dir
            .join(format!("podman-{name}.conf"))
    }

    /// ferry's options for CRIU, in the file the restored container's annotation names,
    /// with the action script that locks the namespace Podman made.
    fn write_criu_conf(&self, name: &str, plan: &RestorePlan) -> Result<PathBuf, ContainerError> {
        let conf = self.criu_conf(name);
        let spec = RestoreSpec {
            network_lock: NetworkLock::Skip,
            ..plan.criu.clone()
        };
        let target = CriuConfigTarget::Annotation(conf.clone());
        let options = CriuOptionPlan::restore(&spec, &target)
            .map_err(|e| ContainerError::Refused(e.to_string()))?;
        let hook = crate::hold::write_lock_hook(&plan.work, LOCKED)?;
        let mut lines = options.config_lines;
        lines.push(format!("action-script {}", hook.display()));
        std::fs::create_dir_all(&self.settings.criu_conf_dir)
            .map_err(|e| ContainerError::io(&self.settings.criu_conf_dir, e))?;
        std::fs::write(&conf, lines.join("\n") + "\n").map_err(|e| ContainerError::io(&conf, e))?;
        Ok(conf)
    }

    /// What Podman's failed restore left: CRIU's log for ferry's diagnosis, and the
    /// container it may have created.
    async fn after_failed_restore(&self, name: &str, images: &Path, work: &Path) {
        if let (Ok(store), Ok(config)) = (
            self.store(),
            std::fs::read(images.join("podman-config.img")),
        ) {
            let id = serde_json::from_slice::<serde_json::Value>(&config)
                .ok()
                .and_then(|c| c["id"].as_str().map(str::to_string))
                .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()));
            if let Some(id) = id {
                let log = store
                    .graph_root
                    .join("overlay-containers")
                    .join(id)
                    .join("userdata/restore.log");
                let _ = std::fs::copy(log, work.join("restore.log"));
            }
        }
        let _ = self.podman().remove(name).await;
    }
}

/// What the action script leaves once the hold lock is on.
const LOCKED: &str = "hold.locked";

#[async_trait]
impl ContainerEngine for PodmanEngine {
    async fn inspect(&self, name: &str) -> Result<Box<dyn Subject>, ContainerError> {
        Ok(Box::new(self.running(name).await?))
    }

    async fn exists(&self, name: &str) -> bool {
        self.podman().exists(name).await
    }

    fn restores_lazily(&self) -> bool {
        false
    }

    fn has_shipment(&self, _name: &str, digest: &str) -> bool {
        digest_image(digest).is_some_and(|(id, name)| self.podman().image_is(name, id))
    }

    fn receive(&self, name: &str, digest: &str) -> Result<Box<dyn ShipmentSink>, ContainerError> {
        let image = digest_image(digest).ok_or_else(|| {
            ContainerError::Refused(format!("'{digest}' does not name a Podman image"))
        })?;
        Ok(Box::new(crate::image::ImageSink::new(
            self.podman().clone(),
            &self.settings.staging.join("in").join(name),
            image,
        )?))
    }

    async fn restore(&self, name: &str, plan: &RestorePlan) -> Result<(), ContainerError> {
        if plan.criu.lazy_pages {
            return Err(ContainerError::Refused(NO_LAZY.into()));
        }
        let named = definition::name_in(&plan.images)?;
        if named != name {
            return Err(ContainerError::Refused(format!(
                "the definition that arrived is of container '{named}', not '{name}'"
            )));
        }
        crate::runc::unreserve(name, &plan.images)?;
        let conf = self.write_criu_conf(name, plan)?;
        let store = self.store()?;
        let dest = definition::Destination {
            store: &store,
            criu_conf: &conf,
            cgroup_parent: self.settings.cgroup_parent.as_deref(),
            policy: &self.settings.policy,
        };
        let archive = definition::assemble(&plan.images, &plan.work, &dest)?;
        let archive = archive.to_string_lossy();
        let mut args = vec!["container", "restore", "--import", &archive];
        if plan.criu.tcp_established {
            args.push("--tcp-established");
        }
        if plan.criu.file_locks {
            args.push("--file-locks");
        }
        let r = self.podman().run(&args).await;
        // The file stays named by the container's annotation: emptied, so that CRIU
        // finds no script of a session that is over (Podman's own checkpoints read it).
        let _ = std::fs::write(&conf, "");
        if let Err(e) = r {
            self.after_failed_restore(name, &plan.images, &plan.work)
                .await;
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
            .podman()
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
        if let Some(freezer) = pid.and_then(|p| Freezer::for_pid(p).ok()) {
            crate::runc::kill_all(&freezer);
        }
    }

    async fn delete(&self, name: &str) -> Result<(), ContainerError> {
        self.podman().remove(name).await
    }
}
