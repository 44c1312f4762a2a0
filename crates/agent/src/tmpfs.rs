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

/// Makes sure `dir` is a tmpfs, mounting one (mode 0700) if it is not.
pub fn ensure_tmpfs(dir: &Path) -> std::io::Result<()> {
    ensure_tmpfs_sized(dir, "ferry-images", "100%")
}

/// Makes sure `dir` is a tmpfs, mounting one named `source` of `size` if it is not.
pub fn ensure_tmpfs_sized(dir: &Path, source: &str, size: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_tmpfs(dir) {
        return Ok(());
    }
    let out = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("mode=0700,size={size}"),
            source,
        ])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "cannot mount a tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
