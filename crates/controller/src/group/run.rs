//! The schedules, and the move-back phase after a failure.

use std::sync::Arc;
use std::time::Instant;

use ferry_engine::group::Member;
use tokio::sync::oneshot;

use super::member::{finish, move_back, placement, spawn_one, Signals};
use super::pods::units;
use super::{GroupReport, GroupRun, MemberResult, Schedule};

/// Runs the group's migrations by its schedule; moves members back if one fails.
pub async fn run_group(run: Arc<GroupRun>) -> GroupReport {
    let t0 = Instant::now();
    let units = units(&run);
    let results = match run.schedule {
        Schedule::Sequential => sequential(&run, &units, t0).await,
        Schedule::Parallel => parallel(&run, t0).await,
        Schedule::Pipeline => pipeline(&run, &units, t0).await,
    };
    let failed = results.iter().find(|r| r.outcome != "migrated").cloned();
    let mut moved_back = Vec::new();
    let mut reason = None;
    if let Some(f) = &failed {
        let why = format!(
            "container '{}' did not move: {}",
            f.name,
            f.reason.as_deref().unwrap_or("see its report")
        );
        let (back, why) = roll_back(&run, &units, &results, why).await;
        moved_back = back;
        reason = Some(why);
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

/// One unit after another; a pod's members move together. Stops at the first unit with
/// a member that did not move.
async fn sequential(run: &Arc<GroupRun>, units: &[Vec<Member>], t0: Instant) -> Vec<MemberResult> {
    let mut results = Vec::new();
    for unit in units {
        let handles: Vec<_> = unit
            .iter()
            .map(|m| spawn_one(run, m, t0, Signals::free()))
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
    results
}

/// Every member at once.
async fn parallel(run: &Arc<GroupRun>, t0: Instant) -> Vec<MemberResult> {
    let order: Vec<Member> = run.group.freeze_order().into_iter().cloned().collect();
    let handles: Vec<_> = order
        .iter()
        .map(|m| spawn_one(run, m, t0, Signals::free()))
        .collect();
    let mut results = Vec::new();
    for (m, h) in order.iter().zip(handles) {
        results.push(finish(m, h).await);
    }
    results
}

/// Every member prepares at once (connection, destination namespace, bundle, pre-copy
/// rounds); each freezes once the one before it is being restored, so that at most one
/// member dumps and transfers at a time while the restores of the earlier ones go on.
/// A pod's members are let freeze together, and the next unit once all of them are
/// being restored.
async fn pipeline(run: &Arc<GroupRun>, units: &[Vec<Member>], t0: Instant) -> Vec<MemberResult> {
    let mut gates = Vec::new();
    let mut releases = Vec::new();
    let mut handles = Vec::new();
    for unit in units {
        let mut unit_gates = Vec::new();
        let mut unit_releases = Vec::new();
        for m in unit {
            let (gate_tx, gate_rx) = oneshot::channel();
            let (rel_tx, rel_rx) = oneshot::channel();
            let signals = Signals {
                gate: Some(gate_rx),
                released: Some(rel_tx),
            };
            handles.push((m.clone(), spawn_one(run, m, t0, signals)));
            unit_gates.push(gate_tx);
            unit_releases.push(rel_rx);
        }
        gates.push(unit_gates);
        releases.push(unit_releases);
    }
    let mut gates = gates.into_iter();
    let open = |unit: Vec<oneshot::Sender<()>>| {
        for g in unit {
            let _ = g.send(());
        }
    };
    if let Some(g) = gates.next() {
        open(g);
    }
    // A member that ended before restoring drops its release: the later ones are never
    // let freeze, and give up unchanged.
    'units: for (rels, gate) in releases.into_iter().zip(gates) {
        for rel in rels {
            if rel.await.is_err() {
                break 'units;
            }
        }
        open(gate);
    }
    let mut results = Vec::new();
    for (m, h) in handles {
        results.push(finish(&m, h).await);
    }
    // Members that gave up because an earlier one failed are not failures of their own.
    results.retain(|r| {
        !(r.outcome != "migrated"
            && r.reason
                .as_deref()
                .is_some_and(|x| x.contains("did not let the container freeze")))
    });
    results
}

/// Moves the members that did move back to the source after another failed:
/// dependencies first, as they were restored first; a pod's members together. Returns
/// those moved back, and `reason` with what could not be.
async fn roll_back(
    run: &Arc<GroupRun>,
    units: &[Vec<Member>],
    results: &[MemberResult],
    mut reason: String,
) -> (Vec<String>, String) {
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
    let mut moved_back = Vec::new();
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
            match h.await.unwrap_or_else(|e| Err(e.into())) {
                Ok(()) => moved_back.push(m.name.clone()),
                Err(e) => {
                    reason = format!(
                        "{reason}; moving '{}' back to the source failed too ({e}): it runs at the destination",
                        m.name
                    );
                }
            }
        }
    }
    (moved_back, reason)
}
