//! A container's writable layer, as it travels: what it wrote to its root file system
//! (overlay's upper directory) as a tar, and the paths it deleted (overlay's whiteouts)
//! as a JSON list; and at the destination, both applied to the new container's upper
//! directory before it starts.

use std::collections::BTreeSet;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use ferry_engine::ports::container::ContainerError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
    move |e| ContainerError::io(path, e)
}

/// Writes what the layer at `upper` holds: its files into `tar`, the paths it deleted
/// into `deleted` (neither written when there is nothing to say).
pub fn capture(upper: &Path, tar: &Path, deleted: &Path) -> Result<(), ContainerError> {
    let mut files = Vec::new();
    let mut gone = BTreeSet::new();
    walk(upper, upper, &mut files, &mut gone)?;
    if !files.is_empty() {
        tar_create(upper, &files, tar)?;
    }
    if !gone.is_empty() {
        let list: Vec<&String> = gone.iter().collect();
        let bytes = serde_json::to_vec(&list)
            .map_err(|e| ContainerError::Failed(format!("the deleted files' list: {e}")))?;
        std::fs::write(deleted, bytes).map_err(io(deleted))?;
    }
    Ok(())
}

fn walk(
    root: &Path,
    dir: &Path,
    files: &mut Vec<String>,
    deleted: &mut BTreeSet<String>,
) -> Result<(), ContainerError> {
    for entry in std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
    {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_char_device() {
            use std::os::unix::fs::MetadataExt;
            if entry.metadata().is_ok_and(|m| m.rdev() == 0) {
                deleted.insert(format!("/{rel}"));
                continue;
            }
        }
        files.push(rel);
        if ft.is_dir() {
            walk(root, &path, files, deleted)?;
        }
    }
    Ok(())
}

/// A tar of `members` (paths relative to `dir`, not recursed) at `out`.
pub fn tar_create(dir: &Path, members: &[String], out: &Path) -> Result<(), ContainerError> {
    let list = out.with_extension("list");
    std::fs::write(&list, members.join("\0")).map_err(io(&list))?;
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args([
            "--no-recursion",
            "--numeric-owner",
            "--xattrs",
            "--null",
            "-cf",
        ])
        .arg(out)
        .arg("-T")
        .arg(&list)
        .status()
        .map_err(io(Path::new("tar")));
    let _ = std::fs::remove_file(&list);
    match status? {
        s if s.success() => Ok(()),
        s => Err(ContainerError::Failed(format!(
            "tar of {} failed ({s})",
            dir.display()
        ))),
    }
}

/// The deleted paths a list names, each checked: absolute, without `..`.
pub fn read_deleted(path: &Path) -> Result<Vec<String>, ContainerError> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(Vec::new());
    };
    let list: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| {
        ContainerError::Refused(format!("the list of deleted files is not a list: {e}"))
    })?;
    match list.iter().find(|p| !safe(p)) {
        Some(bad) => Err(ContainerError::Refused(format!(
            "the list of deleted files names '{bad}', outside the container's root"
        ))),
        None => Ok(list),
    }
}

fn safe(p: &str) -> bool {
    p.starts_with('/')
        && p.len() > 1
        && Path::new(p)
            .components()
            .skip(1)
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Applies a layer that travelled to the empty upper directory `upper`: its files
/// extracted (never outside it), the deleted paths made whiteouts.
pub fn apply(upper: &Path, tar: &Path, deleted: &Path) -> Result<(), ContainerError> {
    if tar.exists() {
        let status = std::process::Command::new("tar")
            .arg("-C")
            .arg(upper)
            .args(["--numeric-owner", "--xattrs", "--same-permissions", "-xf"])
            .arg(tar)
            .status()
            .map_err(io(Path::new("tar")))?;
        if !status.success() {
            return Err(ContainerError::Failed(format!(
                "extracting the container's layer into {} failed ({status})",
                upper.display()
            )));
        }
    }
    for p in read_deleted(deleted)? {
        let at = upper.join(p.trim_start_matches('/'));
        if let Some(dir) = at.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let _ = std::fs::remove_file(&at);
        whiteout(&at)?;
    }
    Ok(())
}

/// overlay's mark of a deleted file: a character device 0:0.
fn whiteout(at: &Path) -> Result<(), ContainerError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(at.as_os_str().as_bytes())
        .map_err(|_| ContainerError::Refused(format!("{}: a NUL in a path", at.display())))?;
    // SAFETY: mknod(2) on a NUL-terminated path this function owns.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
    match r {
        0 => Ok(()),
        _ => Err(ContainerError::io(at, std::io::Error::last_os_error())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_paths_inside_the_root_may_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("deleted");
        std::fs::write(&list, r#"["/etc/motd","/var/lib/x"]"#).unwrap();
        assert_eq!(read_deleted(&list).unwrap().len(), 2);
        for bad in [
            r#"["/../etc/passwd"]"#,
            r#"["etc/x"]"#,
            r#"["/"]"#,
            r#"["/a/../../b"]"#,
            "{}",
        ] {
            std::fs::write(&list, bad).unwrap();
            assert!(read_deleted(&list).is_err(), "{bad}");
        }
        assert!(read_deleted(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn a_layer_round_trips_with_its_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(src.join("data")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("data/f"), b"written").unwrap();
        // A whiteout needs mknod, which only root may.
        // SAFETY: geteuid(2) has no arguments and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            whiteout(&src.join("gone")).unwrap();
        }
        let (tar, deleted) = (dir.path().join("l.tar"), dir.path().join("l.del"));
        capture(&src, &tar, &deleted).unwrap();
        apply(&dst, &tar, &deleted).unwrap();
        assert_eq!(std::fs::read(dst.join("data/f")).unwrap(), b"written");
        if root {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(dst.join("gone")).unwrap();
            assert!(m.file_type().is_char_device() && m.rdev() == 0);
        }
    }
}
