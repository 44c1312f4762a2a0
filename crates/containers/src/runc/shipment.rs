//! What travels for a runc container: its OCI bundle (`config.json` and the root file
//! system, bind mounts excluded), checked and unpacked into a staging directory at the
//! destination, then pointed at the destination's namespace and cgroup.

use std::path::{Path, PathBuf};

use ferry_engine::ports::container::{ContainerError, Shipment, ShipmentSink};
use ferry_runtime::bundle::{Bundle, CRIU_CONFIG_ANNOTATION};
use ferry_runtime::manifest::{list_bundle, IncomingFile, Unpacker, OUTSIDE_ROOTFS};
use ferry_types::FileEntry;

use super::{failed, RuncSettings};

/// Written in a bundle directory: the digest of the bundle both hosts hold.
pub const DIGEST_FILE: &str = ".ferry-digest";

/// The bundle's files, and the digest the destination compares with the one it holds.
/// A root file system outside the bundle directory is read through a view: a directory
/// of two links, `config.json` and `rootfs`, so that every entry is a path under one root.
pub fn bundle_shipment(bundle: &Bundle) -> Result<Shipment, ContainerError> {
    let (mut entries, digest) = list_bundle(bundle).map_err(failed)?;
    let root = if bundle.rootfs_outside() {
        let dir = view(bundle)?;
        // config.json travels as the view has it.
        let config = dir.join("config.json");
        let size = std::fs::metadata(&config)
            .map_err(|e| ContainerError::io(&config, e))?
            .len();
        if let Some(e) = entries.iter_mut().find(|e| e.path == "config.json") {
            e.size = size;
        }
        dir
    } else {
        bundle.dir.clone()
    };
    Ok(Shipment {
        digest,
        root,
        entries,
    })
}

/// The view of a bundle whose root file system is elsewhere (made again each time):
/// its `config.json` points at the `rootfs` beside it, as it will at the destination,
/// whose restore policy takes only a root inside the bundle.
fn view(bundle: &Bundle) -> Result<PathBuf, ContainerError> {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bundle.dir.hash(&mut h);
    let dir = std::env::temp_dir().join(format!("ferry-view-{:016x}", h.finish()));
    let io = |p: &Path, e| ContainerError::io(p, e);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let link = dir.join(OUTSIDE_ROOTFS);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(bundle.rootfs(), &link).map_err(|e| io(&link, e))?;
    let mut shipped = Bundle {
        dir: dir.clone(),
        config: bundle.config.clone(),
    };
    shipped.set_root_path(OUTSIDE_ROOTFS);
    let _ = std::fs::remove_file(dir.join("config.json"));
    shipped.save().map_err(failed)?;
    Ok(dir)
}

/// A bundle arriving at the destination.
pub(crate) struct BundleSink {
    settings: RuncSettings,
    container: String,
    digest: String,
    staging: PathBuf,
    unpacker: Option<Unpacker>,
    current: Option<IncomingFile>,
    /// Whether the file arriving is `config.json`, checked as soon as it is whole.
    config_arriving: bool,
    /// Bytes announced so far.
    bytes: u64,
    stored: bool,
}

impl BundleSink {
    pub(crate) fn new(
        settings: &RuncSettings,
        container: &str,
        digest: &str,
    ) -> Result<Self, ContainerError> {
        let staging = settings.bundles_dir.join(format!(".{container}.incoming"));
        Ok(Self {
            settings: settings.clone(),
            container: container.to_string(),
            digest: digest.to_string(),
            staging,
            unpacker: None,
            current: None,
            config_arriving: false,
            bytes: 0,
            stored: false,
        })
    }

    fn unpacker(&mut self) -> Result<&Unpacker, ContainerError> {
        if self.unpacker.is_none() {
            let _ = std::fs::remove_dir_all(&self.staging);
            self.unpacker = Some(Unpacker::new(&self.staging).map_err(failed)?);
        }
        self.unpacker
            .as_ref()
            .ok_or_else(|| ContainerError::Failed("no unpacker".into()))
    }
}

impl ShipmentSink for BundleSink {
    fn begin(&mut self, entry: &FileEntry) -> Result<(), ContainerError> {
        self.bytes = self.bytes.saturating_add(entry.size);
        let cap = self.settings.max_bundle_bytes;
        if self.bytes > cap {
            return Err(ContainerError::Refused(format!(
                "the bundle of {} holds more than {} MiB, the most {} takes (its agent's --max-bundle-bytes)",
                self.container,
                cap >> 20,
                self.settings.host
            )));
        }
        self.current = self.unpacker()?.begin(entry).map_err(failed)?;
        self.config_arriving = entry.path == "config.json";
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<(), ContainerError> {
        match self.current.as_mut() {
            Some(f) => f.write(data).map_err(failed),
            None => Err(ContainerError::Failed("data without a file".into())),
        }
    }

    fn end_file(&mut self) -> Result<(), ContainerError> {
        if let Some(f) = self.current.take() {
            f.finish().map_err(failed)?;
        }
        // The sender lists config.json first: a bundle the policy refuses is refused
        // before its root file system arrives.
        if std::mem::take(&mut self.config_arriving) {
            self.settings.admit(&self.staging)?;
        }
        Ok(())
    }

    fn store(mut self: Box<Self>, netns: &Path) -> Result<(), ContainerError> {
        self.unpacker = None;
        let name = self.container.clone();
        self.settings.admit(&self.staging)?;
        let mut b = Bundle::load(&self.staging).map_err(failed)?;
        b.set_netns_path(&netns.display().to_string());
        b.set_cgroups_path(&self.settings.cgroups_path(&name));
        b.set_annotation(
            CRIU_CONFIG_ANNOTATION,
            &self.settings.criu_conf(&name).display().to_string(),
        );
        b.save().map_err(failed)?;
        std::fs::write(self.staging.join(DIGEST_FILE), &self.digest)
            .map_err(|e| ContainerError::io(&self.staging, e))?;
        let dest = self.settings.bundle_dir(&name);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&self.staging, &dest).map_err(|e| ContainerError::io(&dest, e))?;
        self.stored = true;
        Ok(())
    }
}

impl Drop for BundleSink {
    fn drop(&mut self) {
        if !self.stored {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}
