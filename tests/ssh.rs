//! End-to-end: ferry without agents, over SSH. The lab's agents are stopped; a runc
//! container started by hand on host a moves to b and back over one SSH connection per
//! migration, with every strategy, its client's connection and its data intact. ferry
//! copies itself to the far side once, and finds it there afterwards. A destination that
//! fails to restore, an unreachable host and a malformed destination leave the container
//! running where it was.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};

use common::handmade::{runc_status, start_by_hand};
use common::lab::{assert_unbroken, Lab};
use common::*;

/// `ferry migrate NAME --to TO ARGS` run on lab host `host` (its settings, the lab's SSH
/// client configuration); whether it succeeded, its report if it wrote one, and its
/// standard error.
fn migrate_from(
    lab: &Lab,
    host: &str,
    name: &str,
    to: &str,
    extra: &[&str],
) -> (bool, Option<serde_json::Value>, String) {
    let report = lab.work.join(format!("report-{}.json", unique("s")));
    let ferry = lab.ferry.to_str().unwrap();
    let report_arg = report.to_str().unwrap();
    let mut args = vec![
        "lab", "exec", host, "--", ferry, "migrate", name, "--to", to, "--report", report_arg,
    ];
    args.extend_from_slice(extra);
    let out = Command::new(&lab.ferry)
        .args(&args)
        .env("FERRY_LAB", &lab.name)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = std::fs::read(&report)
        .ok()
        .map(|t| serde_json::from_slice(&t).unwrap());
    (
        out.status.success(),
        r,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops every agent of the lab: nothing below may ask one.
fn stop_agents(lab: &Lab) {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.dir().join("lab.json")).unwrap()).unwrap();
    for h in state["hosts"].as_array().unwrap() {
        let pid = h["agent_pid"].as_i64().unwrap();
        sh(&format!("kill -TERM {pid}"));
        assert!(
            eventually(std::time::Duration::from_secs(10), || {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
            }),
            "agent {pid} stopped"
        );
    }
}

/// Processes of this lab's far sides (`ssh-serve`, and the ssh commands that run it).
fn serving(lab: &Lab) -> usize {
    count(&format!("lab/{}/ssh/bin/[f]erry-.*ssh-serve", lab.name))
}

/// The pattern of this lab's SSH master connections.
fn master_pattern(lab: &Lab) -> String {
    format!("[s]sh -F /run/ferry/lab/{}/ssh/config .*-M -N", lab.name)
}

fn masters(lab: &Lab) -> usize {
    count(&master_pattern(lab))
}

fn count(pattern: &str) -> usize {
    sh(&format!("pgrep -fc '{pattern}' || true"))
        .trim()
        .parse()
        .unwrap()
}

fn where_it_runs(lab: &Lab, name: &str) -> (Option<String>, Option<String>) {
    (runc_status(lab, "a", name), runc_status(lab, "b", name))
}

