//! End-to-end: a Podman container (Debian's Podman, rootful, with runc) started by
//! Podman on lab host `a`, on the lab's `lab` network with its own address, moves to `b`
//! and back under a live INCR client: the connection is kept, no INCR is lost, the data
//! is intact, and afterwards the destination's Podman lists it running (`ps`, `logs`,
//! `exec`, `stop`, `rm` work) while the source's no longer does. Its image exists only
//! on `a` at first: it travels.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use common::lab::{assert_unbroken, Lab, REDIS_ARGS};
use common::*;

/// `podman ARGS` as lab host `host`'s; returns whether it succeeded and its output.
fn podman(lab: &Lab, host: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["lab", "exec", host, "--", "podman"];
    all.extend_from_slice(args);
    lab.ferry(&all)
}

/// The names and states of the containers `host`'s Podman lists.
fn listed(lab: &Lab, host: &str) -> Vec<String> {
    let (ok, out) = podman(lab, host, &["ps", "--all", "--format", "json"]);
    assert!(ok, "{out}");
    let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    all.iter()
        .map(|c| {
            format!(
                "{} {}",
                c["Names"][0].as_str().unwrap(),
                c["State"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_podman_container_moves_with_its_connection_and_is_podman_s_on_the_other_host() {
    let Some(env) =
        e2e("a_podman_container_moves_with_its_connection_and_is_podman_s_on_the_other_host")
    else {
        return;
    };
    if !engine_present("Podman", &["podman"]) {
        return;
    }
    let lab = Lab::up(&env, 2);
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
    let ip = "10.77.3.51";
    let mut run = vec![
        "run",
        "-d",
        "--name",
        "predis",
        "--network",
        "lab",
        "--ip",
        ip,
        "localhost/ferry-redis:1",
    ];
    run.extend_from_slice(REDIS_ARGS);
    let (ok, out) = podman(&lab, "a", &run);
    assert!(ok, "{out}");
    lab.wait_redis(ip);
    lab.redis(ip, &["debug", "populate", "50000", "key", "100"]);
    let probe = lab.probe(ip);

    // A restore failure at the destination leaves it running where it was, Podman's.
    let (ok, r) = lab.migrate("predis", "b", &["--inject-fault", "restore-fails"]);
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(listed(&lab, "a"), vec!["predis running"], "{r}");
    assert!(listed(&lab, "b").is_empty(), "{r}");

    // The destination's agent dies right after Podman restored it: the copy there is
    // held behind the bridge's lock, the source resumes, and the restarted agent
    // removes the copy.
    let (ok, r) = lab.migrate(
        "predis",
        "b",
        &["--inject-fault", "dest-dies-after-restore"],
    );
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(listed(&lab, "a"), vec!["predis running"], "{r}");
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
    let (moved, said) = lab.ferry(&["migrate", "predis", "--to", "b", "--strategy", "postcopy"]);
    assert!(!moved, "{said}");
    assert!(
        said.contains("Podman restores a container only from complete images"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");

    let (ok, r) = lab.migrate("predis", "b", &["--strategy", "cold"]);
    assert!(ok, "{r}");
    assert_eq!(r["outcome"], "migrated", "{r}");
    assert_eq!(listed(&lab, "b"), vec!["predis running"]);
    assert!(
        listed(&lab, "a").is_empty(),
        "the source's Podman forgot it"
    );
    let (ok, logs) = podman(&lab, "b", &["logs", "predis"]);
    assert!(ok && logs.contains("Ready to accept connections"), "{logs}");
    let (ok, size) = podman(
        &lab,
        "b",
        &["exec", "predis", "/usr/bin/redis-cli", "dbsize"],
    );
    assert!(ok, "{size}");

    // And back, with pre-copy, from the Podman that restored it.
    let (ok, r) = lab.migrate("predis", "a", &["--strategy", "precopy"]);
    assert!(ok, "{r}");
    assert_eq!(listed(&lab, "a"), vec!["predis running"]);
    assert!(listed(&lab, "b").is_empty());
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(
        lab.redis(ip, &["dbsize"]),
        "50001",
        "the keys and the probe's"
    );

    let (ok, out) = podman(&lab, "a", &["stop", "--time", "2", "predis"]);
    assert!(ok, "{out}");
    let (ok, out) = podman(&lab, "a", &["rm", "predis"]);
    assert!(ok, "{out}");
    assert!(listed(&lab, "a").is_empty());
}

/// A two-host lab whose host a has an image with Redis, if Podman is here.
fn lab_with_redis_image(env: &Env) -> Option<Lab> {
    if !engine_present("Podman", &["podman"]) {
        return None;
    }
    let lab = Lab::up(env, 2);
    lab.ok(&[
        "image",
        "localhost/ferry-redis:1",
        "--",
        "/usr/bin/redis-server",
    ]);
    Some(lab)
}

#[test]
fn a_group_moves_a_podman_container_and_one_of_ferry_s_together() {
    let Some(env) = e2e("a_group_moves_a_podman_container_and_one_of_ferry_s_together") else {
        return;
    };
    let Some(lab) = lab_with_redis_image(&env) else {
        return;
    };
    let db = "10.77.3.52";
    let mut run = vec![
        "run",
        "-d",
        "--name",
        "pdb",
        "--network",
        "lab",
        "--ip",
        db,
        "localhost/ferry-redis:1",
    ];
    run.extend_from_slice(REDIS_ARGS);
    let (ok, out) = podman(&lab, "a", &run);
    assert!(ok, "{out}");
    let front = lab.run_redis("a", "front");
    lab.wait_redis(db);
    lab.wait_redis(&front);
    lab.redis(db, &["set", "k", "v"]);
    let group = env.work.join("shop.toml");
    std::fs::write(
        &group,
        "name = \"shop\"\n[[container]]\nname = \"pdb\"\n[[container]]\nname = \"front\"\nafter = [\"pdb\"]\n",
    )
    .unwrap();
    let g = group.to_str().unwrap();
    for (to, from) in [("b", "a"), ("a", "b")] {
        let (ok, out) = lab.ferry(&["migrate", "--group", g, "--to", to]);
        assert!(ok, "{out}");
        assert_eq!(listed(&lab, to), vec!["pdb running"], "{out}");
        assert!(listed(&lab, from).is_empty(), "{out}");
        assert_eq!(
            lab.container_status(to, "front").as_deref(),
            Some("running")
        );
    }
    assert_eq!(lab.redis(db, &["get", "k"]), "v");
}

#[test]
fn a_podman_container_binding_a_host_path_the_policy_lacks_is_refused_and_stays_where_it_ran() {
    let Some(env) = e2e(
        "a_podman_container_binding_a_host_path_the_policy_lacks_is_refused_and_stays_where_it_ran",
    ) else {
        return;
    };
    let Some(lab) = lab_with_redis_image(&env) else {
        return;
    };
    let secrets = env.work.join("host-secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let bind = format!("{}:/data", secrets.display());
    let ip = "10.77.3.53";
    let mut run = vec![
        "run",
        "-d",
        "--name",
        "pbind",
        "--network",
        "lab",
        "--ip",
        ip,
        "-v",
        &bind,
        "localhost/ferry-redis:1",
    ];
    run.extend_from_slice(REDIS_ARGS);
    let (ok, out) = podman(&lab, "a", &run);
    assert!(ok, "{out}");
    lab.wait_redis(ip);
    lab.redis(ip, &["set", "k", "v"]);
    let (ok, r) = lab.migrate("pbind", "b", &["--strategy", "cold"]);
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("restore policy") && reason.contains("mounts["),
        "{reason}"
    );
    assert!(reason.contains(&secrets.display().to_string()), "{reason}");
    assert_eq!(listed(&lab, "a"), vec!["pbind running"], "{r}");
    assert!(listed(&lab, "b").is_empty(), "{r}");
    assert_eq!(lab.redis(ip, &["get", "k"]), "v");
}
