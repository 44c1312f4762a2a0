//! runc as a container engine: containers in one runc root, each with an OCI bundle.
//!
//! CRIU's options reach CRIU through runc's flags (`--tcp-established`, `--file-locks`,
//! `--lazy-pages`) and, for what runc has no flag for (the network lock, a page-server
//! socket), through the CRIU configuration file the container's `org.criu.config`
//! annotation names; ferry writes it for each operation and puts back what was there.

mod shipment;
mod subject;

use std::path::PathBuf;

use async_trait::async_trait;
use ferry_criu::plan::{CriuConfigTarget, CriuOptionPlan};
use ferry_engine::ports::container::{
    ContainerEngine, ContainerError, RestorePlan, ShipmentSink, Subject,
};
use ferry_runtime::bundle::Bundle;
use ferry_runtime::freezer::Freezer;
use ferry_runtime::{RestoreArgs, Runc, Runtime, RuntimeError};

pub use shipment::{bundle_shipment, DIGEST_FILE};
pub(crate) use subject::kill_all;
pub use subject::RuncSubject;

/// Where this host keeps what runc needs.
#[derive(Debug, Clone)]
pub struct RuncSettings {
    pub runc: Runc,
    /// This host's name, for messages.
    pub host: String,
    /// Where received bundles go (one directory per container).
    pub bundles_dir: PathBuf,
    /// Where the CRIU configuration files of containers go.
    pub criu_conf_dir: PathBuf,
    /// The cgroup parent of this host's containers (unique per agent).
    pub cgroup_parent: String,
    /// What this host agrees to restore from a peer's bundle.
    pub policy: std::sync::Arc<ferry_runtime::policy::RestorePolicy>,
    /// The most a received bundle may hold (`--max-bundle-bytes`).
    pub max_bundle_bytes: u64,
}

impl RuncSettings {
    /// The cgroup a container of this host lives in.
    pub fn cgroups_path(&self, container: &str) -> String {
        format!("{}/{container}", self.cgroup_parent)
    }

    /// The CRIU configuration file of a container.
    pub fn criu_conf(&self, container: &str) -> PathBuf {
        self.criu_conf_dir.join(format!("{container}.conf"))
    }

    pub fn bundle_dir(&self, container: &str) -> PathBuf {
        self.bundles_dir.join(container)
    }

    /// Checks the `config.json` in `dir` against the restore policy.
    /// Only `config.json` is read: the root file system may not be there yet.
    pub fn admit(&self, dir: &std::path::Path) -> Result<(), ContainerError> {
        let path = dir.join("config.json");
        let text = std::fs::read(&path).map_err(|e| ContainerError::io(&path, e))?;
        let config: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| ContainerError::Refused(format!("config.json is not valid JSON: {e}")))?;
        self.policy
            .check(&config)
            .map_err(|r| ContainerError::Refused(r.to_string()))
    }
}

/// runc, driven through its command line.
#[derive(Debug, Clone)]
pub struct RuncEngine {
    pub settings: RuncSettings,
}

pub(crate) fn failed(e: RuntimeError) -> ContainerError {
    ContainerError::Failed(e.to_string())
}

impl RuncEngine {
    pub fn new(settings: RuncSettings) -> Self {
        Self { settings }
    }

    pub fn runc(&self) -> &Runc {
        &self.settings.runc
    }

    /// A container in any state (a frozen one, to resume it or settle an interrupted
    /// migration).
    pub async fn open(&self, name: &str) -> Result<RuncSubject, ContainerError> {
        let state = self.runc().state(name).await.map_err(|e| match e {
            RuntimeError::NotFound { .. } => ContainerError::NotFound {
                name: name.to_string(),
                host: self.settings.host.clone(),
            },
            other => failed(other),
        })?;
        let bundle = Bundle::load(&state.bundle).map_err(failed)?;
        let freezer = Freezer::for_pid(state.pid).map_err(failed)?;
        Ok(RuncSubject::new(
            self.runc().clone(),
            state,
            bundle,
            freezer,
        ))
    }

