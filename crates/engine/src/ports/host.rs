//! The host: what the agent keeps for every migration it takes part in.
//!
//! The destination asks its host to admit an incoming container (a session slot, the
//! container's name, its pod), to remember how each session ended (the source asks when
//! its connection broke), and to adopt a container once it committed. Where these
//! records live (memory, the state directory) is the agent's business.

use std::path::PathBuf;

use async_trait::async_trait;
use ferry_proto::Prepare;
use ferry_types::{HostFacts, NetSpec, SessionState};
use thiserror::Error;

use super::pages::SessionPages;

/// Why a destination does not take a container; nothing was built.
#[derive(Debug, Error)]
pub enum AdmitError {
    #[error("invalid session or container name")]
    InvalidName,
    #[error("the destination has no {0} to restore the container with; install it there ('ferry doctor' lists the engines an agent found)")]
    NoEngine(ferry_types::EngineKind),
    #[error("{0} restores containers only from complete images here: post-copy and hybrid cannot move its containers; use --strategy precopy or cold")]
    EngineNotLazy(ferry_types::EngineKind),
    #[error("{host} cannot take a post-copy migration: it lacks userfaultfd or fs.pipe-max-size (see 'ferry doctor' there); use --strategy cold")]
    NoLazyPages { host: String },
    #[error("{host} already takes part in {max} migrations, its limit; try again later")]
    Busy { host: String, max: usize },
    #[error("a container named '{name}' already exists on {host}")]
    Exists { name: String, host: String },
    /// Another operation holds the container, or its pod cannot arrive here; the
    /// sentence says which.
    #[error("{0}")]
    Refused(String),
}

/// Why a pod member cannot count as arrived.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PodError {
    #[error("pod member '{0}' did not arrive")]
    MemberFailed(String),
    #[error("pod '{0}' is not arriving here")]
    NotArriving(String),
    #[error("the other members of pod '{pod}' did not arrive within {limit:?}")]
    Late {
        pod: String,
        limit: std::time::Duration,
    },
}

/// A pod member's arrival, coordinated with the rest of its pod: a member counts as
/// restored once every member is.
#[async_trait]
pub trait PodArrival: Send + Sync {
    /// The member's namespace is ready here (built, or joined).
    fn arrived(&self);
    fn restored(&self);
    /// Waits until every member moving here is restored, or one of them failed.
    async fn wait_all(&self) -> Result<(), PodError>;
    fn failed(&self);
    /// The member's session ended (committed or dropped).
    fn leave(&self);
}

/// An incoming container the host took.
pub struct Admission {
    /// Held for the session's life: its slot and its claim on the container's name.
    pub guard: Box<dyn Send + Sync>,
    /// A pod member's arrival.
    pub pod: Option<Box<dyn PodArrival>>,
    /// The container joins a pod namespace another member already built here.
    pub join: bool,
    /// Held while the container's namespace is built (a pod's by its first member).
    pub setup: Option<Box<dyn Send>>,
    /// The session's page channels, as they arrive.
    pub pages: Box<dyn SessionPages>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("pod", &self.pod.is_some())
            .field("join", &self.join)
            .finish_non_exhaustive()
    }
}

/// Where a host keeps what migrations write, and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// This host's name, as peers and reports see it.
    pub name: String,
    /// Where sessions keep their images and journals (a tmpfs).
    pub images_dir: PathBuf,
    /// Where the logs of failed sessions (of every session, with `keep_logs`) are kept.
    pub logs_dir: PathBuf,
    pub keep_logs: bool,
    /// Honour faults a test asks for.
    pub allow_fault_injection: bool,
    /// Whether lazy pages (userfaultfd) work here.
    pub lazy_pages: bool,
    /// How long a source keeps asking the destination how a session ended, when the
    /// connection broke after `Commit` was sent.
    pub resolve_for: std::time::Duration,
    /// How long an incoming session may go without a word from its source before the
    /// destination drops it.
    pub idle_timeout: std::time::Duration,
    /// The most the images tmpfs holds (`--images-size`), for a refusal that says so.
    pub images_size: String,
}

/// The destination's host.
#[async_trait]
pub trait DestHost: Send + Sync {
    /// Admits an incoming container, or says why not.
    async fn admit(&self, prepare: &Prepare) -> Result<Admission, AdmitError>;
    fn set_session(&self, session: &str, state: SessionState);
    fn session_state(&self, session: &str) -> SessionState;
    /// The container runs here now, as this host's own.
    fn adopt(&self, container: &str, spec: &NetSpec, group: Option<&str>);
    /// The container's memory is still being filled in: no checkpoint of it may start
    /// before the returned guard is dropped.
    fn memory_arriving(&self, container: &str) -> Box<dyn Send>;
    /// A container a dropped session restored is gone again.
    fn forget(&self, container: &str);
    /// What this host can take (the preflight asks); with `cpuinfo` (the source CPU's
    /// description, hex), whether its processes can run on this CPU.
    /// `paths` are paths of the source's host the container bind-mounts: the answer
    /// names those this host lacks.
    fn facts(&self, cpuinfo: Option<&str>, paths: &[String]) -> HostFacts;
}
