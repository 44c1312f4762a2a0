//! The files of a bundle that travel between hosts, and the checks on the receiving side.
//!
//! The sender lists `config.json` and the root file system, skipping what bind mounts
//! cover (that content comes from the destination host) and special files. The receiver
//! accepts only relative, normalised paths and never writes through a symbolic link, so a
//! hostile stream cannot write outside the directory it unpacks into.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use ferry_types::{FileEntry, FileKind};
use sha2::{Digest, Sha256};

use crate::bundle::Bundle;
use crate::RuntimeError;

/// Longest path accepted in a stream.
const MAX_PATH: usize = 4096;

/// Where a root file system outside its bundle directory goes in the shipment, and in
/// the bundle at the destination.
pub const OUTSIDE_ROOTFS: &str = "rootfs";

/// Lists what ships with `bundle`, parents before children, and a digest of it that
/// changes when any listed file changes.
pub fn list_bundle(bundle: &Bundle) -> Result<(Vec<FileEntry>, String), RuntimeError> {
    let mut hasher = Sha256::new();
    hasher.update(bundle.identity_digest().as_bytes());
    let mut out = Vec::new();
    let config = bundle.dir.join("config.json");
    let meta = std::fs::metadata(&config).map_err(|e| RuntimeError::io(&config, e))?;
    out.push(FileEntry {
        path: "config.json".into(),
        kind: FileKind::File,
        mode: meta.mode() & 0o7777,
        size: meta.len(),
        target: None,
        mtime: meta.mtime(),
    });
    let rootfs = bundle.rootfs();
    // A root file system elsewhere ships as the bundle's `rootfs`.
    let root_rel = rootfs
        .strip_prefix(&bundle.dir)
        .map_or_else(|_| PathBuf::from(OUTSIDE_ROOTFS), Path::to_path_buf);
    let skip: Vec<PathBuf> = bundle
        .bind_mount_destinations()
        .iter()
        .map(|d| rootfs.join(d.trim_start_matches('/')))
        .collect();
    walk(&rootfs, &root_rel, &skip, &mut out, &mut hasher)?;
    Ok((out, hex::encode(hasher.finalize())))
}

fn walk(
    dir: &Path,
    rel: &Path,
    skip: &[PathBuf],
    out: &mut Vec<FileEntry>,
    hasher: &mut Sha256,
) -> Result<(), RuntimeError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| RuntimeError::io(dir, e))?;
    out.push(FileEntry {
        path: rel.to_string_lossy().into_owned(),
        kind: FileKind::Dir,
        mode: meta.mode() & 0o7777,
        size: 0,
        target: None,
        mtime: 0,
    });
    if skip.iter().any(|s| s == dir) {
        return Ok(());
    }
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| RuntimeError::io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let child_rel = rel.join(&name);
        let m = std::fs::symlink_metadata(&path).map_err(|e| RuntimeError::io(&path, e))?;
        let ft = m.file_type();
        // Directories' times change whenever an entry is added, so only files and links
        // count their times; mtimes travel with files so a copy hashes the same.
        hasher.update(child_rel.to_string_lossy().as_bytes());
        if ft.is_file() {
            hasher.update((m.mode() & 0o7777).to_le_bytes());
            hasher.update(m.len().to_le_bytes());
            hasher.update(m.mtime().to_le_bytes());
        } else if ft.is_dir() {
            hasher.update((m.mode() & 0o7777).to_le_bytes());
        }
        if ft.is_dir() {
            walk(&path, &child_rel, skip, out, hasher)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| RuntimeError::io(&path, e))?;
            hasher.update(target.as_os_str().as_encoded_bytes());
            out.push(FileEntry {
                path: child_rel.to_string_lossy().into_owned(),
                kind: FileKind::Symlink,
                mode: 0o777,
                size: 0,
                target: Some(target.to_string_lossy().into_owned()),
                mtime: 0,
            });
        } else if ft.is_file() {
            out.push(FileEntry {
                path: child_rel.to_string_lossy().into_owned(),
                kind: FileKind::File,
                mode: m.mode() & 0o7777,
                size: m.len(),
                target: None,
                mtime: m.mtime(),
            });
        }
        // Devices, sockets and FIFOs do not travel: runtimes create device nodes, and
        // the others belong to running processes.
    }
    Ok(())
}

