use std::sync::Arc;

use ferry_engine::group::Group;
use ferry_transport::{Credentials, Endpoint};
use ferry_types::{ContainerInfo, NetSpec};

use super::*;
use crate::fake::{FakeAgent, Script};

/// `front` depends on `worker`, which depends on `db`.
const CHAIN: &str = "name = \"shop\"\n[[container]]\nname = \"front\"\nafter = [\"worker\"]\n[[container]]\nname = \"worker\"\nafter = [\"db\"]\n[[container]]\nname = \"db\"\n";

/// The same, each restored as soon as it arrives.
fn unordered() -> String {
    format!("restore_order = \"unordered\"\n{CHAIN}")
}

fn group_run(agent: &FakeAgent, text: &str, schedule: Schedule) -> GroupRun {
    let group = Group::parse(text).expect("a group");
    let placement = Placement {
        source: agent.endpoint.clone(),
        source_peer: Some("10.0.0.1:7070".into()),
        dest: "10.0.0.2:7070".into(),
        dest_control: Some(agent.endpoint.clone()),
    };
    GroupRun {
        placements: vec![placement; group.members.len()],
        pods: vec![None; group.members.len()],
        group,
        schedule,
        base: Default::default(),
        creds: Credentials::default(),
        fault_member: None,
    }
}

fn position(notes: &[String], note: &str) -> usize {
    notes
        .iter()
        .position(|n| n == note)
        .unwrap_or_else(|| panic!("no '{note}' in {notes:?}"))
}

#[tokio::test]
async fn every_schedule_moves_the_whole_group() {
    for schedule in Schedule::ALL {
        let agent = FakeAgent::start(Script::default());
        let r = run_group(Arc::new(group_run(&agent, CHAIN, schedule)))
            .await
            .unwrap();
        assert_eq!(r.outcome, "migrated", "{schedule:?}: {r:?}");
        let n = agent.notes();
        assert!(
            position(&n, "restore db") < position(&n, "restore worker"),
            "{schedule:?}: {n:?}"
        );
        assert!(
            position(&n, "restore worker") < position(&n, "restore front"),
            "{schedule:?}: {n:?}"
        );
        assert_eq!(r.containers.len(), 3);
        assert_eq!(r.worst_downtime_ms, Some(6.0), "worker's");
        assert!(r.reason.is_none() && r.failed.is_none() && r.moved_back.is_empty());
        let text = render(&r);
        assert!(text.starts_with(&format!(
            "ferry migrate --group shop  schedule {}  restore dependencies-first  outcome migrated",
            schedule.name()
        )));
        assert_eq!(text.lines().count(), 5, "{text}");
    }
}

#[tokio::test]
async fn the_pipeline_lets_each_member_freeze_once_the_one_before_restores() {
    let agent = FakeAgent::start(Script::default());
    let r = run_group(Arc::new(group_run(
        &agent,
        &unordered(),
        Schedule::Pipeline,
    )))
    .await
    .unwrap();
    assert_eq!(r.outcome, "migrated", "{r:?}");
    let n = agent.notes();
    assert!(
        position(&n, "restore front") < position(&n, "proceed worker"),
        "{n:?}"
    );
    assert!(
        position(&n, "restore worker") < position(&n, "proceed db"),
        "{n:?}"
    );
    let front = &r.containers[0];
    let phases: Vec<&str> = front.timeline.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(phases, ["prepare", "ready", "restore"]);
}

#[tokio::test]
async fn a_failure_moves_the_others_back() {
    let agent = FakeAgent::start(Script {
        fail: vec!["db".into()],
        ..Default::default()
    });
    let r = run_group(Arc::new(group_run(
        &agent,
        &unordered(),
        Schedule::Sequential,
    )))
    .await
    .unwrap();
    assert_eq!(r.outcome, "rolled_back", "{r:?}");
    assert_eq!(r.failed.as_deref(), Some("db"));
    assert_eq!(
        r.reason.as_deref(),
        Some("container 'db' did not move: could not restore")
    );
    // Dependencies go back first.
    assert_eq!(r.moved_back, ["worker", "front"]);
    assert!(render(&r).ends_with("  moved back to the source: worker, front\n"));
}

