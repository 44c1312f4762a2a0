//! The messages ferry processes exchange, one JSON object per `Message` frame.
//!
//! One enum covers every connection role; each receiver is a state machine that accepts
//! only the messages valid in its current state (see `ferry-engine::dest`).

use serde::{Deserialize, Serialize};

use crate::ProtoError;

/// What a connection is for; announced in [`Message::Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The CLI (or a script) asking an agent to do something.
    Control,
    /// One agent driving a migration into another.
    Peer,
    /// The page channel of a migration session: after the handshake, raw bytes in both
    /// directions (the page stream of a cold move, post-copy's background pages).
    Pages,
    /// Post-copy's second page channel: the pages processes wait for, so that they never
    /// queue behind background pages.
    UrgentPages,
}

/// A migration strategy. Names are part of the CLI and report interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Cold,
    Precopy,
    Postcopy,
    Hybrid,
    Auto,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::Cold,
        Strategy::Precopy,
        Strategy::Postcopy,
        Strategy::Hybrid,
        Strategy::Auto,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Cold => "cold",
            Strategy::Precopy => "precopy",
            Strategy::Postcopy => "postcopy",
            Strategy::Hybrid => "hybrid",
            Strategy::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .iter()
            .copied()
            .find(|st| st.name() == s)
            .ok_or_else(|| {
                format!("unknown strategy '{s}'; use one of cold, precopy, postcopy, hybrid, auto")
            })
    }
}

/// A fault a test can ask the agents to inject. Honoured only by agents started with
/// `--allow-fault-injection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The destination's restore fails.
    RestoreFails,
    /// The destination agent exits while the checkpoint images are arriving.
    DestDiesDuringTransfer,
    /// The destination agent exits right after restoring, before confirming.
    DestDiesAfterRestore,
    /// The transfer connection is cut while the images are in flight.
    CutTransfer,
    /// Post-copy: the page channel is cut after the container started at the destination.
    CutPostcopy,
}

/// Options of a migration, as the CLI sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateOptions {
    pub strategy: Strategy,
    #[serde(default = "yes")]
    pub tcp_established: bool,
    #[serde(default)]
    pub file_locks: bool,
    #[serde(default)]
    pub allow_postcopy: bool,
    #[serde(default)]
    pub max_downtime_ms: Option<u64>,
    #[serde(default)]
    pub max_rounds: Option<u32>,
    #[serde(default)]
    pub threshold_pct: Option<f64>,
    #[serde(default)]
    pub compress: Option<String>,
    /// Prepare everything (and run pre-copy rounds), then wait for `Proceed` on the
    /// control connection before freezing (groups schedule freezes this way).
    #[serde(default)]
    pub hold_freeze: bool,
    /// The group this migration is part of (`ferry migrate --group`).
    #[serde(default)]
    pub group: Option<String>,
    /// The containers of this one's pod that move with it (itself included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod: Vec<String>,
    #[serde(default)]
    pub inject_fault: Option<Fault>,
}

fn yes() -> bool {
    true
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            strategy: Strategy::Cold,
            tcp_established: true,
            file_locks: false,
            allow_postcopy: false,
            max_downtime_ms: None,
            max_rounds: None,
            threshold_pct: None,
            compress: None,
            hold_freeze: false,
            group: None,
            pod: Vec::new(),
            inject_fault: None,
        }
    }
}

/// The network identity a container keeps across hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    /// Address with prefix, e.g. `10.77.1.10/16`.
    pub address: String,
    /// MAC address of the container's `eth0`.
    pub mac: String,
    /// Default gateway, if any.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The pod whose network namespace the container shares with others; the
    /// namespace is named after the pod instead of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl NetSpec {
    /// The name the namespace and its link are called by: the pod's, or the container's.
    pub fn owner<'a>(&'a self, container: &'a str) -> &'a str {
        self.pod.as_deref().unwrap_or(container)
    }
}

/// One entry of a bundle's root file system, sent before its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the bundle directory; never absolute, never with `..`.
    pub path: String,
    pub kind: FileKind,
    pub mode: u32,
    /// Bytes that follow in `Data` frames (files only).
    #[serde(default)]
    pub size: u64,
    /// Link target (symlinks only).
    #[serde(default)]
    pub target: Option<String>,
    /// Modification time, seconds since the epoch (files only).
    #[serde(default)]
    pub mtime: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// A container as an agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub name: String,
    pub status: String,
    pub pid: Option<u32>,
    pub bundle: String,
    #[serde(default)]
    pub net: Option<NetSpec>,
}

/// Where the destination's copy stands, as answered to [`Message::Resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The destination committed: the container runs there.
    Committed,
    /// The destination dropped its copy (or never had one).
    Dropped,
    /// The destination has not decided yet.
    Pending,
    /// The destination does not know this session.
    Unknown,
}

