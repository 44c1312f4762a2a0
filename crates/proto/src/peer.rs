//! Peer connections: the source agent drives one migration into the destination agent.
//! The destination's receiver is a state machine (`ferry-engine`'s `dest::machine`) that
//! accepts only the requests valid in its state.

use ferry_types::{
    DestStats, EngineKind, Fault, FileEntry, Held, HostFacts, NetSpec, PeerResumed, PostcopyStats,
    SessionState, Strategy,
};
use serde::{Deserialize, Serialize};

use crate::WireMessage;

/// What the destination must prepare for an incoming container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prepare {
    pub session: String,
    pub container: String,
    pub strategy: Strategy,
    pub bundle_digest: String,
    pub net: NetSpec,
    pub tcp_established: bool,
    /// The dump holds file locks: the restore must take them again.
    #[serde(default)]
    pub file_locks: bool,
    #[serde(default)]
    pub inject_fault: Option<Fault>,
    /// The group the container moves with, recorded at the destination.
    #[serde(default)]
    pub group: Option<String>,
    /// A pod member: every container of its pod that moves with it (itself included).
    /// The destination reports it restored once all of them are.
    #[serde(default)]
    pub pod_members: Vec<String>,
    /// The engine that restores it at the destination (and makes it its own).
    #[serde(default)]
    pub engine: EngineKind,
    /// The container's address at the source, when it takes the new one in `net`
    /// (`--new-ip`): the destination rewrites its sockets from this address to that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readdress_from: Option<String>,
}

/// Source agent → destination agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PeerRequest {
    Prepare(Prepare),
    /// A bundle file; for files, `size` bytes follow in `Data` frames.
    BundleFile {
        entry: FileEntry,
    },
    BundleDone,
    /// A checkpoint image file; `size` bytes follow in `Data` frames.
    ImageFile {
        name: String,
        size: u64,
    },
    /// All images were sent; `pages_bytes` went over the page channel.
    ImagesDone {
        pages_bytes: u64,
    },
    /// Restore now.
    Restore,
    /// The source saw `Restored` and commits: the destination's copy is the container now.
    /// `held`: the packets the container's peers sent it while the source's lock was on,
    /// for the destination to deliver once it unlocks.
    Commit {
        #[serde(default)]
        held: Held,
    },
    /// Give up this session; the destination drops whatever it built.
    Abort {
        reason: String,
    },
    /// Ask what became of a session whose connection was lost.
    Resolve {
        session: String,
    },
    /// Ask what the destination can take (the preflight), before any session. `cpuinfo`
    /// is the source CPU's description (CRIU's `cpuinfo.img`, hex), for the destination
    /// to check its own against.
    Probe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpuinfo: Option<String>,
        /// Paths of the source's host the container bind-mounts, for the destination to
        /// say which it lacks.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        paths: Vec<String>,
    },
    /// A standby checkpoint of `container` follows (on a [`crate::Role::Standby`]
    /// connection). `known` is the checkpoint whose pages the source may reference; the
    /// bundle's `digest` says whether its files must travel.
    Standby {
        container: String,
        net: NetSpec,
        digest: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known: Option<u64>,
    },
    /// A page file of the checkpoint: `pages` entries follow in `Data` frames, each a
    /// page or a reference to one of the known checkpoint.
    StandbyPages {
        name: String,
        pages: u64,
    },
    /// Every file was sent: store it as checkpoint `seq`, taken at `taken_unix_ms`.
    StandbyDone {
        seq: u64,
        taken_unix_ms: u64,
    },
}

/// Destination agent → source agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PeerReply {
    /// The destination is ready; `need_bundle` asks for the bundle's files.
    Prepared {
        need_bundle: bool,
    },
    BundleStored,
    ImagesStored,
    /// The container runs at the destination, still isolated until `Commit`.
    Restored {
        stats: DestStats,
    },
    /// The restore failed; the destination has cleaned up.
    RestoreFailed {
        reason: String,
    },
    /// The destination released the container's network: the move is complete.
    Committed {
        stats: DestStats,
    },
    Aborted,
    Resolution {
        session: String,
        state: SessionState,
    },
    /// After `Committed` (and post-copy's `PostcopyDone`), when `Committed`'s stats said
    /// the destination watches peers: when each restored connection's peer came back.
    PeersResumed {
        peers: Vec<PeerResumed>,
    },
    /// Post-copy: every page is in place at the destination.
    PostcopyDone {
        stats: PostcopyStats,
    },
    /// Post-copy: the destination had to stop the container (it lacked memory).
    PostcopyFailed {
        reason: String,
    },
    /// What the destination can take.
    Probed {
        host: HostFacts,
    },
    /// The destination refused a request (bad input or a protocol error) and dropped
    /// what the session built.
    Error {
        message: String,
    },
    /// Ready for a standby checkpoint: `known` is the one it holds complete (the source
    /// may reference only its pages), `need_bundle` asks for the bundle's files.
    StandbyReady {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known: Option<u64>,
        need_bundle: bool,
    },
    /// The checkpoint is stored, complete, as the newest.
    StandbyStored {
        seq: u64,
        bytes: u64,
    },
}

impl WireMessage for PeerRequest {
    const FAMILY: &'static str = "peer request";

    fn name(&self) -> &'static str {
        match self {
            PeerRequest::Prepare(_) => "prepare",
            PeerRequest::BundleFile { .. } => "bundle_file",
            PeerRequest::BundleDone => "bundle_done",
            PeerRequest::ImageFile { .. } => "image_file",
            PeerRequest::ImagesDone { .. } => "images_done",
            PeerRequest::Restore => "restore",
            PeerRequest::Commit { .. } => "commit",
            PeerRequest::Abort { .. } => "abort",
            PeerRequest::Resolve { .. } => "resolve",
            PeerRequest::Probe { .. } => "probe",
            PeerRequest::Standby { .. } => "standby",
            PeerRequest::StandbyPages { .. } => "standby_pages",
            PeerRequest::StandbyDone { .. } => "standby_done",
        }
    }
}

impl WireMessage for PeerReply {
    const FAMILY: &'static str = "peer reply";

    fn name(&self) -> &'static str {
        match self {
            PeerReply::Prepared { .. } => "prepared",
            PeerReply::BundleStored => "bundle_stored",
            PeerReply::ImagesStored => "images_stored",
            PeerReply::Restored { .. } => "restored",
            PeerReply::RestoreFailed { .. } => "restore_failed",
            PeerReply::Committed { .. } => "committed",
            PeerReply::Aborted => "aborted",
            PeerReply::Resolution { .. } => "resolution",
            PeerReply::PeersResumed { .. } => "peers_resumed",
            PeerReply::PostcopyDone { .. } => "postcopy_done",
            PeerReply::PostcopyFailed { .. } => "postcopy_failed",
            PeerReply::Probed { .. } => "probed",
            PeerReply::Error { .. } => "error",
            PeerReply::StandbyReady { .. } => "standby_ready",
            PeerReply::StandbyStored { .. } => "standby_stored",
        }
    }
}
