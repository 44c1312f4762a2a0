//! The report of a checkpoint, restore or migration. Its JSON form is documented in
//! `docs/report.md` and is an interface: fields are added, never renamed or removed.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{DumpStats, ImageSizes, RestoreStats, Strategy, Usage};

/// A duration in milliseconds, rounded to the microsecond, as reports give them.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Version of the report format.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Checkpoint,
    Restore,
    Migrate,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The container runs at the destination and is gone from the source.
    Migrated,
    /// Something failed; the container runs on the source, as before.
    RolledBack,
    /// Something failed and the container could not be kept running (see `reason`).
    Failed,
    /// A local checkpoint finished.
    Checkpointed,
    /// A local restore finished.
    Restored,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Migrated => "migrated",
            Outcome::RolledBack => "rolled_back",
            Outcome::Failed => "failed",
            Outcome::Checkpointed => "checkpointed",
            Outcome::Restored => "restored",
        }
    }

    pub fn is_success(self) -> bool {
        matches!(
            self,
            Outcome::Migrated | Outcome::Checkpointed | Outcome::Restored
        )
    }
}

/// One timed phase. `start_ms` counts from the start of the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub start_ms: f64,
    pub ms: f64,
}

/// CRIU's own statistics, from `stats-dump` and `stats-restore`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriuStats {
    pub dump: Option<DumpStats>,
    pub restore: Option<RestoreStats>,
}

/// What a failed CRIU run said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriuErrors {
    pub log: String,
    pub lines: Vec<String>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub report_version: u32,
    pub operation: Operation,
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// From the freeze until the container runs again (where it runs again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<f64>,
    pub total_ms: f64,
    /// Bytes sent to the destination: images, pages and bundle.
    pub bytes_sent: u64,
    #[serde(default)]
    pub bundle_bytes: u64,
    pub phases: Vec<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageSizes>,
    #[serde(default)]
    pub criu: CriuStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criu_errors: Option<CriuErrors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_usage: Option<Usage>,
    /// Post-copy: pages that were missing when the container started at the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_total: Option<u64>,
    /// Post-copy: pages installed because a process touched them first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_on_demand: Option<u64>,
    /// Post-copy: pages installed from the background stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_pushed: Option<u64>,
    /// Post-copy: from the container running at the destination until its last page
    /// arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcopy_ms: Option<f64>,
    /// When the source released its copy, from the start of the migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_released_ms: Option<f64>,
    /// Pre-copy and hybrid: the rounds and the final copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precopy: Option<PrecopySummary>,
    /// The restored established connections and when each peer's first packet reached
    /// the container after its restore (seen at the destination).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_resumed: Vec<PeerResumed>,
    /// Free-form notes: what ferry chose and why (for example which page path ran).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// A daemonless migration's way there, over SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<crate::ssh::ViaSsh>,
}

/// One restored established connection, as the destination saw its peer come back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerResumed {
    /// The peer's address and port.
    pub peer: String,
    /// The container's port of the connection.
    pub local_port: u16,
    /// From the end of the restore until the peer's first packet reached the container;
    /// absent if none came while the destination watched (an idle connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_packet_ms: Option<f64>,
    /// The peer's packet had come during the downtime: it was held and delivered at the
    /// commit.
    #[serde(default)]
    pub held: bool,
}

/// One pre-copy round, sent while the container ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecopyRound {
    pub round: u32,
    /// Bytes of the pages read.
    pub scanned_bytes: u64,
    /// Bytes of the pages whose content differed from the previous round (all, in the
    /// first).
    pub changed_bytes: u64,
    /// Bytes of the pages the destination did not hold yet, before compression.
    pub sent_bytes: u64,
    /// Bytes on the wire for this round.
    pub wire_bytes: u64,
    pub ms: f64,
    /// The downtime the stopping rule predicted for a freeze after this round.
    pub predicted_downtime_ms: f64,
}

/// Why the rounds ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The predicted downtime met `--max-downtime`.
    Target,
    /// `--max-rounds` rounds ran.
    MaxRounds,
    /// A round sent less than `--threshold` percent of the first.
    Threshold,
    /// What is left to send would take a few milliseconds.
    Converged,
    /// The rounds stopped shrinking: the memory changes as fast as the link carries it.
    NoProgress,
}

