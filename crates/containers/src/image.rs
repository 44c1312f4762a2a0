//! An engine's image as a shipment: named by a digest that carries the image's id and
//! name, received into one file and loaded into the destination engine's storage.

use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_engine::ports::container::{ContainerError, Shipment, ShipmentSink};
use ferry_types::{FileEntry, FileKind};

/// The shipment's one file: the container's image, as its engine saves it.
pub const IMAGE_FILE: &str = "image.tar";

/// The largest image ferry accepts from a peer.
const MAX_IMAGE: u64 = 64 << 30;

/// The digest of a shipment that carries image `id`, known as `name`, of the engine
/// whose digests start with `prefix` (`podman-image`, `docker-image`).
pub fn digest(prefix: &str, id: &str, name: &str) -> String {
    format!("{prefix}:{id}:{name}")
}

/// The image (id, name) a digest names, if it is one of that engine's: a hex id, and a
/// name of the characters image references are made of.
pub fn parse<'a>(prefix: &str, digest: &'a str) -> Option<(&'a str, &'a str)> {
    let (id, name) = digest
        .strip_prefix(prefix)?
        .strip_prefix(':')?
        .split_once(':')?;
    let id_ok = (12..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    let name_ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    (id_ok && name_ok).then_some((id, name))
}

/// The shipment of an image: saved once into `dir` by `save` (given the file to write)
/// and kept there for the next container of it.
pub fn shipment(
    dir: &Path,
    digest: String,
    save: impl FnOnce(&Path) -> Result<(), ContainerError>,
) -> Result<Shipment, ContainerError> {
    let file = dir.join(IMAGE_FILE);
    if !file.exists() {
        std::fs::create_dir_all(dir).map_err(|e| ContainerError::io(dir, e))?;
        let part = dir.join("image.part");
        let _ = std::fs::remove_file(&part);
        save(&part)?;
        std::fs::rename(&part, &file).map_err(|e| ContainerError::io(&file, e))?;
    }
    let meta = std::fs::metadata(&file).map_err(|e| ContainerError::io(&file, e))?;
    Ok(Shipment {
        digest,
        root: dir.to_path_buf(),
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

/// An engine's image storage, as the sink needs it.
pub trait ImageStore: Send + std::fmt::Debug {
    /// The engine's name, for messages.
    fn engine(&self) -> &'static str;
    /// Loads the images of an archive.
    fn load(&self, archive: &Path) -> Result<(), ContainerError>;
    /// Names image `id` `name` too.
    fn tag(&self, id: &str, name: &str) -> Result<(), ContainerError>;
    /// Whether image `name` is here, and is image `id`.
    fn image_is(&self, name: &str, id: &str) -> bool;
}

/// Receives an image and loads it into the engine's storage.
#[derive(Debug)]
pub struct ImageSink<S: ImageStore> {
    store: S,
    dir: PathBuf,
    id: String,
    name: String,
    file: Option<std::fs::File>,
}

impl<S: ImageStore> ImageSink<S> {
    pub fn new(store: S, dir: &Path, (id, name): (&str, &str)) -> Result<Self, ContainerError> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| ContainerError::io(dir, e))?;
        Ok(Self {
            store,
            dir: dir.to_path_buf(),
            id: id.to_string(),
            name: name.to_string(),
            file: None,
        })
    }
}

impl<S: ImageStore> ShipmentSink for ImageSink<S> {
    fn begin(&mut self, entry: &FileEntry) -> Result<(), ContainerError> {
        if entry.path != IMAGE_FILE || entry.kind != FileKind::File || entry.size > MAX_IMAGE {
            return Err(ContainerError::Refused(format!(
                "a {} shipment holds one file, {IMAGE_FILE}, of at most {MAX_IMAGE} bytes; '{}' is refused",
                self.store.engine(),
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

    /// Loads the image; the container's own namespace is the engine's to make.
    fn store(self: Box<Self>, _netns: &Path) -> Result<(), ContainerError> {
        let path = self.dir.join(IMAGE_FILE);
        let r = self.store.load(&path);
        let _ = std::fs::remove_dir_all(&self.dir);
        r?;
        self.store.tag(&self.id, &self.name)?;
        if !self.store.image_is(&self.name, &self.id) {
            return Err(ContainerError::Failed(format!(
                "the image that arrived does not hold image {}",
                self.id
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_names_an_image_id_and_nothing_else() {
        let id = "2e8edea146ac064578cfbccf80687dee033bbccaea3f9570360d0b61a9d1ed01";
        let d = digest("podman-image", id, "localhost/redis:1");
        assert_eq!(parse("podman-image", &d), Some((id, "localhost/redis:1")));
        assert_eq!(parse("docker-image", &d), None);
        for bad in [
            "podman-image:../../etc",
            "podman-image:",
            "podman-imagex:2e8edea146ac:x",
            "abc",
            "podman-image:zz12345678901:x",
            "podman-image:2e8edea146ac:",
            "podman-image:2e8edea146ac:--all",
            "podman-image:2e8edea146ac:a b",
        ] {
            assert_eq!(parse("podman-image", bad), None, "{bad}");
        }
    }
}
