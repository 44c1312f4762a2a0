//! The group's report: what happened to each member, and to the group as a whole.

use ferry_types::{Report, StrategyChoice};
use serde::Serialize;

use super::{RestoreOrder, Schedule};

/// What the CLI knows of one member once it ran.
#[derive(Debug, Clone, Serialize)]
pub struct MemberResult {
    pub name: String,
    pub level: u32,
    pub restore_level: u32,
    pub strategy: Option<StrategyChoice>,
    pub outcome: String,
    pub start_ms: f64,
    pub end_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When each phase began, as the CLI saw the agent's progress (ms since the start).
    pub timeline: Vec<(String, f64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
}

/// The group's report.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub group: String,
    pub schedule: Schedule,
    pub restore_order: RestoreOrder,
    pub outcome: String,
    pub total_ms: f64,
    /// The longest downtime of any one member.
    pub worst_downtime_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Members moved back to the source after another failed.
    pub moved_back: Vec<String>,
    pub containers: Vec<MemberResult>,
}

/// A short table of the group's report, for people.
pub fn render(r: &GroupReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ferry migrate --group {}  schedule {}  restore {}  outcome {}  total {:.1} ms  worst downtime {}",
        r.group,
        r.schedule.name(),
        r.restore_order.name(),
        r.outcome,
        r.total_ms,
        r.worst_downtime_ms
            .map_or("-".to_string(), |d| format!("{d:.1} ms"))
    );
    if let Some(why) = &r.reason {
        let _ = writeln!(s, "  reason: {why}");
    }
    let _ = writeln!(
        s,
        "  {:<20}{:>6}{:>8}{:>12}{:>12}{:>14}  outcome",
        "container", "level", "restore", "start ms", "end ms", "downtime ms"
    );
    for c in &r.containers {
        let _ = writeln!(
            s,
            "  {:<20}{:>6}{:>8}{:>12.1}{:>12.1}{:>14}  {}",
            c.name,
            c.level,
            c.restore_level,
            c.start_ms,
            c.end_ms,
            c.downtime_ms.map_or("-".into(), |d| format!("{d:.1}")),
            c.outcome
        );
    }
    if !r.moved_back.is_empty() {
        let _ = writeln!(s, "  moved back to the source: {}", r.moved_back.join(", "));
    }
    s
}
