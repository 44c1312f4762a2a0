//! ferry's hold lock on the network namespace an engine makes when it restores a
//! container (Podman, Docker): installed by a CRIU action script once CRIU made the
//! restored processes' namespaces, before any socket is restored, so that nothing
//! reaches the container before the commit.

use std::path::{Path, PathBuf};

use ferry_engine::ports::container::ContainerError;

/// Writes the hold lock's rules and the action script that installs them in the
/// restored container's namespace once CRIU made its processes' namespaces, before any
/// socket is restored.
pub fn write_lock_hook(work: &Path, locked: &str) -> Result<PathBuf, ContainerError> {
    let rules = ferry_netns::NetLock::ferry_hold(PathBuf::new())
        .plan_install()
        .stdin
        .unwrap_or_default();
    let nft = work.join("hold.nft");
    std::fs::write(&nft, rules).map_err(|e| ContainerError::io(&nft, e))?;
    let hook = work.join("lock-hook.sh");
    let script = format!(
        "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = setup-namespaces ] || exit 0\nnsenter --net=/proc/\"$CRTOOLS_INIT_PID\"/ns/net nft -f '{}' && : > '{}'\n",
        nft.display(),
        work.join(locked).display()
    );
    std::fs::write(&hook, script).map_err(|e| ContainerError::io(&hook, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ContainerError::io(&hook, e))?;
    Ok(hook)
}