/// Checks a path received from a peer: relative, no `..`, no `.`, no empty or NUL parts.
pub fn safe_relative(path: &str) -> Result<PathBuf, RuntimeError> {
    let bad = || RuntimeError::UnsafePath(path.chars().take(200).collect());
    if path.is_empty() || path.len() > MAX_PATH || path.contains('\0') {
        return Err(bad());
    }
    let mut out = PathBuf::new();
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(bad());
        }
        out.push(part);
    }
    debug_assert!(out.components().all(|c| matches!(c, Component::Normal(_))));
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Writes received entries under `root`, refusing anything that would land outside it.
#[derive(Debug)]
pub struct Unpacker {
    root: PathBuf,
}

/// A file being received.
#[derive(Debug)]
pub struct IncomingFile {
    file: std::fs::File,
    path: PathBuf,
    remaining: u64,
    mtime: i64,
}

impl IncomingFile {
    /// Appends received bytes; more than announced is an error.
    pub fn write(&mut self, data: &[u8]) -> Result<(), RuntimeError> {
        if data.len() as u64 > self.remaining {
            return Err(RuntimeError::UnsafePath(format!(
                "{}: more data than announced",
                self.path.display()
            )));
        }
        self.file
            .write_all(data)
            .map_err(|e| RuntimeError::io(&self.path, e))?;
        self.remaining -= data.len() as u64;
        Ok(())
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Completes the file: all announced bytes must have arrived; sets its time.
    pub fn finish(self) -> Result<(), RuntimeError> {
        if self.remaining != 0 {
            return Err(RuntimeError::UnsafePath(format!(
                "{}: {} bytes missing",
                self.path.display(),
                self.remaining
            )));
        }
        if self.mtime > 0 {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.mtime as u64);
            self.file
                .set_modified(t)
                .map_err(|e| RuntimeError::io(&self.path, e))?;
        }
        Ok(())
    }
}

