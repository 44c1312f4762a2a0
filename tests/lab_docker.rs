//! End-to-end: the lab's Docker. With `ferry lab up --docker` each host runs its own
//! Docker daemon inside its namespace, with a network `lab` on the host's bridge: a
//! container started there with `--ip` answers the lab's `client`, only its own host's
//! Docker lists it, one that publishes ports is refused before the freeze, and
//! `ferry lab down` removes the containers and stops the daemons.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use common::lab::{Lab, REDIS_ARGS};
use common::*;

fn docker(lab: &Lab, host: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["lab", "exec", host, "--", "docker"];
    all.extend_from_slice(args);
    lab.ferry(&all)
}

/// Processes whose command line names this lab's directory: its daemons.
fn daemons_of(lab: &Lab) -> Vec<u32> {
    pids_with(&lab.dir().display().to_string())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "dockerd" || c.trim() == "containerd")
        })
        .collect()
}

#[test]
fn each_lab_host_has_its_own_docker_with_a_lab_network_the_client_reaches() {
    let Some(env) = e2e("each_lab_host_has_its_own_docker_with_a_lab_network_the_client_reaches")
    else {
        return;
    };
    if !engine_present("Docker", &["dockerd", "docker"]) {
        return;
    }
    let lab = Lab::up_args(&env, 2, &["--docker"]);
    assert_eq!(
        daemons_of(&lab).len(),
        4,
        "a dockerd and a containerd per host"
    );
    lab.ok(&[
        "image",
        "localhost/ferry-redis:1",
        "--host",
        "a",
        "--",
        "/usr/bin/redis-server",
        "/usr/bin/redis-cli",
    ]);
    let ip = "10.77.4.41";
    let mut run = vec![
        "run",
        "-d",
        "--name",
        "dredis",
        "--network",
        "lab",
        "--ip",
        ip,
        "localhost/ferry-redis:1",
    ];
    run.extend_from_slice(REDIS_ARGS);
    let (ok, out) = docker(&lab, "a", &run);
    assert!(ok, "{out}");
    lab.wait_redis(ip);
    assert_eq!(lab.redis(ip, &["incr", "n"]), "1");
    let (ok, out) = docker(&lab, "a", &["ps", "--format", "{{.Names}}"]);
    assert!(ok && out.trim() == "dredis", "{out}");
    let (ok, out) = docker(&lab, "b", &["ps", "--all", "--quiet"]);
    assert!(ok && out.trim().is_empty(), "b's Docker is its own: {out}");
    assert_eq!(
        lab.container_status("a", "dredis").as_deref(),
        Some("running"),
        "lab status lists it"
    );
    let status = lab.ok(&["status"]);
    assert!(status.contains("docker"), "{status}");
    // A container reached through a port published on its host's address cannot take
    // its connections along: refused before anything is frozen, in one sentence.
    let mut run = vec![
        "run",
        "-d",
        "--name",
        "published",
        "--network",
        "lab",
        "--publish",
        "16379:6379",
        "localhost/ferry-redis:1",
    ];
    run.extend_from_slice(REDIS_ARGS);
    let (ok, out) = docker(&lab, "a", &run);
    assert!(ok, "{out}");
    let (moved, said) = lab.ferry(&["migrate", "published", "--to", "b"]);
    assert!(!moved, "{said}");
    assert!(said.contains("publishes ports"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert_eq!(lab.redis(ip, &["incr", "n"]), "2");

    let dir = lab.dir();
    let name = lab.name.clone();
    drop(lab);
    assert!(!dir.exists(), "lab down removed {}", dir.display());
    let left: Vec<u32> = pids_with(&format!("/run/ferry/lab/{name}/"));
    assert!(left.is_empty(), "processes of the lab left: {left:?}");
}
