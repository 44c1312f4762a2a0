//! CPU time and peak memory of ferry and of the tools it runs (runc, CRIU).

use serde::{Deserialize, Serialize};

/// Resource use over an operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time (user + system) of this process during the operation.
    pub cpu_ms_self: f64,
    /// CPU time of child processes (runc, CRIU) that finished during the operation.
    pub cpu_ms_children: f64,
    /// Peak resident memory of this process so far.
    pub peak_rss_kib_self: u64,
    /// Largest peak resident memory of any child process so far.
    pub peak_rss_kib_children: u64,
}