#[test]
fn a_container_moves_over_ssh_with_every_strategy_and_no_agent_anywhere() {
    let Some(env) = e2e("a_container_moves_over_ssh_with_every_strategy_and_no_agent_anywhere")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    assert!(
        lab.dir().join("ssh/config").exists(),
        "the lab runs an SSH server on each host (openssh-server: scripts/install-deps.sh)"
    );
    stop_agents(&lab);
    let ip = "10.77.3.51";
    start_by_hand(&lab, &env, "sredis", ip, "02:42:0a:4d:03:33", true);
    lab.wait_redis(ip);
    lab.redis(ip, &["debug", "populate", "50000", "key", "100"]);
    let probe = lab.probe(ip);
    let running = Some("running".to_string());

    // Bad input: one sentence, nothing moved.
    let (ok, r, err) = migrate_from(&lab, "a", "sredis", "ssh://root@", &[]);
    assert!(!ok && r.is_none(), "{err}");
    assert!(err.contains("ssh://[USER@]HOST[:PORT]"), "{err}");
    let (ok, r, err) = migrate_from(&lab, "a", "sredis", "ssh://10.77.0.99", &[]);
    assert!(!ok && r.is_none(), "{err}");
    assert!(
        err.contains("cannot reach ssh://10.77.0.99 over SSH"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(where_it_runs(&lab, "sredis"), (running.clone(), None));

    // A restore that fails at the destination: it runs where it was, and only there.
    let (ok, r, err) = migrate_from(
        &lab,
        "a",
        "sredis",
        "ssh://b",
        &["--inject-fault", "restore-fails"],
    );
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(where_it_runs(&lab, "sredis"), (running.clone(), None));
    assert!(
        r["ssh"]["copied_bytes"].as_u64().unwrap() > 1_000_000,
        "the far side had no ferry: it was copied there: {r}"
    );

    // Every strategy, there and back; ferry is found on the far side from now on.
    let legs = [
        ("a", "b", "cold"),
        ("b", "a", "postcopy"),
        ("a", "b", "precopy"),
        ("b", "a", "hybrid"),
    ];
    for (from, to, strategy) in legs {
        let target = format!("ssh://root@{to}");
        let (ok, r, err) = migrate_from(&lab, from, "sredis", &target, &["--strategy", strategy]);
        let r = r.unwrap_or_else(|| panic!("{strategy}: {err}"));
        assert!(ok, "{strategy}: {r}");
        assert_eq!(r["outcome"], "migrated", "{r}");
        assert_eq!(r["strategy"], strategy, "{r}");
        assert_eq!(r["ssh"]["target"], target.as_str(), "{r}");
        assert!(r["ssh"].get("copied_bytes").is_none(), "{r}");
        let expect = match to {
            "b" => (None, running.clone()),
            _ => (running.clone(), None),
        };
        assert_eq!(where_it_runs(&lab, "sredis"), expect, "{strategy}");
    }
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(
        lab.redis(ip, &["dbsize"]),
        "50001",
        "the keys and the probe's"
    );

    // Nothing of the runs is left: no far side still serving, no socket directory.
    assert_eq!(serving(&lab), 0, "ssh-serve processes left");
    assert_eq!(masters(&lab), 0, "SSH connections left");
}

/// The SSH connection dies half-way through a pre-copy: the container carries on where
/// it was and runs nowhere else, the far side drops what it built and exits, and the
/// next migration goes through.
#[test]
fn a_lost_ssh_connection_leaves_the_container_where_it_was() {
    let Some(env) = e2e("a_lost_ssh_connection_leaves_the_container_where_it_was") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    stop_agents(&lab);
    let ip = "10.77.3.52";
    start_by_hand(&lab, &env, "lredis", ip, "02:42:0a:4d:03:34", true);
    lab.wait_redis(ip);
    lab.redis(ip, &["debug", "populate", "3000000", "key", "100"]);
    let probe = lab.probe(ip);
    let running = Some("running".to_string());

    // Cut it once the far side serves and the rounds run.
    let (started, (ok, r, err)) = std::thread::scope(|scope| {
        let cut = scope.spawn(|| {
            let up = eventually(std::time::Duration::from_secs(30), || serving(&lab) > 0);
            std::thread::sleep(std::time::Duration::from_millis(400));
            sh(&format!(
                "pkill -KILL -f '{}' || true",
                master_pattern(&lab)
            ));
            up
        });
        let moved = migrate_from(&lab, "a", "lredis", "ssh://b", &["--strategy", "precopy"]);
        (cut.join().unwrap(), moved)
    });
    assert!(started, "the far side started");
    let r = r.unwrap_or_else(|| panic!("{err}"));
    eprintln!("cut: {}", r["reason"]);
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(where_it_runs(&lab, "lredis"), (running.clone(), None));
    assert!(
        eventually(std::time::Duration::from_secs(20), || serving(&lab) == 0),
        "the far side exited"
    );

    let (ok, r, err) = migrate_from(&lab, "a", "lredis", "ssh://b", &[]);
    let r = r.unwrap_or_else(|| panic!("{err}"));
    assert!(ok, "{r}");
    assert_eq!(where_it_runs(&lab, "lredis"), (None, running));
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(ip, &["dbsize"]), "3000001");
}
