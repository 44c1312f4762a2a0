//! Named network namespaces under `/run/netns`, as `ip netns` manages them.

use std::path::PathBuf;

use crate::{Cmd, NetError, Runner};

/// Where named network namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Moves the calling thread into the network namespace at `path`, for good: call it on
/// a thread of its own.
pub fn enter_on_this_thread(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(path)?;
    // SAFETY: plain syscall on a valid descriptor; affects only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A named network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    pub fn exists(&self) -> bool {
        self.path().exists()
    }

    /// Creates the namespace with its loopback up.
    pub async fn create(&self, runner: &impl Runner) -> Result<(), NetError> {
        validate_name(&self.name)?;
        runner
            .run(&Cmd::new("ip", &["netns", "add", &self.name]))
            .await?;
        runner
            .run(&Cmd::new(
                "ip",
                &["-n", &self.name, "link", "set", "lo", "up"],
            ))
            .await?;
        Ok(())
    }

    /// Deletes the namespace (its links go with it). Missing is fine.
    pub async fn delete(&self, runner: &impl Runner) -> Result<(), NetError> {
        if !self.exists() {
            return Ok(());
        }
        runner
            .run(&Cmd::new("ip", &["netns", "delete", &self.name]))
            .await
            .map(drop)
    }
}

/// Namespace names become file names and `ip` arguments.
pub fn validate_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "'{name}' is not a valid network namespace name"
        )))
    }
}
