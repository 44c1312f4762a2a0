//! Standby checkpoints (`ferry standby`) and failing over to one (`ferry failover`).

use serde::{Deserialize, Serialize};

use crate::Report;

/// One standby round: a checkpoint taken while the container kept running, and shipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyRound {
    pub container: String,
    /// The checkpoint's number at the standby host (1, 2, …).
    pub seq: u64,
    /// When it was taken (Unix time, ms).
    pub taken_unix_ms: u64,
    /// How long the container was paused for it (its freeze and CRIU's dump).
    pub paused_ms: f64,
    /// From the freeze until the standby host had stored it.
    pub total_ms: f64,
    /// Bytes sent for it (pages that changed since the last checkpoint, the other image
    /// files, the bundle when the standby host lacked it).
    pub bytes_sent: u64,
    /// Its memory pages, and how many of them the standby host already held.
    pub pages: u64,
    pub pages_held: u64,
}

/// A standby kept by the host that runs the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyStatus {
    pub container: String,
    /// The standby host (its peer address).
    pub to: String,
    pub every_ms: u64,
    pub rounds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<StandbyRound>,
    /// Why the last round failed, if it did (the next one tries again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A complete standby checkpoint this host holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyCheckpoint {
    pub container: String,
    pub seq: u64,
    /// The host it came from.
    pub source: String,
    pub taken_unix_ms: u64,
    /// Its age now.
    pub age_ms: u64,
    pub bytes: u64,
}

/// What `ferry failover` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    pub container: String,
    /// The host it runs on now.
    pub on: String,
    /// The checkpoint restored, and how old it was when it was restored.
    pub checkpoint: StandbyCheckpoint,
    pub restore: Report,
}
