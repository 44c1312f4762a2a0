//! Option plans: which CRIU options a checkpoint or restore needs.
//!
//! Planning is pure: it decides flags, CRIU configuration lines and inherited file
//! descriptors from what the caller asks for. Executing the plan (through runc) is the
//! runtime's job. Options runc has no flag for reach CRIU through a configuration file:
//! runc passes CRIU the file named by the container's `org.criu.config` annotation, or
//! `/etc/criu/runc.conf` when there is none, and CRIU lets that file override RPC options.

use std::path::PathBuf;

use thiserror::Error;

/// Where runc tells CRIU to read its configuration file for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriuConfigTarget {
    /// The container's `org.criu.config` annotation names this file.
    Annotation(PathBuf),
    /// No annotation: runc uses the host-wide `/etc/criu/runc.conf`.
    Global,
    /// The annotation is empty: runc passes no configuration file at all.
    Disabled,
}

/// The host-wide file runc falls back to.
pub const GLOBAL_RUNC_CONF: &str = "/etc/criu/runc.conf";

impl CriuConfigTarget {
    /// From the container's annotations.
    pub fn from_annotation(value: Option<&str>) -> Self {
        match value {
            None => Self::Global,
            Some("") => Self::Disabled,
            Some(p) => Self::Annotation(PathBuf::from(p)),
        }
    }

    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Self::Annotation(p) => Some(p.clone()),
            Self::Global => Some(PathBuf::from(GLOBAL_RUNC_CONF)),
            Self::Disabled => None,
        }
    }
}

/// How the memory pages of a dump leave CRIU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageTransport {
    /// Into `pages-*.img` in the image directory.
    ImagesDir,
    /// To a page server over an already-connected socket that CRIU inherits at `fd`.
    Socket { fd: i32 },
    /// Lazy dump (post-copy): CRIU serves pages on request over the socket at `fd`.
    LazySocket { fd: i32 },
}

/// Which firewall CRIU uses to keep a container's network quiet while it is dumped and
/// restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkLock {
    Iptables,
    Nftables,
    /// CRIU installs no lock: ferry holds its own for the whole operation.
    Skip,
}

/// What a checkpoint must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSpec {
    pub leave_running: bool,
    pub tcp_established: bool,
    pub file_locks: bool,
    pub pages: PageTransport,
    pub network_lock: NetworkLock,
}

/// What a restore must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSpec {
    pub tcp_established: bool,
    pub file_locks: bool,
    /// Restore memory lazily through a `criu lazy-pages` daemon.
    pub lazy_pages: bool,
    pub network_lock: NetworkLock,
    /// Restore established TCP connections closed (a standby checkpoint's connections
    /// are stale: their peers moved on while the container kept running).
    pub tcp_close: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the container disables CRIU configuration files (empty org.criu.config annotation), which {needs} requires; remove the annotation or set it to a file path")]
    NoConfigFile { needs: &'static str },
    #[error("file descriptor {0} is reserved; inherited descriptors must be above 2")]
    ReservedFd(i32),
}

/// The decided options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CriuOptionPlan {
    pub leave_running: bool,
    pub tcp_established: bool,
    pub file_locks: bool,
    pub lazy_pages: bool,
    /// Lines of the CRIU configuration file (`option value`), empty if none is needed.
    pub config_lines: Vec<String>,
    /// Descriptors the caller must pass down, at these numbers, to CRIU.
    pub inherit_fds: Vec<i32>,
}

impl CriuOptionPlan {
    pub fn checkpoint(spec: &CheckpointSpec, target: &CriuConfigTarget) -> Result<Self, PlanError> {
        let mut plan = CriuOptionPlan {
            leave_running: spec.leave_running,
            tcp_established: spec.tcp_established,
            file_locks: spec.file_locks,
            ..Default::default()
        };
        match spec.pages {
            PageTransport::ImagesDir => {}
            PageTransport::Socket { fd } => {
                plan.inherit(fd)?;
                plan.config_lines.push("page-server".into());
                plan.config_lines.push(format!("ps-socket {fd}"));
            }
            PageTransport::LazySocket { fd } => {
                plan.inherit(fd)?;
                plan.lazy_pages = true;
                plan.config_lines.push(format!("ps-socket {fd}"));
            }
        }
        plan.add_common(spec.tcp_established, spec.network_lock);
        plan.require_target(target)?;
        Ok(plan)
    }

    pub fn restore(spec: &RestoreSpec, target: &CriuConfigTarget) -> Result<Self, PlanError> {
        let mut plan = CriuOptionPlan {
            tcp_established: spec.tcp_established,
            file_locks: spec.file_locks,
            lazy_pages: spec.lazy_pages,
            ..Default::default()
        };
        plan.add_common(spec.tcp_established, spec.network_lock);
        if spec.tcp_close {
            plan.config_lines.push("tcp-close".into());
        }
        plan.require_target(target)?;
        Ok(plan)
    }