#[tokio::test]
async fn in_a_pipeline_those_not_let_freeze_are_not_failures() {
    let agent = FakeAgent::start(Script {
        fail: vec!["front".into()],
        ..Default::default()
    });
    let r = run_group(Arc::new(group_run(&agent, CHAIN, Schedule::Pipeline)))
        .await
        .unwrap();
    assert_eq!(r.outcome, "rolled_back", "{r:?}");
    assert_eq!(r.failed.as_deref(), Some("front"));
    let names: Vec<&str> = r.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["front"], "the others gave up unchanged");
    let n = agent.notes();
    assert!(n.contains(&"gave up worker".to_string()), "{n:?}");
    assert!(n.contains(&"gave up db".to_string()), "{n:?}");
}

#[tokio::test]
async fn moving_back_without_the_agents_addresses_says_so() {
    let agent = FakeAgent::start(Script {
        fail: vec!["db".into()],
        ..Default::default()
    });
    let mut run = group_run(&agent, &unordered(), Schedule::Sequential);
    for p in &mut run.placements {
        p.dest_control = None;
    }
    let r = run_group(Arc::new(run)).await.unwrap();
    assert_eq!(r.outcome, "failed", "{r:?}");
    assert_eq!(
        r.reason.as_deref(),
        Some("container 'db' did not move: could not restore; moving 'worker' back to the source failed too (ferry does not know how to reach the agents to move it back): it runs at the destination; moving 'front' back to the source failed too (ferry does not know how to reach the agents to move it back): it runs at the destination")
    );
}

#[tokio::test]
async fn an_unreachable_member_is_refused_with_its_reason() {
    let agent = FakeAgent::start(Script::default());
    let mut run = group_run(&agent, CHAIN, Schedule::Parallel);
    run.placements[0].source = Endpoint::Unix("/nonexistent/agent.sock".into());
    let r = run_group(Arc::new(run)).await.unwrap();
    let front = r
        .containers
        .iter()
        .find(|c| c.name == "front")
        .expect("front");
    assert_eq!(front.outcome, "refused");
    assert!(
        front
            .reason
            .as_deref()
            .is_some_and(|x| x.starts_with("cannot reach its agent: ")),
        "{front:?}"
    );
}

#[tokio::test]
async fn dependencies_restore_first_and_wait_for_each_other_frozen() {
    for schedule in Schedule::ALL {
        let agent = FakeAgent::start(Script::default());
        let r = run_group(Arc::new(group_run(&agent, CHAIN, schedule)))
            .await
            .unwrap();
        assert_eq!(r.outcome, "migrated", "{schedule:?}: {r:?}");
        let front = r.containers.iter().find(|c| c.name == "front").unwrap();
        let phases: Vec<&str> = front.timeline.iter().map(|(p, _)| p.as_str()).collect();
        assert!(
            phases.contains(&"restore-ready"),
            "{schedule:?}: {phases:?}"
        );
        let n = agent.notes();
        if schedule != Schedule::Parallel {
            // Dependents still freeze first, and each restores only after what it
            // calls was restored.
            assert!(
                position(&n, "migrate front") < position(&n, "migrate db"),
                "{n:?}"
            );
        }
        assert!(
            position(&n, "restore db") < position(&n, "restore worker"),
            "{n:?}"
        );
    }
}

#[tokio::test]
async fn a_dependency_that_fails_leaves_the_frozen_dependents_at_the_source() {
    for schedule in Schedule::ALL {
        let agent = FakeAgent::start(Script {
            fail: vec!["db".into()],
            ..Default::default()
        });
        let r = run_group(Arc::new(group_run(&agent, CHAIN, schedule)))
            .await
            .unwrap();
        assert_eq!(r.outcome, "rolled_back", "{schedule:?}: {r:?}");
        assert_eq!(r.failed.as_deref(), Some("db"), "{schedule:?}: {r:?}");
        // front and worker waited frozen for db, were never restored at the
        // destination, and run on the source again: nothing to move back.
        assert!(r.moved_back.is_empty(), "{schedule:?}: {r:?}");
        let n = agent.notes();
        assert!(
            !n.iter().any(|x| x.starts_with("restore ")),
            "{schedule:?}: {n:?}"
        );
        for c in &r.containers {
            assert_eq!(c.outcome, "rolled_back", "{schedule:?}: {c:?}");
        }
    }
}

