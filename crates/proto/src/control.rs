//! Control connections: a CLI (or a script) asks an agent; the agent answers, with
//! progress events on the way for long requests.

use ferry_types::{ContainerInfo, MigrateOptions, NetSpec, Preflight, Report};
use serde::{Deserialize, Serialize};

use crate::WireMessage;

/// The progress phase a migration started with `hold_freeze` reports once it is ready to
/// freeze: it then waits for [`ControlRequest::Proceed`].
pub const READY_PHASE: &str = "ready";

/// The progress phase a migration started with `hold_restore` reports once its images
/// are at the destination, frozen at the source: it then waits for
/// [`ControlRequest::Proceed`] before the destination restores it.
pub const RESTORE_READY_PHASE: &str = "restore-ready";

/// CLI → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
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
    /// The preflight of a migration: what it would find and do, changing nothing.
    Check {
        container: String,
        #[serde(default)]
        dest: Option<String>,
        options: MigrateOptions,
    },
    /// Checkpoint `container` in place, point its sockets connected to `from` (an IPv4
    /// address) at `to`, and restore it: a peer of a container that moves to a new
    /// address (`ferry migrate --new-ip --peers`).
    Readdress {
        container: String,
        from: String,
        to: String,
    },
    /// During a migration started with `hold_freeze`: freeze now; with `hold_restore`,
    /// after [`RESTORE_READY_PHASE`]: restore now. Anything else sent instead (a `Ping`)
    /// lets it give up: unchanged before the freeze, rolled back after it.
    Proceed,
    /// Keep a standby checkpoint of `container` at the agent at `dest` (its peer
    /// address), a new one every `every_ms`, while it runs here. Answered after the
    /// first round.
    Standby {
        container: String,
        dest: String,
        every_ms: u64,
    },
    /// The established TCP connections of this agent's containers (of `container` only,
    /// when given).
    Connections {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
    },
    /// Stop keeping a standby of `container`.
    StandbyStop {
        container: String,
    },
    /// The standbys this agent keeps of its containers, and the checkpoints it holds.
    Standbys,
    /// Restore `container` here from the newest standby checkpoint this agent holds
    /// (its source is gone).
    Failover {
        container: String,
    },
}

/// Agent → CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlReply {
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
    /// A peer readdressed: how many of its sockets now point at the new address, and
    /// how long it was stopped.
    Readdressed {
        sockets: u32,
        downtime_ms: f64,
    },
    /// Progress of a long operation.
    Progress {
        phase: String,
        done: u64,
        total: u64,
    },
    /// The final report of a migration (see docs/report.md), whatever its outcome.
    Report {
        report: Box<Report>,
    },
    /// The preflight's findings.
    Checked {
        preflight: Box<Preflight>,
    },
    /// A request failed before anything changed.
    Error {
        message: String,
    },
    /// A standby's first round is stored: it goes on every `every_ms`.
    StandbyStarted {
        round: ferry_types::standby::StandbyRound,
    },
    StandbyStopped,
    Connections {
        items: Vec<ferry_types::ContainerConnections>,
    },
    Standbys {
        keeping: Vec<ferry_types::standby::StandbyStatus>,
        holding: Vec<ferry_types::standby::StandbyCheckpoint>,
    },
    FailedOver {
        failover: Box<ferry_types::standby::Failover>,
    },
}

impl WireMessage for ControlRequest {
    const FAMILY: &'static str = "control request";

    fn name(&self) -> &'static str {
        match self {
            ControlRequest::Ping => "ping",
            ControlRequest::Run { .. } => "run",
            ControlRequest::Remove { .. } => "remove",
            ControlRequest::List => "list",
            ControlRequest::Migrate { .. } => "migrate",
            ControlRequest::Resume { .. } => "resume",
            ControlRequest::Check { .. } => "check",
            ControlRequest::Proceed => "proceed",
            ControlRequest::Readdress { .. } => "readdress",
            ControlRequest::Standby { .. } => "standby",
            ControlRequest::StandbyStop { .. } => "standby_stop",
            ControlRequest::Standbys => "standbys",
            ControlRequest::Failover { .. } => "failover",
            ControlRequest::Connections { .. } => "connections",
        }
    }
}

impl WireMessage for ControlReply {
    const FAMILY: &'static str = "control reply";

    fn name(&self) -> &'static str {
        match self {
            ControlReply::Pong { .. } => "pong",
            ControlReply::Ran { .. } => "ran",
            ControlReply::Containers { .. } => "containers",
            ControlReply::Removed => "removed",
            ControlReply::Resumed => "resumed",
            ControlReply::Readdressed { .. } => "readdressed",
            ControlReply::Progress { .. } => "progress",
            ControlReply::Report { .. } => "report",
            ControlReply::Checked { .. } => "checked",
            ControlReply::Error { .. } => "error",
            ControlReply::StandbyStarted { .. } => "standby_started",
            ControlReply::StandbyStopped => "standby_stopped",
            ControlReply::Standbys { .. } => "standbys",
            ControlReply::FailedOver { .. } => "failed_over",
            ControlReply::Connections { .. } => "connections",
        }
    }
}
