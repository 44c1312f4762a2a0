//! How a daemonless migration reached its destination over SSH.

use serde::{Deserialize, Serialize};

/// The SSH leg of a migration (`ferry migrate --to ssh://…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViaSsh {
    /// The destination as given: `ssh://[USER@]HOST[:PORT]`.
    pub target: String,
    /// From starting ssh until the connection was up.
    pub connect_ms: f64,
    /// Where this build of ferry ran on the far side.
    pub remote_binary: String,
    /// Bytes copied because the far side lacked this build (none when it had it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_bytes: Option<u64>,
    /// From the connection up until ferry listened on the far side (the copy included).
    pub start_ms: f64,
}

impl ViaSsh {
    /// One line for the report's table.
    pub fn line(&self) -> String {
        let copy = match self.copied_bytes {
            Some(b) => format!("ferry copied there ({:.1} MB)", b as f64 / 1e6),
            None => "ferry already there".to_string(),
        };
        format!(
            "over SSH to {}: connected in {:.0} ms, {copy}, serving after {:.0} ms more",
            self.target, self.connect_ms, self.start_ms
        )
    }
}
