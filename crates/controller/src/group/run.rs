//! The schedules, and the move-back phase after a failure.

use std::sync::Arc;
use std::time::Instant;

use ferry_engine::group::Member;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::member::{finish, move_back, placement, spawn_one, Signals};
use super::order::{order_restores, UnitOrder};
use super::pods::units;
use super::{GroupReport, GroupRun, MemberResult, Schedule};
use crate::ControllerError;

/// What a member's migration says when the scheduler did not let it go on because
/// another member failed: not a failure of its own.
const HELD_BACK: [&str; 2] = [
    "did not let the container freeze",
    "did not let the container restore",
];

fn held_back(r: &MemberResult) -> bool {
    r.outcome != "migrated"
        && r.reason
            .as_deref()
            .is_some_and(|x| HELD_BACK.iter().any(|h| x.contains(h)))
}

/// Runs the group's migrations by its schedule and restore order; moves members back
/// if one fails. Refuses, before anything moves, pods that would wait for each other.
pub async fn run_group(run: Arc<GroupRun>) -> Result<GroupReport, ControllerError> {
    let t0 = Instant::now();
    let units = units(&run);
    let names: Vec<Vec<String>> = units
        .iter()
        .map(|u| u.iter().map(|m| m.name.clone()).collect())
        .collect();
    let waits = run.group.restore_waits(&names)?;
    let ordered = waits.iter().any(|w| !w.is_empty());
    let mut orders: Vec<UnitOrder> = units.iter().map(|_| UnitOrder::default()).collect();
    let signals: Vec<Vec<Signals>> = units
        .iter()
        .zip(orders.iter_mut())
        .map(|(u, order)| {
            u.iter()
                .map(|_| {
                    let mut s = Signals::free();
                    if ordered {
                        let (gate, running) = order.member();
                        s.restore_gate = Some(gate);
                        s.committed = Some(running);
                    }
                    s
                })
                .collect()
        })
        .collect();
    if ordered {
        tokio::spawn(order_restores(waits, orders));
    }
    let results = match run.schedule {
        Schedule::Sequential => sequential(&run, &units, signals, ordered, t0).await,
        Schedule::Parallel => parallel(&run, &units, signals, t0).await,
        Schedule::Pipeline => pipeline(&run, &units, signals, ordered, t0).await,
    };
    let failed = results
        .iter()
        .find(|r| r.outcome != "migrated" && !held_back(r))
        .or_else(|| results.iter().find(|r| r.outcome != "migrated"))
        .cloned();
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
    Ok(GroupReport {
        group: run.group.name.clone(),
        schedule: run.schedule,
        restore_order: run.group.restore_order,
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
    })
}

type Started = Vec<(Member, JoinHandle<MemberResult>)>;

async fn finish_all(handles: Started) -> Vec<MemberResult> {
    let mut results = Vec::new();
    for (m, h) in handles {
        results.push(finish(&m, h).await);
    }
    results
}

/// One unit after another; a pod's members move together. Stops at the first unit with
/// a member that did not move. With a restore order, the next unit starts once this
/// one's dump and transfer are over (it then waits for its turn to restore), else once
/// it ended.
async fn sequential(
    run: &Arc<GroupRun>,
    units: &[Vec<Member>],
    signals: Vec<Vec<Signals>>,
    ordered: bool,
    t0: Instant,
) -> Vec<MemberResult> {
    let mut results = Vec::new();
    let mut waiting: Started = Vec::new();
    for (unit, sigs) in units.iter().zip(signals) {
        let mut released = Vec::new();
        let mut started: Started = Vec::new();
        for (m, mut s) in unit.iter().zip(sigs) {
            if ordered {
                let (tx, rx) = oneshot::channel();
                s.released = Some(tx);
                released.push(rx);
            }
            started.push((m.clone(), spawn_one(run, m, t0, s)));
        }
        let mut ok = true;
        if ordered {
            for r in released {
                ok &= r.await.is_ok();
            }
            waiting.extend(started);
        } else {
            for r in finish_all(started).await {
                ok &= r.outcome == "migrated";
                results.push(r);
            }
        }
        if !ok {
            break;
        }
    }
    results.extend(finish_all(waiting).await);
    results
}

/// Every member at once.
async fn parallel(
    run: &Arc<GroupRun>,
    units: &[Vec<Member>],
    signals: Vec<Vec<Signals>>,
    t0: Instant,
) -> Vec<MemberResult> {
    let started: Started = units
        .iter()
        .zip(signals)
        .flat_map(|(u, s)| u.iter().zip(s))
        .map(|(m, s)| (m.clone(), spawn_one(run, m, t0, s)))
        .collect();
    finish_all(started).await
}

/// Every member prepares at once (connection, destination namespace, bundle, pre-copy
/// rounds); each freezes once the dump and transfer of the one before it are over (it
/// is being restored, or waits for its turn to), so that at most one member dumps and
/// transfers at a time while the restores of the earlier ones go on. A pod's members
/// are let freeze together, and the next unit once all of them are released. With a
/// restore order, the units of one level freeze together: each waits for the deepest
/// level's restore anyway, and their dumps share the machine instead of queueing.
async fn pipeline(
    run: &Arc<GroupRun>,
    units: &[Vec<Member>],
    signals: Vec<Vec<Signals>>,
    ordered: bool,
    t0: Instant,
) -> Vec<MemberResult> {
    let steps = freeze_steps(units, ordered);
    let mut gates: Vec<Vec<oneshot::Sender<()>>> = steps.iter().map(|_| Vec::new()).collect();
    let mut releases: Vec<Vec<oneshot::Receiver<()>>> = steps.iter().map(|_| Vec::new()).collect();
    let mut handles: Started = Vec::new();
    for (i, (unit, sigs)) in units.iter().zip(signals).enumerate() {
        let k = steps.iter().position(|st| st.contains(&i)).unwrap_or(0);
        for (m, mut s) in unit.iter().zip(sigs) {
            let (gate_tx, gate_rx) = oneshot::channel();
            let (rel_tx, rel_rx) = oneshot::channel();
            s.gate = Some(gate_rx);
            s.released = Some(rel_tx);
            handles.push((m.clone(), spawn_one(run, m, t0, s)));
            gates[k].push(gate_tx);
            releases[k].push(rel_rx);
        }
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
    // A member that ended before its transfer did drops its release: the later ones are
    // never let freeze, and give up unchanged.
    'units: for (rels, gate) in releases.into_iter().zip(gates) {
        for rel in rels {
            if rel.await.is_err() {
                break 'units;
            }
        }
        open(gate);
    }
    let mut results = finish_all(handles).await;
    // Members that gave up before freezing because an earlier one failed did nothing.
    results.retain(|r| {
        !(r.outcome != "migrated"
            && r.reason
                .as_deref()
                .is_some_and(|x| x.contains(HELD_BACK[0])))
    });
    results
}

/// The pipeline's steps, as indices of `units` (in freeze order): the units of one
/// step are let freeze together. Each unit alone, or with a restore order, the units of
/// one level together.
pub(super) fn freeze_steps(units: &[Vec<Member>], ordered: bool) -> Vec<Vec<usize>> {
    let mut steps: Vec<(u32, Vec<usize>)> = Vec::new();
    for (i, u) in units.iter().enumerate() {
        let level = u.iter().map(|m| m.level).max().unwrap_or(0);
        match steps.last_mut() {
            Some((l, st)) if ordered && *l == level => st.push(i),
            _ => steps.push((level, vec![i])),
        }
    }
    steps.into_iter().map(|(_, st)| st).collect()
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