#[test]
fn with_a_restore_order_the_pipeline_freezes_a_level_at_once() {
    let agent_less = |text: &str| {
        let group = Group::parse(text).expect("a group");
        let run = GroupRun {
            placements: Vec::new(),
            pods: vec![None; group.members.len()],
            group,
            schedule: Schedule::Pipeline,
            base: Default::default(),
            creds: Credentials::default(),
            fault_member: None,
        };
        pods::units(&run)
    };
    let two = "name = \"g\"\n[[container]]\nname = \"f1\"\nafter = [\"d1\"]\n[[container]]\nname = \"f2\"\nafter = [\"d2\"]\n[[container]]\nname = \"d1\"\n[[container]]\nname = \"d2\"\n";
    let units = agent_less(two);
    assert_eq!(
        run::freeze_steps(&units, true),
        vec![vec![0, 1], vec![2, 3]]
    );
    assert_eq!(
        run::freeze_steps(&units, false),
        vec![vec![0], vec![1], vec![2], vec![3]]
    );
}

#[tokio::test]
async fn pods_that_would_wait_for_each_other_are_refused_before_anything_moves() {
    let agent = FakeAgent::start(Script::default());
    let ring = "name = \"g\"\n[[container]]\nname = \"a\"\n[[container]]\nname = \"x\"\nafter = [\"a\"]\n[[container]]\nname = \"b\"\nafter = [\"x\"]\n";
    let mut run = group_run(&agent, ring, Schedule::Pipeline);
    run.pods = vec![Some("p".into()), None, Some("p".into())];
    let e = run_group(Arc::new(run)).await.unwrap_err();
    assert!(e.to_string().contains("must wait for the other"), "{e}");
    assert!(agent.notes().is_empty(), "{:?}", agent.notes());
}

fn member(name: &str, pod: Option<&str>) -> ContainerInfo {
    ContainerInfo {
        name: name.into(),
        status: "running".into(),
        pid: None,
        bundle: String::new(),
        net: Some(NetSpec {
            address: "10.77.1.2/16".into(),
            mac: "02:00:00:00:00:01".into(),
            gateway: None,
            pod: pod.map(Into::into),
        }),
        engine: Default::default(),
    }
}

#[tokio::test]
async fn pods_move_whole_or_not_at_all() {
    let agent = FakeAgent::start(Script {
        containers: vec![member("web", Some("shop")), member("side", Some("shop"))],
        ..Default::default()
    });
    let both = "name = \"g\"\n[[container]]\nname = \"web\"\n[[container]]\nname = \"side\"\n";
    let run = group_run(&agent, both, Schedule::Pipeline);
    let pods = discover_pods(&run.group, &run.placements, &run.creds)
        .await
        .expect("pods");
    assert_eq!(pods, [Some("shop".to_string()), Some("shop".to_string())]);
    let run = GroupRun { pods, ..run };
    assert_eq!(pods::units(&run).len(), 1, "one unit");
    let web = run.group.member("web").expect("web").clone();
    assert_eq!(pods::pod_mates(&run, &web), ["web", "side"]);

    let one = "name = \"g\"\n[[container]]\nname = \"web\"\n";
    let run = group_run(&agent, one, Schedule::Pipeline);
    let e = discover_pods(&run.group, &run.placements, &run.creds)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "container 'web' shares the network namespace of pod 'shop' with 'side', which group 'g' does not name; a pod moves as a whole: add 'side' to the group");
}

#[test]
fn group_file_problems_name_the_file() {
    let dir = tempfile::tempdir().expect("a directory");
    let missing = dir.path().join("missing.toml");
    let e = load(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: cannot read the group file: ",
            missing.display()
        )),
        "{e}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"g\"\n[[container]]\nname = \"db\"\nafter = [\"nope\"]\n",
    )
    .expect("written");
    let e = load(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: ", bad.display())) && e.contains("'nope'"),
        "{e}"
    );
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; ferry_engine::group::MAX_FILE + 1]).expect("written");
    assert_eq!(
        load(&big).unwrap_err().to_string(),
        format!("{}: the group file is too large", big.display())
    );
    let good = dir.path().join("good.toml");
    std::fs::write(&good, CHAIN).expect("written");
    assert_eq!(load(&good).expect("a group").members.len(), 3);
}