impl Unpacker {
    pub fn new(root: &Path) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(root).map_err(|e| RuntimeError::io(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Where `rel` is under the root, checked as [`Unpacker::begin`] checks it.
    pub(crate) fn resolve(&self, rel: &str) -> Result<PathBuf, RuntimeError> {
        self.target(rel)
    }

    /// Resolves `rel` under the root, checking that no existing component is a symlink.
    fn target(&self, rel: &str) -> Result<PathBuf, RuntimeError> {
        let rel = safe_relative(rel)?;
        let mut cur = self.root.clone();
        let parts: Vec<_> = rel.components().collect();
        for (i, c) in parts.iter().enumerate() {
            cur.push(c);
            if let Ok(m) = std::fs::symlink_metadata(&cur) {
                let last = i + 1 == parts.len();
                if m.file_type().is_symlink() && !last {
                    return Err(RuntimeError::UnsafePath(format!(
                        "{}: goes through a symbolic link",
                        rel.display()
                    )));
                }
            }
        }
        Ok(cur)
    }

    /// Creates a directory, symlink, or (empty, to be filled) file for `entry`.
    pub fn begin(&self, entry: &FileEntry) -> Result<Option<IncomingFile>, RuntimeError> {
        let path = self.target(&entry.path)?;
        let mode = entry.mode & 0o7777;
        match entry.kind {
            FileKind::Dir => {
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(RuntimeError::UnsafePath(format!(
                        "{}: is a symbolic link",
                        entry.path
                    )));
                }
                std::fs::create_dir_all(&path).map_err(|e| RuntimeError::io(&path, e))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| RuntimeError::io(&path, e))?;
                Ok(None)
            }
            FileKind::Symlink => {
                let target = entry.target.as_deref().unwrap_or_default();
                if target.is_empty() || target.len() > MAX_PATH || target.contains('\0') {
                    return Err(RuntimeError::UnsafePath(entry.path.clone()));
                }
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(target, &path)
                    .map_err(|e| RuntimeError::io(&path, e))?;
                Ok(None)
            }
            FileKind::File => {
                // A peer's file never becomes a set-user-ID or set-group-ID program here.
                let mode = mode & !0o6000;
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    std::fs::remove_file(&path).map_err(|e| RuntimeError::io(&path, e))?;
                }
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(mode)
                    .open(&path)
                    .map_err(|e| RuntimeError::io(&path, e))?;
                // The source's mode, setuid and setgid bits aside: neither this process's
                // umask nor the mode of a file that was there before (CRIU checks the
                // modes of open files).
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| RuntimeError::io(&path, e))?;
                Ok(Some(IncomingFile {
                    file,
                    path,
                    remaining: entry.size,
                    mtime: entry.mtime,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{create_host_program_bundle, HostProgramSpec};

    #[test]
    fn unsafe_paths_are_refused() {
        for p in ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a\0b", "."] {
            assert!(safe_relative(p).is_err(), "{p:?} was accepted");
        }
        assert_eq!(
            safe_relative("rootfs/etc/x").unwrap(),
            PathBuf::from("rootfs/etc/x")
        );
    }

    #[test]
    fn listing_skips_bind_mounted_content_and_digest_tracks_changes() {
        let d = tempfile::tempdir().unwrap();
        let spec = HostProgramSpec {
            args: vec!["/bin/true".into()],
            ..Default::default()
        };
        let b = create_host_program_bundle(d.path(), &spec).unwrap();
        std::fs::write(d.path().join("rootfs/usr/hidden"), "host content").unwrap();
        std::fs::write(d.path().join("rootfs/data/app.conf"), "x").unwrap();
        let (entries, digest) = list_bundle(&b).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths[0], "config.json");
        assert!(paths.contains(&"rootfs/usr"));
        assert!(!paths.contains(&"rootfs/usr/hidden"));
        assert!(paths.contains(&"rootfs/data/app.conf"));
        assert!(paths.contains(&"rootfs/lib"));
        std::fs::write(d.path().join("rootfs/data/app.conf"), "changed!").unwrap();
        let (_, digest2) = list_bundle(&b).unwrap();
        assert_ne!(digest, digest2);
    }

    #[test]
    fn files_get_the_source_s_mode_whatever_the_umask_and_what_was_there() {
        let d = tempfile::tempdir().unwrap();
        let u = Unpacker::new(d.path()).unwrap();
        std::fs::write(d.path().join("old.log"), "x").unwrap();
        std::fs::set_permissions(
            d.path().join("old.log"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        for name in ["new.log", "old.log"] {
            let f = FileEntry {
                path: name.into(),
                kind: FileKind::File,
                mode: 0o100660,
                size: 0,
                target: None,
                mtime: 0,
            };
            drop(u.begin(&f).unwrap());
            let m = std::fs::metadata(d.path().join(name)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o660, "{name}");
        }
        // Set-user-ID and set-group-ID bits do not travel; a directory's bits do.
        for (kind, mode, want) in [
            (FileKind::File, 0o104755, 0o755),
            (FileKind::File, 0o102711, 0o711),
            (FileKind::Dir, 0o42775, 0o2775),
        ] {
            let f = FileEntry {
                path: format!("s{want:o}"),
                kind,
                mode,
                size: 0,
                target: None,
                mtime: 0,
            };
            drop(u.begin(&f).unwrap());
            let m = std::fs::metadata(d.path().join(&f.path)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, want, "{mode:o}");
        }
    }

    #[test]
    fn unpacker_never_writes_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let u = Unpacker::new(d.path()).unwrap();
        let link = FileEntry {
            path: "rootfs".into(),
            kind: FileKind::Symlink,
            mode: 0o777,
            size: 0,
            target: Some(outside.path().display().to_string()),
            mtime: 0,
        };
        u.begin(&link).unwrap();
        let evil = FileEntry {
            path: "rootfs/pwned".into(),
            kind: FileKind::File,
            mode: 0o644,
            size: 1,
            target: None,
            mtime: 0,
        };
        assert!(u.begin(&evil).is_err());
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn unpacker_writes_files_and_refuses_extra_bytes() {
        let d = tempfile::tempdir().unwrap();
        let u = Unpacker::new(d.path()).unwrap();
        u.begin(&FileEntry {
            path: "a".into(),
            kind: FileKind::Dir,
            mode: 0o755,
            size: 0,
            target: None,
            mtime: 0,
        })
        .unwrap();
        let mut f = u
            .begin(&FileEntry {
                path: "a/f".into(),
                kind: FileKind::File,
                mode: 0o600,
                size: 3,
                target: None,
                mtime: 1_600_000_000,
            })
            .unwrap()
            .unwrap();
        f.write(b"abc").unwrap();
        assert!(f.write(b"d").is_err());
        f.finish().unwrap();
        assert_eq!(std::fs::read(d.path().join("a/f")).unwrap(), b"abc");
        let m = std::fs::metadata(d.path().join("a/f")).unwrap();
        assert_eq!(m.mtime(), 1_600_000_000);
    }
}
