//! Running a group's migrations (`ferry migrate --group FILE`, `ferry bench group`): the
//! containers of a deployment, in order, as one.
//!
//! Each container moves with its own migration (its own strategy, rollback and report).
//! The schedule decides when each starts; if one fails, those already moved are moved
//! back, so that the whole group ends up on the source, each container running exactly
//! once (see `docs/groups.md`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ferry_engine::group::{Group, Member};
use ferry_engine::Report;
use ferry_proto::{ControlReply, ControlRequest, WireMessage};
use ferry_transport::{Credentials, Endpoint};
use ferry_types::{MigrateOptions, Strategy, StrategyChoice};

use crate::AgentError;
use serde::Serialize;

pub use ferry_engine::group::Schedule;

/// What the CLI knows of one member once it ran.
#[derive(Debug, Clone, Serialize)]
pub struct MemberResult {
    pub name: String,
    pub level: u32,
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
pub fn load(path: &Path) -> Result<Group, AgentError> {
    let bad = |e: String| AgentError::Input(format!("{}: {e}", path.display()));
    let meta =
        std::fs::metadata(path).map_err(|e| bad(format!("cannot read the group file: {e}")))?;
    if meta.len() > ferry_engine::group::MAX_FILE as u64 {
        return Err(bad("the group file is too large".into()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read the group file: {e}")))?;
    Group::parse(&text).map_err(|e| bad(e.to_string()))
}

/// Asks the source agents which members belong to a pod, and checks that the group
/// names every container of each such pod (a pod moves as a whole).
pub async fn discover_pods(
    group: &Group,
    placements: &[Placement],
    creds: &Credentials,
) -> Result<Vec<Option<String>>, AgentError> {
    let mut listed: Vec<(String, Vec<ferry_types::ContainerInfo>)> = Vec::new();
    for p in placements {
        let key = p.source.to_string();
        if listed.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let mut conn = crate::client::control(&p.source, creds).await?;
        let items = match crate::client::request(&mut conn, &ControlRequest::List, |_| {}).await? {
            ControlReply::Containers { items } => items,
            other => {
                return Err(AgentError::Input(format!(
                    "agent {key} answered '{}' to a list request",
                    other.name()
                )))
            }
        };
        listed.push((key, items));
    }
    let mut pods = Vec::new();
    for (m, p) in group.members.iter().zip(placements) {
        let key = p.source.to_string();
        let items = listed
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default();
        let pod = items
            .iter()
            .find(|c| c.name == m.name)
            .and_then(|c| c.net.as_ref())
            .and_then(|n| n.pod.clone());
        if let Some(pod) = &pod {
            let missing = items.iter().find(|c| {
                c.net.as_ref().and_then(|n| n.pod.as_deref()) == Some(pod.as_str())
                    && group.member(&c.name).is_none()
            });
            if let Some(c) = missing {
                return Err(AgentError::Input(format!(
                    "container '{}' shares the network namespace of pod '{pod}' with '{}', which group '{}' does not name; a pod moves as a whole: add '{}' to the group",
                    m.name, c.name, group.name, c.name
                )));
            }
        }
        pods.push(pod);
    }
    Ok(pods)
}

/// The members in freeze order, a pod's members together as one unit (placed where its
/// first member is): a unit's members freeze, move and are restored together.
fn units(run: &GroupRun) -> Vec<Vec<Member>> {
    let mut out: Vec<(Option<String>, Vec<Member>)> = Vec::new();
    for m in run.group.freeze_order() {
        let pod = pod_of(run, m);
        match out.iter_mut().find(|(p, _)| pod.is_some() && *p == pod) {
            Some((_, u)) => u.push(m.clone()),
            None => out.push((pod, vec![m.clone()])),
        }
    }
    out.into_iter().map(|(_, u)| u).collect()
}

fn pod_of(run: &GroupRun, m: &Member) -> Option<String> {
    let i = run.group.members.iter().position(|x| x.name == m.name)?;
    run.pods.get(i).cloned().flatten()
}

/// The members moving with `m` in its pod (itself included); empty outside pods.
fn pod_mates(run: &GroupRun, m: &Member) -> Vec<String> {
    let Some(pod) = pod_of(run, m) else {
        return Vec::new();
    };
    run.group
        .members
        .iter()
        .filter(|x| pod_of(run, x).as_deref() == Some(pod.as_str()))
        .map(|x| x.name.clone())
        .collect()
}

/// Signals of one member's migration to the scheduler.
struct Signals {
    /// Fire to let the member freeze (with `hold_freeze`).
    gate: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Fired once the member restores at the destination (see [`RELEASE_AT`]).
    released: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The phase after which the next member may freeze: the member is being restored at the
/// destination, so its dump and transfer are over and the next one's dump and transfer
/// overlap its restore.
const RELEASE_AT: [&str; 3] = ["restore", "cleanup", "post-copy"];

async fn migrate_one(
    run: Arc<GroupRun>,
    m: Member,
    p: Placement,
    t0: Instant,
    mut signals: Signals,
) -> MemberResult {
    let start_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut options = run.base.clone();
    if let Some(s) = m.strategy {
        options.strategy = s;
    }
    if run.fault_member.as_deref() != Some(m.name.as_str()) {
        options.inject_fault = None;
    }
    options.hold_freeze = signals.gate.is_some();
    options.pod = pod_mates(&run, &m);
    let mut timeline: Vec<(String, f64)> = Vec::new();
    let result = async {
        let mut conn = crate::client::control(&p.source, &run.creds)
            .await
            .map_err(|e| format!("cannot reach its agent: {e}"))?;
        let msg = ControlRequest::Migrate {
            container: m.name.clone(),
            dest: p.dest.clone(),
            options,
        };
        let lost = |e: ferry_transport::TransportError| format!("lost its agent: {e}");
        conn.send(&msg).await.map_err(lost)?;
        let reply = loop {
            let ev = conn.recv_msg::<ControlReply>().await.map_err(lost)?;
            let ControlReply::Progress { phase, .. } = &ev else {
                break ev;
            };
            if timeline.last().map(|(p, _)| p) != Some(phase) {
                timeline.push((phase.clone(), t0.elapsed().as_secs_f64() * 1e3));
            }
            if RELEASE_AT.contains(&phase.as_str()) {
                if let Some(tx) = signals.released.take() {
                    let _ = tx.send(());
                }
            }
            if phase == ferry_proto::READY_PHASE {
                // Without the scheduler's word, the agent gives up before freezing.
                let go = match signals.gate.take() {
                    Some(g) => g.await.is_ok(),
                    None => true,
                };
                if go {
                    conn.send(&ControlRequest::Proceed).await.map_err(lost)?;
                } else {
                    conn.send(&ControlRequest::Ping).await.map_err(lost)?;
                }
            }
        };
        match reply {
            ControlReply::Report { report } => Ok(*report),
            ControlReply::Error { message } => Err(message),
            other => Err(format!("unexpected answer '{}'", other.name())),
        }
    }
    .await;
    let end_ms = t0.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(r) => MemberResult {
            name: m.name.clone(),
            level: m.level,
            strategy: r.strategy.map(Into::into),
            outcome: r.outcome.name().to_string(),
            start_ms,
            end_ms,
            downtime_ms: r.downtime_ms,
            reason: r.reason.clone(),
            timeline,
            report: Some(r),
        },
        Err(e) => MemberResult {
            name: m.name.clone(),
            level: m.level,
            strategy: m.strategy,
            outcome: "refused".into(),
            start_ms,
            end_ms,
            downtime_ms: None,
            reason: Some(e),
            timeline,
            report: None,
        },
    }
}

fn placement<'a>(run: &'a GroupRun, m: &Member) -> &'a Placement {
    let i = run
        .group
        .members
        .iter()
        .position(|x| x.name == m.name)
        .unwrap_or(0);
    &run.placements[i]
}

/// Starts one member's migration on a task of its own.
fn spawn_one(
    run: &Arc<GroupRun>,
    m: &Member,
    t0: Instant,
    signals: Signals,
) -> tokio::task::JoinHandle<MemberResult> {
    let p = placement(run, m).clone();
    tokio::spawn(migrate_one(run.clone(), m.clone(), p, t0, signals))
}

fn free() -> Signals {
    Signals {
        gate: None,
        released: None,
    }
}

async fn finish(m: &Member, h: tokio::task::JoinHandle<MemberResult>) -> MemberResult {
    h.await.unwrap_or_else(|e| MemberResult {
        name: m.name.clone(),
        level: m.level,
        strategy: m.strategy,
        outcome: "failed".into(),
        start_ms: 0.0,
        end_ms: 0.0,
        downtime_ms: None,
        reason: Some(format!("the CLI lost track of it: {e}")),
        timeline: Vec::new(),
        report: None,
    })
}

/// Runs the group's migrations by its schedule; moves members back if one fails.
pub async fn run_group(run: Arc<GroupRun>) -> GroupReport {
    let t0 = Instant::now();
    let order: Vec<Member> = run.group.freeze_order().into_iter().cloned().collect();
    let units = units(&run);
    let mut results: Vec<MemberResult> = Vec::new();
    match run.schedule {
        Schedule::Sequential => {
            // One unit after another; a pod's members move together.
            for unit in &units {
                let handles: Vec<_> = unit
                    .iter()
                    .map(|m| spawn_one(&run, m, t0, free()))
                    .collect();
                let mut ok = true;
                for (m, h) in unit.iter().zip(handles) {
                    let r = finish(m, h).await;
                    ok &= r.outcome == "migrated";
                    results.push(r);
                }
                if !ok {
                    break;
                }
            }
        }
        Schedule::Parallel => {
            let handles: Vec<_> = order
                .iter()
                .map(|m| spawn_one(&run, m, t0, free()))
                .collect();
            for (m, h) in order.iter().zip(handles) {
                results.push(finish(m, h).await);
            }
        }
        Schedule::Pipeline => {
            // Every member prepares at once (connection, destination namespace, bundle,
            // pre-copy rounds); each freezes once the one before it is being restored,
            // so that at most one member dumps and transfers at a time while the
            // restores of the earlier ones go on.
            // A pod's members are let freeze together, and the next unit once all of
            // them are being restored.
            let mut gates = Vec::new();
            let mut releases = Vec::new();
            let mut handles = Vec::new();
            for unit in &units {
                let mut unit_gates = Vec::new();
                let mut unit_releases = Vec::new();
                for m in unit {
                    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel();
                    let (rel_tx, rel_rx) = tokio::sync::oneshot::channel();
                    handles.push((
                        m.clone(),
                        spawn_one(
                            &run,
                            m,
                            t0,
                            Signals {
                                gate: Some(gate_rx),
                                released: Some(rel_tx),
                            },
                        ),
                    ));
                    unit_gates.push(gate_tx);
                    unit_releases.push(rel_rx);
                }
                gates.push(unit_gates);
                releases.push(unit_releases);
            }
            let mut gates = gates.into_iter();
            let open = |unit: Vec<tokio::sync::oneshot::Sender<()>>| {
                for g in unit {
                    let _ = g.send(());
                }
            };
            if let Some(g) = gates.next() {
                open(g);
            }
            // A member that ended before restoring drops its release: the later ones
            // are never let freeze, and give up unchanged.
            'units: for (rels, gate) in releases.into_iter().zip(gates) {
                for rel in rels {
                    if rel.await.is_err() {
                        break 'units;
                    }
                }
                open(gate);
            }
            for (m, h) in handles {
                results.push(finish(&m, h).await);
            }
            // Members that gave up because an earlier one failed are not failures of
            // their own.
            results.retain(|r| {
                !(r.outcome != "migrated"
                    && r.reason
                        .as_deref()
                        .is_some_and(|x| x.contains("did not let the container freeze")))
            });
        }
    }
    let failed = results.iter().find(|r| r.outcome != "migrated").cloned();
    let mut moved_back = Vec::new();
    let mut reason = None;
    if let Some(f) = &failed {
        reason = Some(format!(
            "container '{}' did not move: {}",
            f.name,
            f.reason.as_deref().unwrap_or("see its report")
        ));
        // Dependencies go back first, as they were restored first; a pod's members
        // together.
        let moved: Vec<&str> = results
            .iter()
            .filter(|r| r.outcome == "migrated")
            .map(|r| r.name.as_str())
            .collect();
        let mut back: Vec<Vec<Member>> = units
            .iter()
            .map(|u| {
                u.iter()
                    .filter(|m| moved.contains(&m.name.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|u| !u.is_empty())
            .collect();
        back.sort_by_key(|u| u.iter().map(|m| m.level).min().unwrap_or(0));
        for unit in back {
            let tries: Vec<_> = unit
                .iter()
                .map(|m| {
                    let (run, m) = (run.clone(), m.clone());
                    tokio::spawn(async move {
                        let p = placement(&run, &m).clone();
                        move_back(&run, &m, &p).await
                    })
                })
                .collect();
            for (m, h) in unit.iter().zip(tries) {
                match h.await.unwrap_or_else(|e| Err(e.to_string())) {
                    Ok(()) => moved_back.push(m.name.clone()),
                    Err(e) => {
                        reason = Some(format!(
                            "{}; moving '{}' back to the source failed too ({e}): it runs at the destination",
                            reason.unwrap_or_default(),
                            m.name
                        ));
                    }
                }
            }
        }
    }
    let worst = results
        .iter()
        .filter_map(|r| r.downtime_ms)
        .fold(None, |a: Option<f64>, d| Some(a.map_or(d, |x| x.max(d))));
    GroupReport {
        group: run.group.name.clone(),
        schedule: run.schedule,
        outcome: if failed.is_none() {
            "migrated".into()
        } else if moved_back.len() == results.iter().filter(|r| r.outcome == "migrated").count() {
            "rolled_back".into()
        } else {
            "failed".into()
        },
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
        worst_downtime_ms: worst,
        failed: failed.map(|f| f.name),
        reason,
        moved_back,
        containers: results,
    }
}

/// Moves a member back to its source with a cold migration.
async fn move_back(run: &GroupRun, m: &Member, p: &Placement) -> Result<(), String> {
    let (Some(from), Some(to)) = (&p.dest_control, &p.source_peer) else {
        return Err("ferry does not know how to reach the agents to move it back".into());
    };
    let mut conn = crate::client::control(from, &run.creds)
        .await
        .map_err(|e| e.to_string())?;
    let msg = ControlRequest::Migrate {
        container: m.name.clone(),
        dest: to.clone(),
        options: MigrateOptions {
            strategy: Strategy::Cold.into(),
            tcp_established: run.base.tcp_established,
            file_locks: run.base.file_locks,
            pod: pod_mates(run, m),
            ..Default::default()
        },
    };
    match crate::client::request(&mut conn, &msg, |_| {})
        .await
        .map_err(|e| e.to_string())?
    {
        ControlReply::Report { report } => {
            let r = *report;
            if r.outcome.is_success() {
                Ok(())
            } else {
                Err(r.reason.unwrap_or_default())
            }
        }
        ControlReply::Error { message } => Err(message),
        other => Err(format!("unexpected answer '{}'", other.name())),
    }
}

/// A short table of the group's report, for people.
pub fn render(r: &GroupReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ferry migrate --group {}  schedule {}  outcome {}  total {:.1} ms  worst downtime {}",
        r.group,
        r.schedule.name(),
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
        "  {:<20}{:>6}{:>12}{:>12}{:>14}  outcome",
        "container", "level", "start ms", "end ms", "downtime ms"
    );
    for c in &r.containers {
        let _ = writeln!(
            s,
            "  {:<20}{:>6}{:>12.1}{:>12.1}{:>14}  {}",
            c.name,
            c.level,
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
