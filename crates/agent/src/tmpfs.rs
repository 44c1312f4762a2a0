//! The agent's image directory is a tmpfs, so checkpoint images never touch a disk.

use std::path::Path;

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Whether `dir` is on a tmpfs.
pub fn is_tmpfs(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the struct it is given; `c` is a valid C string.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut s) == 0 && s.f_type as i64 == TMPFS_MAGIC
    }
}

/// Whether a tmpfs is mounted at `dir` itself (not only somewhere above it), as
/// `/proc/self/mountinfo` lists it.
pub fn is_tmpfs_mount(dir: &Path, mountinfo: &str) -> bool {
    let want = dir.to_string_lossy();
    mountinfo.lines().any(|l| {
        let mut halves = l.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            return false;
        };
        left.split(' ').nth(4) == Some(&*want) && right.split(' ').next() == Some("tmpfs")
    })
}

/// Makes sure the agent's images live on a tmpfs of its own, mode 0700: one above it
/// (`/run`) would do for keeping images off disks, but not for keeping them private.
/// One already mounted there (a previous run's, with its journals) is kept.
/// Of at most `size` (tmpfs's `size=`).
pub fn ensure_tmpfs(dir: &Path, size: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !is_tmpfs_mount(&dir, &info) {
        mount(&dir, "ferry-images", size)?;
    } else if let Err(e) = remount(&dir, size) {
        // An earlier run's tmpfs: it keeps its size when what it holds does not fit.
        tracing::warn!("{e}");
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
}

/// Makes sure `dir` is a tmpfs, mounting one named `source` of `size` if it is not.
pub fn ensure_tmpfs_sized(dir: &Path, source: &str, size: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_tmpfs(dir) {
        return Ok(());
    }
    mount(dir, source, size)
}

/// Gives the tmpfs at `dir` the size this run was started with.
fn remount(dir: &Path, size: &str) -> std::io::Result<()> {
    let opts = format!("remount,mode=0700,size={size}");
    run_mount(
        &["-o", &opts],
        dir,
        &format!("resize the tmpfs on {} to {size}", dir.display()),
    )
}

fn mount(dir: &Path, source: &str, size: &str) -> std::io::Result<()> {
    let opts = format!("mode=0700,size={size}");
    let what = format!("mount a tmpfs on {}", dir.display());
    run_mount(&["-t", "tmpfs", "-o", &opts, source], dir, &what)
}

/// `mount ARGS DIR`; a failure says it could not do `what`, with mount's own words.
fn run_mount(args: &[&str], dir: &Path, what: &str) -> std::io::Result<()> {
    let out = std::process::Command::new("mount")
        .args(args)
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "cannot {what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tmpfs_mounted_at_the_directory_itself_counts() {
        let info = "25 30 0:23 / /run rw,nosuid - tmpfs tmpfs rw,mode=755\n\
                    90 25 0:50 / /run/ferry/a/images rw - tmpfs ferry-images rw,mode=700\n\
                    91 25 0:51 / /srv/images rw - ext4 /dev/sda1 rw\n";
        assert!(is_tmpfs_mount(Path::new("/run/ferry/a/images"), info));
        assert!(is_tmpfs_mount(Path::new("/run"), info));
        assert!(!is_tmpfs_mount(Path::new("/run/ferry/b/images"), info));
        assert!(!is_tmpfs_mount(Path::new("/srv/images"), info));
    }
}
