//! What the destination measures and tells the source, which puts it in the report.

use serde::{Deserialize, Serialize};

use crate::{Phase, RestoreStats, Usage};

/// What the destination tells the source about its side (in `Restored` and `Committed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestStats {
    pub phases: Vec<Phase>,
    pub criu_restore: Option<RestoreStats>,
    pub usage: Usage,
    pub notes: Vec<String>,
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
