//! `ferry bench group`: six containers in three levels of two — two Redis servers with
//! data, two workers holding a connection to them, two front servers holding the
//! client's connections — moved between the lab's hosts with each schedule in turn.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use ferry_controller::group::{run_group, GroupReport, GroupRun, Placement};
use ferry_engine::group::{Group, RestoreOrder, Schedule};
use ferry_transport::Endpoint;
use ferry_types::MigrateOptions;

use crate::cold::target;
use crate::labctl::{start_probe, BenchLab, ProbeHandle};
use crate::row::{Row, Sample};

#[derive(Debug, Clone)]
pub struct GroupBench {
    pub runs: usize,
    pub ferry: PathBuf,
    pub link: Option<String>,
    /// Data in each of the two databases.
    pub db_bytes: u64,
    /// The group file's restore order.
    pub restore_order: RestoreOrder,
}

const GROUP: &str = r#"
name = "bench"
[[container]]
name = "front1"
after = ["worker1"]
[[container]]
name = "front2"
after = ["worker2"]
[[container]]
name = "worker1"
after = ["db1"]
[[container]]
name = "worker2"
after = ["db2"]
[[container]]
name = "db1"
[[container]]
name = "db2"
"#;

/// Rows per schedule, and the reports of the last measured run (for the timeline).
#[derive(Debug)]
pub struct GroupOutcome {
    pub rows: Vec<Row>,
    pub last: Vec<GroupReport>,
}

async fn deploy(lab: &mut BenchLab, b: &GroupBench) -> anyhow::Result<Vec<ProbeHandle>> {
    let mut probes = Vec::new();
    for i in 1..=2 {
        let (db, _) = lab.run_redis("a", &format!("db{i}")).await?;
        db.fill(b.db_bytes)?;
        ferry_lab::run(
            &mut lab.lab,
            "a",
            &format!("worker{i}"),
            None,
            None,
            [
                "/usr/bin/redis-cli",
                "-h",
                &db.host,
                "-r",
                "-1",
                "-i",
                "0.05",
                "incr",
                "ticks",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
        .await?;
        let (front, _) = lab.run_redis("a", &format!("front{i}")).await?;
        probes.push(start_probe(
            &lab.lab.client_netns,
            target(&front)?,
            Duration::from_millis(1),
        ));
    }
    Ok(probes)
}

fn placements(
    lab: &BenchLab,
    group: &Group,
    from: &str,
    to: &str,
) -> anyhow::Result<Vec<Placement>> {
    let (a, b) = (lab.lab.host(from)?, lab.lab.host(to)?);
    Ok(group
        .members
        .iter()
        .map(|_| Placement {
            source: Endpoint::Unix(a.control.clone()),
            source_peer: Some(a.listen.to_string()),
            dest: b.listen.to_string(),
            dest_control: Some(Endpoint::Unix(b.control.clone())),
        })
        .collect())
}

/// Runs the bench: every run moves the group once with each schedule, alternating
/// between the hosts.
pub async fn run_bench(b: &GroupBench) -> anyhow::Result<GroupOutcome> {
    let mut lab = BenchLab::up("bench", b.link.clone(), 0.0, b.ferry.clone()).await?;
    let result = async {
        let text = format!("restore_order = \"{}\"\n{GROUP}", b.restore_order.name());
        let group = Group::parse(&text).context("the bench's group")?;
        let probes = deploy(&mut lab, b).await?;
        let mut samples: [Vec<Sample>; 3] = Default::default();
        let mut last = Vec::new();
        let mut here = "a";
        for i in 0..=b.runs {
            let mut line = Vec::new();
            last.clear();
            for (k, schedule) in Schedule::ALL.into_iter().enumerate() {
                let there = if here == "a" { "b" } else { "a" };
                let run = Arc::new(GroupRun {
                    group: group.clone(),
                    schedule,
                    base: MigrateOptions {
                        group: Some(group.name.clone()),
                        ..Default::default()
                    },
                    creds: Default::default(),
                    placements: placements(&lab, &group, here, there)?,
                    pods: vec![None; group.members.len()],
                    fault_member: None,
                });
                let r = run_group(run).await?;
                if r.outcome != "migrated" {
                    bail!(
                        "the {} group migration did not succeed: {}",
                        schedule.name(),
                        r.reason.unwrap_or_default()
                    );
                }
                here = there;
                line.push(format!(
                    "{} total {:.0} ms, worst downtime {:.0} ms",
                    schedule.name(),
                    r.total_ms,
                    r.worst_downtime_ms.unwrap_or(0.0)
                ));
                let bytes: u64 = r
                    .containers
                    .iter()
                    .filter_map(|c| c.report.as_ref().map(|x| x.bytes_sent))
                    .sum();
                if i > 0 {
                    samples[k].push(Sample {
                        downtime_ms: r.worst_downtime_ms.unwrap_or(0.0),
                        total_ms: r.total_ms,
                        bytes_sent: bytes as f64,
                        ..Default::default()
                    });
                }
                last.push(r);
            }
            eprintln!("  run {i}: {}", line.join("; "));
        }
        for p in probes {
            let seen = p.stop()?;
            if !seen.errors.is_empty() || seen.lost_or_repeated > 0 {
                bail!(
                    "a client of the front servers saw errors or lost increments: {:?}",
                    seen.errors
                );
            }
        }
        let mut rows = Vec::new();
        for (schedule, s) in Schedule::ALL.iter().zip(&samples) {
            rows.extend(Row::from_samples(
                &format!("group-{}", schedule.name()),
                2 * b.db_bytes,
                s,
            ));
        }
        Ok(GroupOutcome { rows, last })
    }
    .await;
    lab.down().await;
    result
}