/// Everything that travels in a `Message` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    // ---- handshake (every connection) ----
    /// Client → server: who I am and a fresh nonce.
    Hello {
        role: Role,
        host: String,
        nonce: String,
        #[serde(default)]
        session: Option<String>,
    },
    /// Server → client: the server's nonce and its proof of knowing the secret.
    Challenge {
        host: String,
        nonce: String,
        proof: String,
    },
    /// Client → server: the client's proof.
    Proof {
        proof: String,
    },
    /// Server → client: authenticated.
    Welcome,
    /// Either side: the connection is refused, with a reason the user can act on.
    Refused {
        reason: String,
    },

    // ---- control: CLI → agent ----
    Ping,
    /// Start a container on this agent (the lab and tests use it).
    Run {
        name: String,
        args: Vec<String>,
        #[serde(default)]
        net: Option<NetSpec>,
    },
    /// Stop and delete a container and everything ferry made for it.
    Remove {
        name: String,
    },
    /// List the containers this agent runs.
    List,
    /// Migrate a container to the agent at `dest`.
    Migrate {
        container: String,
        dest: String,
        options: MigrateOptions,
    },
    /// Resume a container this agent keeps frozen after a failed migration.
    Resume {
        name: String,
    },
    /// During a migration started with `hold_freeze`: freeze now.
    Proceed,

    // ---- control: agent → CLI ----
    Pong {
        host: String,
        version: String,
    },
    Ran {
        container: ContainerInfo,
    },
    Containers {
        items: Vec<ContainerInfo>,
    },
    Removed,
    Resumed,
    /// Progress of a long operation.
    Progress {
        phase: String,
        done: u64,
        total: u64,
    },
    /// The final report of a migration (see docs/report.md), whatever its outcome.
    Report {
        report: serde_json::Value,
    },
    /// A request failed before anything changed.
    Error {
        message: String,
    },

    // ---- peer: source agent → destination agent ----
    Prepare {
        session: String,
        container: String,
        strategy: Strategy,
        bundle_digest: String,
        #[serde(default)]
        net: Option<NetSpec>,
        tcp_established: bool,
        #[serde(default)]
        inject_fault: Option<Fault>,
        /// The group the container moves with, recorded at the destination.
        #[serde(default)]
        group: Option<String>,
        /// A pod member: every container of its pod that moves with it (itself
        /// included). The destination reports it restored once all of them are.
        #[serde(default)]
        pod_members: Vec<String>,
    },
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
    Commit,
    /// Give up this session; the destination drops whatever it built.
    Abort {
        reason: String,
    },
    /// Ask what became of a session whose connection was lost.
    Resolve {
        session: String,
    },

    // ---- peer: destination agent → source agent ----
    /// The destination is ready; `need_bundle` asks for the bundle's files.
    Prepared {
        need_bundle: bool,
    },
    BundleStored,
    ImagesStored,
    /// The container runs at the destination, still isolated until `Commit`.
    Restored {
        stats: serde_json::Value,
    },
    /// The restore failed; the destination has cleaned up.
    RestoreFailed {
        reason: String,
    },
    /// The destination released the container's network: the move is complete.
    Committed {
        stats: serde_json::Value,
    },
    Aborted,
    Resolution {
        session: String,
        state: SessionState,
    },
    /// Post-copy: every page is in place at the destination.
    PostcopyDone {
        stats: serde_json::Value,
    },
    /// Post-copy: the destination had to stop the container (it lacked memory).
    PostcopyFailed {
        reason: String,
    },
}

impl Message {
    /// The variant's name, for errors and logs (never the content, which may be large).
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Challenge { .. } => "challenge",
            Message::Proof { .. } => "proof",
            Message::Welcome => "welcome",
            Message::Refused { .. } => "refused",
            Message::Ping => "ping",
            Message::Run { .. } => "run",
            Message::Remove { .. } => "remove",
            Message::List => "list",
            Message::Migrate { .. } => "migrate",
            Message::Resume { .. } => "resume",
            Message::Resumed => "resumed",
            Message::Proceed => "proceed",
            Message::Pong { .. } => "pong",
            Message::Ran { .. } => "ran",
            Message::Containers { .. } => "containers",
            Message::Removed => "removed",
            Message::Progress { .. } => "progress",
            Message::Report { .. } => "report",
            Message::Error { .. } => "error",
            Message::Prepare { .. } => "prepare",
            Message::BundleFile { .. } => "bundle_file",
            Message::BundleDone => "bundle_done",
            Message::ImageFile { .. } => "image_file",
            Message::ImagesDone { .. } => "images_done",
            Message::Restore => "restore",
            Message::Commit => "commit",
            Message::Abort { .. } => "abort",
            Message::Resolve { .. } => "resolve",
            Message::Prepared { .. } => "prepared",
            Message::BundleStored => "bundle_stored",
            Message::ImagesStored => "images_stored",
            Message::Restored { .. } => "restored",
            Message::RestoreFailed { .. } => "restore_failed",
            Message::Committed { .. } => "committed",
            Message::Aborted => "aborted",
            Message::Resolution { .. } => "resolution",
            Message::PostcopyDone { .. } => "postcopy_done",
            Message::PostcopyFailed { .. } => "postcopy_failed",
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain data types cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, ProtoError> {
        serde_json::from_slice(payload).map_err(|e| ProtoError::BadMessage(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            Message::Hello {
                role: Role::Peer,
                host: "a".into(),
                nonce: "00".into(),
                session: None,
            },
            Message::Migrate {
                container: "redis".into(),
                dest: "b".into(),
                options: MigrateOptions::default(),
            },
            Message::BundleFile {
                entry: FileEntry {
                    path: "rootfs/etc".into(),
                    kind: FileKind::Dir,
                    mode: 0o755,
                    size: 0,
                    target: None,
                    mtime: 0,
                },
            },
            Message::Resolution {
                session: "s".into(),
                state: SessionState::Committed,
            },
        ];
        for m in msgs {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        assert!(Message::decode(br#"{"type":"remove","name":"x","extra":1}"#).is_err());
        assert!(Message::decode(br#"{"type":"launch_missiles"}"#).is_err());
        assert!(Message::decode(b"not json").is_err());
    }

    #[test]
    fn strategy_names_parse() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>().unwrap(), s);
        }
        assert!("warp"
            .parse::<Strategy>()
            .unwrap_err()
            .contains("unknown strategy"));
    }
}