    /// A running container ferry can move.
    pub async fn running(&self, name: &str) -> Result<RuncSubject, ContainerError> {
        let subject = self.open(name).await?;
        if subject.state().status != "running" {
            return Err(ContainerError::NotRunning {
                name: name.to_string(),
                status: subject.state().status.clone(),
            });
        }
        if subject.config_target() == &CriuConfigTarget::Disabled {
            return Err(ContainerError::Refused(format!(
                "container '{name}' disables CRIU configuration files (empty org.criu.config annotation); ferry needs one to stream its pages"
            )));
        }
        Ok(subject)
    }
}

#[async_trait]
impl ContainerEngine for RuncEngine {
    async fn inspect(&self, name: &str) -> Result<Box<dyn Subject>, ContainerError> {
        Ok(Box::new(self.running(name).await?))
    }

    async fn exists(&self, name: &str) -> bool {
        self.runc().state(name).await.is_ok()
    }

    fn has_shipment(&self, name: &str, digest: &str) -> bool {
        let dir = self.settings.bundle_dir(name);
        let have = std::fs::read_to_string(dir.join(DIGEST_FILE)).unwrap_or_default();
        have.trim() == digest && dir.join("config.json").exists()
    }

    fn receive(&self, name: &str, digest: &str) -> Result<Box<dyn ShipmentSink>, ContainerError> {
        Ok(Box::new(shipment::BundleSink::new(
            &self.settings,
            name,
            digest,
        )?))
    }

    async fn restore(&self, name: &str, plan: &RestorePlan) -> Result<(), ContainerError> {
        let target = CriuConfigTarget::Annotation(self.settings.criu_conf(name));
        let criu = CriuOptionPlan::restore(&plan.criu, &target)
            .map_err(|e| ContainerError::Refused(e.to_string()))?;
        let bundle = self.settings.bundle_dir(name);
        // The last word before runc sees it: the policy may have changed since it arrived.
        self.settings.admit(&bundle)?;
        unreserve(name, &plan.images)?;
        apply_late_changes(name, &plan.images, &bundle)?;
        self.runc()
            .restore(
                name,
                RestoreArgs {
                    images: &plan.images,
                    work: &plan.work,
                    bundle: &bundle,
                    plan: &criu,
                    config_target: &target,
                },
            )
            .await
            .map_err(failed)
    }

    fn kill(&self, name: &str) {
        if let Ok(freezer) = Freezer::for_cgroup(&self.settings.cgroups_path(name)) {
            subject::kill_all(&freezer);
        }
    }

    async fn delete(&self, name: &str) -> Result<(), ContainerError> {
        self.runc().delete(name, true).await.map_err(failed)
    }
}

/// Under the kernel's heuristic overcommit (`vm.overcommit_memory=0`), marks the
/// container's uncommitted reservations `MAP_NORESERVE` so that the restore is charged
/// what the source was ([`ferry_criu::images::reserve`]). Under `1` nothing is charged
/// anyway; under `2` the kernel ignores the flag.
pub(crate) fn unreserve(name: &str, images: &std::path::Path) -> Result<(), ContainerError> {
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if mode.trim() != "0" {
        return Ok(());
    }
    let n = ferry_criu::images::reserve::unreserve_dir(images)
        .map_err(|e| ContainerError::Failed(format!("marking reservations in the images: {e}")))?;
    if n.areas > 0 {
        tracing::info!(
            container = name,
            areas = n.areas,
            bytes = n.bytes,
            "reservations restored without a commit charge, as at the source"
        );
    }
    Ok(())
}

/// Applies what the container wrote after its bundle was sent
/// ([`subject::BUNDLE_DELTA`], [`ferry_runtime::delta`]); the bundle then no longer
/// matches the digest it arrived with.
fn apply_late_changes(
    name: &str,
    images: &std::path::Path,
    bundle: &std::path::Path,
) -> Result<(), ContainerError> {
    let delta = images.join(subject::BUNDLE_DELTA);
    if !delta.exists() {
        return Ok(());
    }
    let n = ferry_runtime::delta::apply_delta(bundle, &delta)
        .map_err(|e| ContainerError::Failed(format!("applying the bundle's late changes: {e}")))?;
    let _ = std::fs::remove_file(bundle.join(DIGEST_FILE));
    let _ = std::fs::remove_file(&delta);
    tracing::info!(
        container = name,
        changed = n.changed,
        removed = n.removed,
        bytes = n.bytes,
        "applied the files the container wrote after its bundle was sent"
    );
    Ok(())
}