/// Pre-copy's part of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecopySummary {
    /// `ferry-hash` (ferry reads and hashes the memory; needs no dirty tracking) or
    /// `criu-pre-dump`.
    pub path: String,
    pub rounds: Vec<PrecopyRound>,
    pub stop_reason: StopReason,
    /// `zstd` or `none`.
    pub compress: String,
    /// The link's rate as the rounds measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_mbit_s: Option<f64>,
    /// After the freeze: pages sent whole, and pages sent as a reference to one the
    /// destination held.
    pub final_pages_sent: u64,
    pub final_pages_referenced: u64,
    pub final_wire_bytes: u64,
}

impl Report {
    pub fn new(operation: Operation, container: &str) -> Self {
        Self {
            report_version: REPORT_VERSION,
            operation,
            container: container.to_string(),
            strategy: None,
            outcome: Outcome::Failed,
            reason: None,
            source: None,
            destination: None,
            downtime_ms: None,
            total_ms: 0.0,
            bytes_sent: 0,
            bundle_bytes: 0,
            phases: Vec::new(),
            images: None,
            criu: CriuStats::default(),
            criu_errors: None,
            usage: None,
            destination_usage: None,
            pages_total: None,
            pages_on_demand: None,
            pages_pushed: None,
            postcopy_ms: None,
            source_released_ms: None,
            precopy: None,
            peers_resumed: Vec::new(),
            notes: Vec::new(),
            ssh: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn phase_ms(&self, name: &str) -> Option<f64> {
        self.phases.iter().find(|p| p.name == name).map(|p| p.ms)
    }

    /// A short table for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let op = match self.operation {
            Operation::Checkpoint => "checkpoint",
            Operation::Restore => "restore",
            Operation::Migrate => "migrate",
        };
        let _ = write!(s, "ferry {op} {}", self.container);
        if let (Some(a), Some(b)) = (&self.source, &self.destination) {
            let _ = write!(s, "  {a} -> {b}");
        }
        if let Some(st) = self.strategy {
            let _ = write!(s, "  strategy {st}");
        }
        let _ = writeln!(s, "  outcome {}", self.outcome.name());
        if let Some(r) = &self.reason {
            let _ = writeln!(s, "  reason: {r}");
        }
        if let Some(v) = &self.ssh {
            let _ = writeln!(s, "  {}", v.line());
        }
        if let Some(d) = self.downtime_ms {
            let _ = writeln!(s, "  {:<22}{:>10.1} ms", "downtime", d);
        }
        let _ = writeln!(s, "  {:<22}{:>10.1} ms", "total", self.total_ms);
        if self.bytes_sent > 0 {
            let _ = writeln!(
                s,
                "  {:<22}{:>10} (bundle {})",
                "sent",
                human_bytes(self.bytes_sent),
                human_bytes(self.bundle_bytes)
            );
        }
        if let (Some(t), Some(ms)) = (self.pages_total, self.postcopy_ms) {
            let _ = writeln!(
                s,
                "  {:<22}{:>10.1} ms ({} pages: {} on demand, {} pushed)",
                "post-copy",
                ms,
                t,
                self.pages_on_demand.unwrap_or(0),
                self.pages_pushed.unwrap_or(0)
            );
        }
        if let Some(pc) = &self.precopy {
            render_precopy(&mut s, pc);
        }
        if let Some(i) = &self.images {
            let _ = writeln!(
                s,
                "  {:<22}{:>10} ({} of pages, {} files)",
                "images",
                human_bytes(i.total_bytes),
                human_bytes(i.pages_bytes),
                i.files
            );
        }
        if !self.phases.is_empty() {
            let _ = writeln!(s, "  {:<22}{:>10} {:>10}", "phase", "start ms", "ms");
            for p in &self.phases {
                let _ = writeln!(s, "    {:<20}{:>10.1} {:>10.1}", p.name, p.start_ms, p.ms);
            }
        }
        self.render_tools(&mut s);
        s
    }

