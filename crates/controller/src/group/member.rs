//! One member's migration, as the schedule lets it go, and moving it back.

use std::sync::Arc;
use std::time::Instant;

use ferry_engine::group::Member;
use ferry_proto::{ControlReply, ControlRequest, WireMessage, READY_PHASE, RESTORE_READY_PHASE};
use ferry_transport::Conn;
use ferry_types::{MigrateOptions, Report, Strategy};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::pods::pod_mates;
use super::{GroupRun, MemberResult, Placement};
use crate::{client, ControllerError};

/// Signals between one member's migration and the scheduler.
#[derive(Default)]
pub(super) struct Signals {
    /// Fire to let the member freeze (with `hold_freeze`).
    pub gate: Option<oneshot::Receiver<()>>,
    /// Fired once the member's dump and transfer are over (see [`RELEASE_AT`]).
    pub released: Option<oneshot::Sender<()>>,
    /// Fire to let the destination restore the member (with `hold_restore`).
    pub restore_gate: Option<oneshot::Receiver<()>>,
    /// Fired once the member runs at the destination (see [`COMMITTED_AT`]).
    pub committed: Option<oneshot::Sender<()>>,
}

impl Signals {
    /// A member that freezes and restores when it is ready, and tells nobody.
    pub fn free() -> Self {
        Signals::default()
    }
}

/// The phases after which the next member may freeze: the member's dump and transfer
/// are over (it waits for its restore, or is being restored), so the next one's dump
/// and transfer overlap its restore.
const RELEASE_AT: [&str; 4] = [RESTORE_READY_PHASE, "restore", "cleanup", "post-copy"];

/// The phases a migration reports only once the destination committed: the member
/// runs there.
const COMMITTED_AT: [&str; 2] = ["cleanup", "post-copy"];

fn fire(tx: &mut Option<oneshot::Sender<()>>) {
    if let Some(tx) = tx.take() {
        let _ = tx.send(());
    }
}

/// Waits for the scheduler's word (none needed without a gate), then gives it to the
/// agent: `Proceed`, or a `Ping` that lets the migration give up.
async fn pass_word(
    conn: &mut Conn,
    gate: Option<oneshot::Receiver<()>>,
) -> Result<(), ControllerError> {
    let go = match gate {
        Some(g) => g.await.is_ok(),
        None => true,
    };
    let word = if go {
        ControlRequest::Proceed
    } else {
        ControlRequest::Ping
    };
    conn.send(&word).await.map_err(ControllerError::MemberLost)
}

/// The member's options: the group's, with its own strategy, its pod, and whether it
/// waits for the scheduler's word before freezing and before its restore.
fn member_options(run: &GroupRun, m: &Member, signals: &Signals) -> MigrateOptions {
    let mut options = run.base.clone();
    if let Some(s) = m.strategy {
        options.strategy = s;
    }
    if run.fault_member.as_deref() != Some(m.name.as_str()) {
        options.inject_fault = None;
    }
    options.hold_freeze = signals.gate.is_some();
    options.hold_restore = signals.restore_gate.is_some();
    options.pod = pod_mates(run, m);
    options
}

fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// Asks the member's source agent to move it; notes when each phase began in `timeline`
/// and tells the scheduler through `signals`.
async fn converse(
    run: &GroupRun,
    m: &Member,
    p: &Placement,
    t0: Instant,
    signals: &mut Signals,
    timeline: &mut Vec<(String, f64)>,
) -> Result<Report, ControllerError> {
    let mut conn = client::control(&p.source, &run.creds)
        .await
        .map_err(ControllerError::MemberUnreachable)?;
    let msg = ControlRequest::Migrate {
        container: m.name.clone(),
        dest: p.dest.clone(),
        options: member_options(run, m, signals),
    };
    let lost = ControllerError::MemberLost;
    conn.send(&msg).await.map_err(lost)?;
    let reply = loop {
        let ev = conn.recv_msg::<ControlReply>().await.map_err(lost)?;
        let ControlReply::Progress { phase, .. } = &ev else {
            break ev;
        };
        if timeline.last().map(|(p, _)| p) != Some(phase) {
            timeline.push((phase.clone(), since(t0)));
        }
        if RELEASE_AT.contains(&phase.as_str()) {
            fire(&mut signals.released);
        }
        if COMMITTED_AT.contains(&phase.as_str()) {
            fire(&mut signals.committed);
        }
        // Without the scheduler's word, the agent gives up before freezing, or rolls
        // back before the restore.
        if phase == READY_PHASE {
            pass_word(&mut conn, signals.gate.take()).await?;
        }
        if phase == RESTORE_READY_PHASE {
            pass_word(&mut conn, signals.restore_gate.take()).await?;
        }
    };
    match client::refused(reply)? {
        ControlReply::Report { report } => {
            if report.outcome.is_success() {
                fire(&mut signals.committed);
            }
            Ok(*report)
        }
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}

async fn migrate_one(
    run: Arc<GroupRun>,
    m: Member,
    p: Placement,
    t0: Instant,
    mut signals: Signals,
) -> MemberResult {
    let start_ms = since(t0);
    let mut timeline: Vec<(String, f64)> = Vec::new();
    let result = converse(&run, &m, &p, t0, &mut signals, &mut timeline).await;
    let end_ms = since(t0);
    match result {
        Ok(r) => MemberResult {
            name: m.name.clone(),
            level: m.level,
            restore_level: m.restore_level,
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
            restore_level: m.restore_level,
            strategy: m.strategy,
            outcome: "refused".into(),
            start_ms,
            end_ms,
            downtime_ms: None,
            reason: Some(e.to_string()),
            timeline,
            report: None,
        },
    }
}

pub(super) fn placement<'a>(run: &'a GroupRun, m: &Member) -> &'a Placement {
    let i = run
        .group
        .members
        .iter()
        .position(|x| x.name == m.name)
        .unwrap_or(0);
    &run.placements[i]
}

/// Starts one member's migration on a task of its own.
pub(super) fn spawn_one(
    run: &Arc<GroupRun>,
    m: &Member,
    t0: Instant,
    signals: Signals,
) -> JoinHandle<MemberResult> {
    let p = placement(run, m).clone();
    tokio::spawn(migrate_one(run.clone(), m.clone(), p, t0, signals))
}

/// The member's result, once its task ends.
pub(super) async fn finish(m: &Member, h: JoinHandle<MemberResult>) -> MemberResult {
    h.await.unwrap_or_else(|e| MemberResult {
        name: m.name.clone(),
        level: m.level,
        restore_level: m.restore_level,
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

/// Moves a member back to its source with a cold migration.
pub(super) async fn move_back(
    run: &GroupRun,
    m: &Member,
    p: &Placement,
) -> Result<(), ControllerError> {
    let (Some(from), Some(to)) = (&p.dest_control, &p.source_peer) else {
        return Err(ControllerError::NoWayBack);
    };
    let mut conn = client::control(from, &run.creds).await?;
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
    match client::answer(&mut conn, &msg, |_| {}).await? {
        ControlReply::Report { report } => {
            let r = *report;
            if r.outcome.is_success() {
                Ok(())
            } else {
                Err(ControllerError::Failed(r.reason.unwrap_or_default()))
            }
        }
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}
