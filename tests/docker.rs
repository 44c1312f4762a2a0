//! End-to-end: a Docker container (Debian's docker.io, with its containerd and runc)
//! started by Docker on lab host `a`, on the lab's `lab` network with its own address,
//! moves to `b` and back under a live INCR client: the connection is kept, no INCR is
//! lost, the data is intact, and afterwards the destination's Docker lists it running
//! (`ps`, `logs`, `exec`, `stop`, `rm` work) while the source's no longer does. Its
//! image exists only on `a` at first: it travels. Faults injected at the destination
//! leave it running on the source, Docker's there.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use common::lab::{assert_unbroken, Lab, REDIS_ARGS};
use common::*;

/// `docker ARGS` as lab host `host`'s; returns whether it succeeded and its output.
fn docker(lab: &Lab, host: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["lab", "exec", host, "--", "docker"];
    all.extend_from_slice(args);
    lab.ferry(&all)
}

/// The names and states of the containers `host`'s Docker lists.
fn listed(lab: &Lab, host: &str) -> Vec<String> {
    let (ok, out) = docker(
        lab,
        host,
        &["ps", "--all", "--format", "{{.Names}} {{.State}}"],
    );
    assert!(ok, "{out}");
    out.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("WARNING"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_docker_container_moves_with_its_connection_and_is_docker_s_on_the_other_host() {
    let Some(env) =
        e2e("a_docker_container_moves_with_its_connection_and_is_docker_s_on_the_other_host")
    else {
        return;
    };
    if !engine_present("Docker", &["dockerd", "docker"]) {
        return;
    }
    let lab = Lab::up_args(&env, 2, &["--docker"]);
    lab.ok(&[
        "image",
        "localhost/ferry-redis:1",
        "--host",
        "a",
        "--",
        "/usr/bin/redis-server",
        "/usr/bin/redis-cli",
        "/bin/sh",
    ]);
    let ip = "10.77.3.61";
    let mut run = vec![
        "run",
        "-d",
        "--name",
        "dredis",
        "--network",
        "lab",
        "--ip",
        ip,
        "--restart",
        "unless-stopped",
        "localhost/ferry-redis:1",
    ];
    run.extend_from_slice(REDIS_ARGS);
    let (ok, out) = docker(&lab, "a", &run);
    assert!(ok, "{out}");
    lab.wait_redis(ip);
    lab.redis(ip, &["debug", "populate", "50000", "key", "100"]);
    let probe = lab.probe(ip);

    // A restore failure at the destination leaves it running where it was, Docker's.
    let (ok, r) = lab.migrate("dredis", "b", &["--inject-fault", "restore-fails"]);
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(listed(&lab, "a"), vec!["dredis running"], "{r}");
    assert!(listed(&lab, "b").is_empty(), "{r}");

    // The destination's agent dies right after Docker restored it: the copy there is
    // held behind the bridge's lock, the source resumes, and the restarted agent
    // removes the copy.
    let (ok, r) = lab.migrate(
        "dredis",
        "b",
        &["--inject-fault", "dest-dies-after-restore"],
    );
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(listed(&lab, "a"), vec!["dredis running"], "{r}");
    lab.ok(&["restart", "b"]);
    let start = std::time::Instant::now();
    while !listed(&lab, "b").is_empty() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        listed(&lab, "b").is_empty(),
        "the restarted agent removed its copy"
    );

    // Post-copy is refused before anything is frozen, in one sentence.
    let (moved, said) = lab.ferry(&["migrate", "dredis", "--to", "b", "--strategy", "postcopy"]);
    assert!(!moved, "{said}");
    assert!(said.contains("only with complete images"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");

    let (ok, r) = lab.migrate("dredis", "b", &["--strategy", "cold"]);
    assert!(ok, "{r}");
    assert_eq!(r["outcome"], "migrated", "{r}");
    assert_eq!(listed(&lab, "b"), vec!["dredis running"]);
    // Its restart policy did not start it again on the source.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        listed(&lab, "a").is_empty(),
        "the source's Docker forgot it"
    );
    let (ok, logs) = docker(&lab, "b", &["logs", "dredis"]);
    assert!(ok && logs.contains("Ready to accept connections"), "{logs}");
    let (ok, size) = docker(
        &lab,
        "b",
        &["exec", "dredis", "/usr/bin/redis-cli", "dbsize"],
    );
    assert!(ok, "{size}");

    // And back, with pre-copy, from the Docker that restored it.
    let (ok, r) = lab.migrate("dredis", "a", &["--strategy", "precopy"]);
    assert!(ok, "{r}");
    assert_eq!(listed(&lab, "a"), vec!["dredis running"]);
    assert!(listed(&lab, "b").is_empty());
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(
        lab.redis(ip, &["dbsize"]),
        "50001",
        "the keys and the probe's"
    );
    // The name ferry gave its namespace while it moved it is gone.
    let (ok, id) = docker(&lab, "a", &["inspect", "--format", "{{.Id}}", "dredis"]);
    assert!(ok, "{id}");
    let named = format!("/run/netns/docker-{}", &id.trim()[..12]);
    assert!(!std::path::Path::new(&named).exists(), "{named} is left");

    let (ok, out) = docker(&lab, "a", &["stop", "--time", "2", "dredis"]);
    assert!(ok, "{out}");
    let (ok, out) = docker(&lab, "a", &["rm", "dredis"]);
    assert!(ok, "{out}");
    assert!(listed(&lab, "a").is_empty());
}
