//! What the destination measures and tells the source, which puts it in the report.

use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};

use crate::{Phase, RestoreStats, Usage};

/// What the destination tells the source about its side (in `Restored` and `Committed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestStats {
    pub phases: Vec<Phase>,
    pub criu_restore: Option<RestoreStats>,
    pub usage: Usage,
    pub notes: Vec<String>,
    /// At `Committed`: the restored connections whose peers the destination watches; it
    /// sends `PeersResumed` when it has seen them all, or its watch ends.
    #[serde(default)]
    pub watching_peers: u32,
}

/// What the destination's post-copy daemon did (in `PostcopyDone`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostcopyStats {
    pub pages_total: u64,
    pub pages_pushed: u64,
    pub pages_on_demand: u64,
    pub faults: u64,
    pub zero_pages: u64,
}

/// What a page pump sent so far, read while it runs (progress, and what a failed run
/// sent).
#[derive(Debug, Default)]
pub struct PageCounters {
    pub pages: AtomicU64,
    pub bytes: AtomicU64,
}
