//! Running a group's migrations (`ferry migrate --group FILE`, `ferry bench group`): the
//! containers of a deployment, in order, as one.
//!
//! Each container moves with its own migration (its own strategy, rollback and report).
//! The schedule decides when each starts; if one fails, those already moved are moved
//! back, so that the whole group ends up on the source, each container running exactly
//! once (see `docs/groups.md`).
//!
//! - [`run_group`] and the schedules: `run.rs`;
//! - one member's migration, and moving it back: `member.rs`;
//! - the restore order between units: `order.rs`;
//! - pods (members sharing a network namespace move as one unit): `pods.rs`;
//! - the group's report: `report.rs`.

mod member;
mod order;
mod pods;
mod report;
mod run;

use std::path::Path;

use ferry_engine::group::Group;
use ferry_transport::{Credentials, Endpoint};
use ferry_types::MigrateOptions;

use crate::ControllerError;

pub use ferry_engine::group::{RestoreOrder, Schedule};
pub use pods::discover_pods;
pub use report::{render, GroupReport, MemberResult};
pub use run::run_group;

/// Where a member runs and how to reach the agents.
#[derive(Debug, Clone)]
pub struct Placement {
    pub source: Endpoint,
    /// The source agent's peer address, to move a member back.
    pub source_peer: Option<String>,
    pub dest: String,
    pub dest_control: Option<Endpoint>,
}

#[derive(Debug, Clone)]
pub struct GroupRun {
    pub group: Group,
    pub schedule: Schedule,
    pub base: MigrateOptions,
    pub creds: Credentials,
    pub placements: Vec<Placement>,
    /// Each member's pod, if it shares a network namespace (see [`discover_pods`]).
    pub pods: Vec<Option<String>>,
    /// Fault injection (tests): which member gets `base.inject_fault`.
    pub fault_member: Option<String>,
}

/// Reads and checks a group file; every problem names the file.
pub fn load(path: &Path) -> Result<Group, ControllerError> {
    let bad = |reason: String| ControllerError::GroupFile {
        path: path.to_path_buf(),
        reason,
    };
    let meta =
        std::fs::metadata(path).map_err(|e| bad(format!("cannot read the group file: {e}")))?;
    if meta.len() > ferry_engine::group::MAX_FILE as u64 {
        return Err(bad("the group file is too large".into()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read the group file: {e}")))?;
    Group::parse(&text).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests;
