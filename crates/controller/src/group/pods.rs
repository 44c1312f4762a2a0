//! Pods: members that share a network namespace freeze, move and are restored together,
//! as one unit of the schedule.

use ferry_engine::group::{Group, Member};
use ferry_transport::Credentials;
use ferry_types::ContainerInfo;

use super::{GroupRun, Placement};
use crate::ControllerError;

/// Asks the source agents which members belong to a pod, and checks that the group
/// names every container of each such pod (a pod moves as a whole).
pub async fn discover_pods(
    group: &Group,
    placements: &[Placement],
    creds: &Credentials,
) -> Result<Vec<Option<String>>, ControllerError> {
    let mut listed: Vec<(String, Vec<ContainerInfo>)> = Vec::new();
    for p in placements {
        let key = p.source.to_string();
        if listed.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let items = crate::migrate::list(&p.source, creds).await?;
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
                return Err(ControllerError::PartialPod {
                    container: m.name.clone(),
                    pod: pod.clone(),
                    mate: c.name.clone(),
                    group: group.name.clone(),
                });
            }
        }
        pods.push(pod);
    }
    Ok(pods)
}

/// The members in freeze order, a pod's members together as one unit (placed where its
/// first member is): a unit's members freeze, move and are restored together.
pub(super) fn units(run: &GroupRun) -> Vec<Vec<Member>> {
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
pub(super) fn pod_mates(run: &GroupRun, m: &Member) -> Vec<String> {
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
