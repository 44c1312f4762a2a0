//! CRIU's CPU compatibility check: `criu cpuinfo dump` on the source describes its CPU's
//! features; `criu cpuinfo check` on the destination says whether a process dumped there
//! can run here (a process may use any feature its CPU offered, AVX-512 for example).

use std::path::Path;
use std::process::Command;

/// The source CPU's description (`cpuinfo.img`), made with `criu` in scratch `dir`.
pub fn dump(criu: &Path, dir: &Path) -> Result<Vec<u8>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = Command::new(criu)
        .args(["cpuinfo", "dump", "-D"])
        .arg(dir)
        .args(["-o", "cpuinfo-dump.log"])
        .output()
        .map_err(|e| format!("{}: {e}", criu.display()))?;
    if !out.status.success() {
        return Err(first_error(&dir.join("cpuinfo-dump.log")));
    }
    std::fs::read(dir.join("cpuinfo.img")).map_err(|e| format!("cpuinfo.img: {e}"))
}

/// Whether a process dumped on the CPU `image` describes can run on this one; the
/// reason CRIU gives when not.
pub fn check(criu: &Path, dir: &Path, image: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("cpuinfo.img"), image).map_err(|e| format!("cpuinfo.img: {e}"))?;
    let out = Command::new(criu)
        .args(["cpuinfo", "check", "-D"])
        .arg(dir)
        .args(["-o", "cpuinfo-check.log"])
        .output()
        .map_err(|e| format!("{}: {e}", criu.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(first_error(&dir.join("cpuinfo-check.log")))
    }
}

fn first_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let f = crate::log::diagnose_text(log, &text, "");
    f.first_error()
        .unwrap_or("CRIU's cpuinfo check failed without saying why")
        .to_string()
}