    fn inherit(&mut self, fd: i32) -> Result<(), PlanError> {
        if fd <= 2 {
            return Err(PlanError::ReservedFd(fd));
        }
        self.inherit_fds.push(fd);
        Ok(())
    }

    fn add_common(&mut self, tcp: bool, lock: NetworkLock) {
        match lock {
            NetworkLock::Nftables => self.config_lines.push("network-lock nftables".into()),
            NetworkLock::Skip => self.config_lines.push("network-lock skip".into()),
            NetworkLock::Iptables => {}
        }
        if tcp {
            // Connections still in their handshake cannot be restored; drop them instead
            // of failing the whole dump (their peers retry the handshake).
            self.config_lines.push("skip-in-flight".into());
        }
    }

    /// A plan that needs a configuration file cannot run when the container disables it.
    /// A plan whose lines are only optimisations degrades to none.
    fn require_target(&mut self, target: &CriuConfigTarget) -> Result<(), PlanError> {
        if *target != CriuConfigTarget::Disabled {
            return Ok(());
        }
        if !self.inherit_fds.is_empty() {
            return Err(PlanError::NoConfigFile {
                needs: "streaming pages over ferry's channel",
            });
        }
        self.config_lines.clear();
        Ok(())
    }

    /// The configuration file's content.
    pub fn config_text(&self) -> String {
        let mut s = String::from("# written by ferry for one checkpoint or restore\n");
        for l in &self.config_lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pages: PageTransport) -> CheckpointSpec {
        CheckpointSpec {
            leave_running: true,
            tcp_established: true,
            file_locks: false,
            pages,
            network_lock: NetworkLock::Nftables,
        }
    }

    #[test]
    fn streaming_pages_uses_an_inherited_socket() {
        let t = CriuConfigTarget::Annotation("/run/ferry/c.conf".into());
        let p = CriuOptionPlan::checkpoint(&spec(PageTransport::Socket { fd: 42 }), &t).unwrap();
        assert_eq!(p.inherit_fds, vec![42]);
        assert!(p.config_lines.contains(&"page-server".to_string()));
        assert!(p.config_lines.contains(&"ps-socket 42".to_string()));
        assert!(p
            .config_lines
            .contains(&"network-lock nftables".to_string()));
        assert!(p.leave_running && p.tcp_established && !p.lazy_pages);
    }

    #[test]
    fn lazy_dump_serves_pages_on_the_socket() {
        let p = CriuOptionPlan::checkpoint(
            &spec(PageTransport::LazySocket { fd: 9 }),
            &CriuConfigTarget::Global,
        )
        .unwrap();
        assert!(p.lazy_pages);
        assert!(!p.config_lines.contains(&"page-server".to_string()));
        assert!(p.config_lines.contains(&"ps-socket 9".to_string()));
    }

    #[test]
    fn disabled_config_refuses_streaming_but_allows_plain_dumps() {
        let err = CriuOptionPlan::checkpoint(
            &spec(PageTransport::Socket { fd: 42 }),
            &CriuConfigTarget::Disabled,
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::NoConfigFile { .. }));
        let p = CriuOptionPlan::checkpoint(
            &spec(PageTransport::ImagesDir),
            &CriuConfigTarget::Disabled,
        )
        .unwrap();
        assert!(p.config_lines.is_empty());
    }

    #[test]
    fn standard_descriptors_cannot_be_inherited() {
        let err = CriuOptionPlan::checkpoint(
            &spec(PageTransport::Socket { fd: 1 }),
            &CriuConfigTarget::Global,
        )
        .unwrap_err();
        assert_eq!(err, PlanError::ReservedFd(1));
    }

    #[test]
    fn skip_leaves_locking_to_ferry() {
        let mut s = spec(PageTransport::ImagesDir);
        s.network_lock = NetworkLock::Skip;
        let p = CriuOptionPlan::checkpoint(&s, &CriuConfigTarget::Global).unwrap();
        assert!(p.config_lines.contains(&"network-lock skip".to_string()));
    }

    #[test]
    fn iptables_lock_adds_no_line() {
        let mut s = spec(PageTransport::ImagesDir);
        s.network_lock = NetworkLock::Iptables;
        s.tcp_established = false;
        let p = CriuOptionPlan::checkpoint(&s, &CriuConfigTarget::Global).unwrap();
        assert!(p.config_lines.is_empty());
    }

    #[test]
    fn annotation_values_map_to_targets() {
        assert_eq!(
            CriuConfigTarget::from_annotation(None),
            CriuConfigTarget::Global
        );
        assert_eq!(
            CriuConfigTarget::from_annotation(Some("")),
            CriuConfigTarget::Disabled
        );
        assert_eq!(
            CriuConfigTarget::from_annotation(Some("/x.conf")).path(),
            Some(PathBuf::from("/x.conf"))
        );
    }
}
