//! A Podman container being moved: runc's container under Podman (frozen, dumped and
//! killed like any other), with Podman's definition taken at the freeze and its image
//! as the shipment.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ferry_engine::ports::container::{
    ContainerError, DumpPlan, LazyDump, Shipment, ShipmentChanges, Subject,
};
use ferry_types::EngineKind;

use super::cli::Store;
use super::definition::{capture, Source};
use super::PodmanSettings;
use crate::runc::RuncSubject;

/// What Podman's image digests start with.
pub const DIGEST: &str = "podman-image";

/// The digest of a shipment that carries image `id`, known as `name`.
pub fn image_digest(id: &str, name: &str) -> String {
    crate::image::digest(DIGEST, id, name)
}

/// The image (id, name) a digest names, if it is one of Podman's.
pub fn digest_image(digest: &str) -> Option<(&str, &str)> {
    crate::image::parse(DIGEST, digest)
}

/// A running Podman container.
#[derive(Debug, Clone)]
pub struct PodmanSubject {
    pub(crate) inner: RuncSubject,
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) image_name: String,
    pub(crate) upper: Option<PathBuf>,
    pub(crate) store: Store,
    pub(crate) settings: Arc<PodmanSettings>,
}

impl PodmanSubject {
    /// runc's view of it: its processes, bundle and network namespace.
    pub fn runc(&self) -> &RuncSubject {
        &self.inner
    }

    /// Where the source's Podman keeps its state.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn image_dir(&self) -> PathBuf {
        self.settings.staging.join("images").join(&self.image)
    }
}

#[async_trait]
impl Subject for PodmanSubject {
    fn name(&self) -> &str {
        &self.name
    }
    fn engine(&self) -> EngineKind {
        EngineKind::Podman
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
    fn kill_frozen(&self) {
        self.inner.kill_frozen()
    }
    fn alive(&self) -> Result<(), ContainerError> {
        self.inner.alive()
    }

    /// The image, saved once per image and kept for the next container of it.
    fn shipment(&self) -> Result<Shipment, ContainerError> {
        crate::image::shipment(
            &self.image_dir(),
            image_digest(&self.image, &self.image_name),
            |to| self.settings.podman.save(&self.image, to),
        )
    }

    fn shipped(&self, _digest: &str) {}

    /// Podman's definition of the container, as it is now that it is frozen.
    fn shipment_changes(&self, images: &Path) -> Result<ShipmentChanges, ContainerError> {
        capture(
            &Source {
                id: &self.inner.state().id,
                store: &self.store,
                bundle: &self.inner.bundle().dir,
                upper: self.upper.as_deref(),
            },
            images,
        )?;
        Ok(ShipmentChanges::default())
    }

    async fn checkpoint(&self, plan: &DumpPlan) -> Result<(), ContainerError> {
        self.inner.checkpoint(plan).await
    }

    fn checkpoint_lazy(&self, plan: DumpPlan, page_socket: OwnedFd) -> LazyDump {
        self.inner.checkpoint_lazy(plan, page_socket)
    }

    /// Podman forgets it: its processes are gone already.
    async fn remove(&self) -> Result<(), ContainerError> {
        self.settings.podman.remove(&self.name).await
    }
}
