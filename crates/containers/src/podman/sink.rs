//! Receives a Podman image at the destination and loads it into Podman's storage.

use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_engine::ports::container::{ContainerError, ShipmentSink};
use ferry_types::{FileEntry, FileKind};

use super::cli::Podman;
use super::subject::IMAGE_FILE;

/// The largest image ferry accepts from a peer.
const MAX_IMAGE: u64 = 64 << 30;

pub(crate) struct ImageSink {
    podman: Podman,
    dir: PathBuf,
    id: String,
    name: String,
    file: Option<std::fs::File>,
}

impl ImageSink {
    pub(crate) fn new(
        podman: Podman,
        dir: &Path,
        (id, name): (&str, &str),
    ) -> Result<Self, ContainerError> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| ContainerError::io(dir, e))?;
        Ok(Self {
            podman,
            dir: dir.to_path_buf(),
            id: id.to_string(),
            name: name.to_string(),
            file: None,
        })
    }
}

impl ShipmentSink for ImageSink {
    fn begin(&mut self, entry: &FileEntry) -> Result<(), ContainerError> {
        if entry.path != IMAGE_FILE || entry.kind != FileKind::File || entry.size > MAX_IMAGE {
            return Err(ContainerError::Refused(format!(
                "a Podman shipment holds one file, {IMAGE_FILE}, of at most {MAX_IMAGE} bytes; '{}' is refused",
                entry.path
            )));
        }
        let path = self.dir.join(IMAGE_FILE);
        let f = std::fs::File::create(&path).map_err(|e| ContainerError::io(&path, e))?;
        self.file = Some(f);
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<(), ContainerError> {
        match self.file.as_mut() {
            Some(f) => f
                .write_all(data)
                .map_err(|e| ContainerError::io(&self.dir, e)),
            None => Err(ContainerError::Failed("data without a file".into())),
        }
    }

    fn end_file(&mut self) -> Result<(), ContainerError> {
        self.file = None;
        Ok(())
    }

    /// Loads the image; the container's own namespace is Podman's to make.
    fn store(self: Box<Self>, _netns: &Path) -> Result<(), ContainerError> {
        let path = self.dir.join(IMAGE_FILE);
        let r = self.podman.load(&path);
        let _ = std::fs::remove_dir_all(&self.dir);
        r?;
        self.podman.tag(&self.id, &self.name)?;
        if !self.podman.image_is(&self.name, &self.id) {
            return Err(ContainerError::Failed(format!(
                "the image that arrived does not hold image {}",
                self.id
            )));
        }
        Ok(())
    }
}
