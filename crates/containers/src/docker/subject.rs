//! A Docker container being moved: runc's container under Docker's containerd (frozen,
//! dumped and killed like any other), with Docker's definition taken at the freeze and
//! its image as the shipment.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ferry_engine::ports::container::{
    ContainerError, DumpPlan, LazyDump, Shipment, ShipmentChanges, Subject,
};
use ferry_types::EngineKind;

use super::netns::Attached;
use super::DockerSettings;
use crate::runc::RuncSubject;

/// What Docker's image digests start with.
pub const DIGEST: &str = "docker-image";

/// The image (id, name) a digest names, if it is one of Docker's.
pub fn digest_image(digest: &str) -> Option<(&str, &str)> {
    crate::image::parse(DIGEST, digest)
}

/// A running Docker container.
#[derive(Debug, Clone)]
pub struct DockerSubject {
    pub(crate) inner: RuncSubject,
    pub(crate) name: String,
    /// The image's id (hex, without `sha256:`) and the name the container was made from.
    pub(crate) image: String,
    pub(crate) image_name: String,
    pub(crate) upper: Option<PathBuf>,
    /// What `docker container inspect` said of it: its definition.
    pub(crate) whole: Arc<serde_json::Value>,
    /// Its network namespace, named while it is looked at.
    pub(crate) netns: Arc<Attached>,
    pub(crate) settings: Arc<DockerSettings>,
}

impl DockerSubject {
    /// runc's view of it: its processes, bundle and network namespace.
    pub fn runc(&self) -> &RuncSubject {
        &self.inner
    }

    /// The name under `/run/netns` of its network namespace while it is looked at.
    pub fn netns_name(&self) -> &str {
        &self.netns.name
    }

    /// Docker's definition of it.
    pub fn definition(&self) -> &serde_json::Value {
        &self.whole
    }

    fn image_dir(&self) -> PathBuf {
        self.settings.staging.join("images").join(&self.image)
    }
}

#[async_trait]
impl Subject for DockerSubject {
    fn name(&self) -> &str {
        &self.name
    }
    fn engine(&self) -> EngineKind {
        EngineKind::Docker
    }
    fn processes(&self) -> Vec<u32> {
        self.inner.processes()
    }
    fn resident_bytes(&self) -> u64 {
        self.inner.resident_bytes()
    }
    fn freeze(&self) -> Result<(), ContainerError> {
        self.inner.freeze()
    }
    fn thaw(&self) -> Result<(), ContainerError> {
        self.inner.thaw()
    }
    fn release_sockets(&self) -> Result<u32, ContainerError> {
        self.inner.release_sockets()
    }
    /// Docker must not start it again when its processes die (a restart policy would):
    /// the policy is set to `no` first.
    fn kill_frozen(&self) {
        let _ = self.settings.docker.run_blocking(&[
            "container",
            "update",
            "--restart",
            "no",
            "--",
            &self.name,
        ]);
        self.inner.kill_frozen()
    }
    fn alive(&self) -> Result<(), ContainerError> {
        self.inner.alive()
    }

    /// The image, saved once per image and kept for the next container of it.
    fn shipment(&self) -> Result<Shipment, ContainerError> {
        let named = !self.image_name.is_empty() && !self.image_name.starts_with("sha256:");
        let which = match named {
            true => self.image_name.clone(),
            false => format!("sha256:{}", self.image),
        };
        crate::image::shipment(
            &self.image_dir(),
            crate::image::digest(DIGEST, &self.image, &which),
            |to| self.settings.docker.save(&which, to),
        )
    }

    fn shipped(&self, _digest: &str) {}

    /// Docker's definition of the container, and what it wrote, now that it is frozen.
    fn shipment_changes(&self, images: &Path) -> Result<ShipmentChanges, ContainerError> {
        super::definition::capture(&self.whole, self.upper.as_deref(), images)?;
        Ok(ShipmentChanges::default())
    }

    async fn checkpoint(&self, plan: &DumpPlan) -> Result<(), ContainerError> {
        self.inner.checkpoint(plan).await
    }

    fn checkpoint_lazy(&self, plan: DumpPlan, page_socket: OwnedFd) -> LazyDump {
        self.inner.checkpoint_lazy(plan, page_socket)
    }

    /// Docker forgets it: its processes are gone already.
    async fn remove(&self) -> Result<(), ContainerError> {
        self.settings.docker.remove(&self.name).await
    }
}