    /// CRIU's statistics, the resources used, the notes and CRIU's error lines.
    fn render_tools(&self, s: &mut String) {
        if let Some(d) = &self.criu.dump {
            let _ = writeln!(
                s,
                "  CRIU dump: freezing {:.1} ms, frozen {:.1} ms, memdump {:.1} ms, memwrite {:.1} ms, pages scanned {}, written {}",
                f64::from(d.freezing_time_us) / 1e3,
                f64::from(d.frozen_time_us) / 1e3,
                f64::from(d.memdump_time_us) / 1e3,
                f64::from(d.memwrite_time_us) / 1e3,
                d.pages_scanned,
                d.pages_written
            );
        }
        if let Some(r) = &self.criu.restore {
            let _ = writeln!(
                s,
                "  CRIU restore: forking {:.1} ms, restore {:.1} ms, pages restored {}",
                f64::from(r.forking_time_us) / 1e3,
                f64::from(r.restore_time_us) / 1e3,
                r.pages_restored.map_or("-".to_string(), |p| p.to_string())
            );
        }
        if let Some(u) = &self.usage {
            let _ = writeln!(
                s,
                "  CPU {:.0} ms (ferry) + {:.0} ms (runc, CRIU); peak RSS {} (ferry), {} (largest child)",
                u.cpu_ms_self,
                u.cpu_ms_children,
                human_bytes(u.peak_rss_kib_self * 1024),
                human_bytes(u.peak_rss_kib_children * 1024)
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        if let Some(e) = &self.criu_errors {
            let _ = writeln!(s, "  CRIU log: {}", e.log);
            for l in &e.lines {
                let _ = writeln!(s, "    {l}");
            }
        }
    }
}

/// `1.5 MB`-style sizes (decimal units).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn render_precopy(s: &mut String, pc: &PrecopySummary) {
    let _ = writeln!(
        s,
        "  pre-copy ({}, compress {}): {} rounds, stopped: {}",
        pc.path,
        pc.compress,
        pc.rounds.len(),
        serde_json::to_value(pc.stop_reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "    {:<6}{:>10}{:>10}{:>10}{:>10}{:>10}{:>12}",
        "round", "scanned", "changed", "new", "wire", "ms", "predicted"
    );
    for r in &pc.rounds {
        let _ = writeln!(
            s,
            "    {:<6}{:>10}{:>10}{:>10}{:>10}{:>10.1}{:>9.0} ms",
            r.round,
            human_bytes(r.scanned_bytes),
            human_bytes(r.changed_bytes),
            human_bytes(r.sent_bytes),
            human_bytes(r.wire_bytes),
            r.ms,
            r.predicted_downtime_ms
        );
    }
    let _ = writeln!(
        s,
        "    final: {} pages sent, {} by reference, {} on the wire",
        pc.final_pages_sent,
        pc.final_pages_referenced,
        human_bytes(pc.final_wire_bytes)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new(Operation::Migrate, "redis");
        r.strategy = Some(Strategy::Cold);
        r.outcome = Outcome::Migrated;
        r.downtime_ms = Some(412.25);
        r.total_ms = 1000.0;
        r.bytes_sent = 105_000_000;
        r.phases.push(Phase {
            name: "dump".into(),
            start_ms: 10.0,
            ms: 300.0,
        });
        r
    }

    #[test]
    fn json_uses_the_documented_names() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        for key in [
            "strategy",
            "outcome",
            "downtime_ms",
            "total_ms",
            "bytes_sent",
            "phases",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["outcome"], "migrated");
        assert_eq!(v["strategy"], "cold");
        assert_eq!(v["phases"][0]["name"], "dump");
        assert_eq!(v["phases"][0]["ms"], 300.0);
    }

    #[test]
    fn json_round_trips() {
        let r = sample();
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn rolled_back_names_its_reason_in_the_table() {
        let mut r = sample();
        r.outcome = Outcome::RolledBack;
        r.reason = Some("destination unreachable".into());
        let t = r.render();
        assert!(t.contains("outcome rolled_back"));
        assert!(t.contains("destination unreachable"));
        assert!(t.contains("412.2") || t.contains("412.3"));
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(2_000_000_000), "2.0 GB");
    }
}
