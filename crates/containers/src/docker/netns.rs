//! A name for the network namespace Docker made for a container (its sandbox key, under
//! Docker's exec root), so that ferry's network code, which knows namespaces by their
//! names under `/run/netns`, can read and hold it at the source: a bind mount, as
//! `ip netns attach` makes, removed when the container's view is dropped.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ferry_engine::ports::container::ContainerError;

/// The name under `/run/netns` of a Docker container's namespace.
pub fn name_for(id: &str) -> String {
    format!("docker-{}", &id[..id.len().min(12)])
}

/// A named Docker namespace; the name goes when the last holder drops it.
#[derive(Debug)]
pub struct Attached {
    pub name: String,
    path: PathBuf,
    mounted: bool,
}

fn cstr(p: &Path) -> Result<CString, ContainerError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| ContainerError::Refused(format!("{}: a NUL in a path", p.display())))
}

impl Attached {
    /// Names `sandbox` (a namespace file Docker made) after container `id`.
    pub fn new(sandbox: &Path, id: &str) -> Result<Self, ContainerError> {
        let name = name_for(id);
        let path = ferry_netns::netns_path(&name);
        let same = |a: &Path, b: &Path| {
            use std::os::unix::fs::MetadataExt;
            match (std::fs::metadata(a), std::fs::metadata(b)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            }
        };
        if same(&path, sandbox) {
            // Named already (by an earlier look that is still held, or one whose agent
            // died): kept as it is, and not removed by this holder.
            return Ok(Self {
                name,
                path,
                mounted: false,
            });
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ContainerError::io(dir, e))?;
        }
        std::fs::write(&path, b"").map_err(|e| ContainerError::io(&path, e))?;
        let (src, dst) = (cstr(sandbox)?, cstr(&path)?);
        // SAFETY: mount(2) with NUL-terminated paths and no data.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_file(&path);
            return Err(ContainerError::io(sandbox, e));
        }
        Ok(Self {
            name,
            path,
            mounted: true,
        })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        if let Ok(p) = cstr(&self.path) {
            // SAFETY: umount2(2) of the bind mount this value made.
            unsafe {
                libc::umount2(p.as_ptr(), libc::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
