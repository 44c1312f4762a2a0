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
use ferry_types::{EngineKind, FileEntry, FileKind};

use super::cli::Store;
use super::definition::{capture, Source};
use super::PodmanSettings;
use crate::runc::RuncSubject;

/// The shipment's one file: the container's image, as Podman saves it.
pub const IMAGE_FILE: &str = "image.tar";

/// The digest of a shipment that carries image `id`, known as `name`.
pub fn image_digest(id: &str, name: &str) -> String {
    format!("podman-image:{id}:{name}")
}

/// The image (id, name) a digest names, if it is one: a hex id, and a name of the
/// characters image references are made of.
pub fn digest_image(digest: &str) -> Option<(&str, &str)> {
    let (id, name) = digest.strip_prefix("podman-image:")?.split_once(':')?;
    let id_ok = (12..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    let name_ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    (id_ok && name_ok).then_some((id, name))
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
        let dir = self.image_dir();
        let file = dir.join(IMAGE_FILE);
        if !file.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io(&dir, e))?;
            let part = dir.join("image.part");
            let _ = std::fs::remove_file(&part);
            self.settings.podman.save(&self.image, &part)?;
            std::fs::rename(&part, &file).map_err(|e| ContainerError::io(&file, e))?;
        }
        let meta = std::fs::metadata(&file).map_err(|e| ContainerError::io(&file, e))?;
        Ok(Shipment {
            digest: image_digest(&self.image, &self.image_name),
            root: dir,
            entries: vec![FileEntry {
                path: IMAGE_FILE.into(),
                kind: FileKind::File,
                mode: 0o600,
                size: meta.len(),
                target: None,
                mtime: 0,
            }],
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_names_an_image_id_and_nothing_else() {
        let id = "2e8edea146ac064578cfbccf80687dee033bbccaea3f9570360d0b61a9d1ed01";
        let d = image_digest(id, "localhost/redis:1");
        assert_eq!(digest_image(&d), Some((id, "localhost/redis:1")));
        for bad in [
            "podman-image:../../etc",
            "podman-image:",
            "abc",
            "podman-image:zz12345678901:x",
            "podman-image:2e8edea146ac:",
            "podman-image:2e8edea146ac:--all",
            "podman-image:2e8edea146ac:a b",
        ] {
            assert_eq!(digest_image(bad), None, "{bad}");
        }
    }
}
