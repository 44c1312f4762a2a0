//! End-to-end: the preflight (`ferry check`, and every `ferry migrate` before the freeze)
//! and CRIU's memory bound. Each container either moves with what it holds, or is refused
//! before anything is frozen, and none is lost.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::lab::Lab;
use common::*;

#[test]
fn the_preflight_enables_file_locks_and_refuses_what_criu_cannot_read() {
    let Some(env) = e2e("the_preflight_enables_file_locks_and_refuses_what_criu_cannot_read")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "1000", "key", "100"]);

    // A Redis fits every strategy this host can run, and changes nothing.
    let (ok, out) = lab.ferry(&["check", "redis", "--to", "b", "--json"]);
    assert!(ok, "{out}");
    let p: serde_json::Value = serde_json::from_str(&out).expect("check json");
    assert_eq!(p["destination"], "b", "{p}");
    assert!(
        p["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["comm"] == "redis-server"),
        "{p}"
    );
    let cold = p["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["strategy"] == "cold")
        .cloned()
        .unwrap();
    assert_eq!(cold["fits"], true, "{p}");
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("running")
    );

    // A process holding a lock: ferry sees it and checkpoints the lock, which the
    // process holds again at the destination.
    let marker = unique("locker");
    let script = format!(
        "import fcntl,time; f=open('/data/lock','w'); fcntl.lockf(f, fcntl.LOCK_EX); \
         time.sleep(100000) # {marker}"
    );
    lab.ok(&[
        "run",
        "--host",
        "a",
        "--name",
        "locker",
        "--",
        "/usr/bin/python3",
        "-c",
        &script,
    ]);
    assert!(eventually(std::time::Duration::from_secs(5), || pids_with(
        &marker
    )
    .iter()
    .any(|&p| holds_a_lock(p))));
    let (ok, r) = lab.migrate("locker", "b", &[]);
    assert!(ok, "{r}");
    assert_eq!(r["outcome"], "migrated", "{r}");
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("lock"),
        "the report says locks were enabled: {r}"
    );
    let pids = pids_with(&marker);
    assert_eq!(pids.len(), 1, "one locker, at the destination: {pids:?}");
    assert!(holds_a_lock(pids[0]), "the restored process holds its lock");
    assert_eq!(
        lab.container_status("b", "locker").as_deref(),
        Some("running")
    );

    // A process of another uid: CRIU cannot read its limits without CAP_SYS_RESOURCE.
    lab.ok(&[
        "run",
        "--host",
        "a",
        "--name",
        "nobody",
        "--",
        "/usr/bin/setpriv",
        "--reuid=1000",
        "--regid=1000",
        "--clear-groups",
        "/bin/sleep",
        "100000",
    ]);
    let (ok, out) = lab.ferry(&["check", "nobody", "--to", "b"]);
    let (moved, said) = lab.ferry(&["migrate", "nobody", "--to", "b"]);
    if has_cap_sys_resource() {
        assert!(ok, "{out}");
        assert!(moved, "{said}");
        return;
    }
    assert!(!ok, "check refuses: {out}");
    assert!(out.contains("sleep") && out.contains("uid 1000"), "{out}");
    assert!(!moved, "{said}");
    assert!(
        said.contains("sleep") && said.contains("uid 1000"),
        "one sentence naming the process and its uid: {said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert_eq!(
        lab.container_status("a", "nobody").as_deref(),
        Some("running"),
        "refused before the freeze: it never stopped"
    );
    assert!(!lab.containers_on("b").contains(&"nobody".to_string()));
}

#[test]
fn criu_out_of_memory_is_stopped_at_its_bound_and_the_container_and_its_client_stay() {
    let Some(env) =
        e2e("criu_out_of_memory_is_stopped_at_its_bound_and_the_container_and_its_client_stay")
    else {
        return;
    };
    // CRIU's lazy dump of a 500 MB Redis needs about 20 MB: 16 MB is too little.
    let lab = Lab::up_with_env(&env, 2, &[("FERRY_HELPER_MEMORY", "16M")]);
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "1000000", "key", "500"]);
    let probe = lab.probe(&ip);
    let (ok, r) = lab.migrate("redis", "b", &["--strategy", "postcopy"]);
    assert!(!ok, "{r}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // CRIU was held at its bound, the container frozen, CRIU stopped, the connections
    // taken out of repair mode: the client saw a pause, nothing else.
    common::lab::assert_unbroken(&probe.stop());
    common::lab::assert_rolled_back(&lab, &r, &ip, "1000001");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("CRIU ran out of memory") && reason.contains("--helper-memory"),
        "the reason names the bound and the fix: {r}"
    );
    // Redis serves, and it is the same server (its data is there).
    assert_eq!(lab.redis(&ip, &["get", "key:999999"]).len(), 500);
    // With the default bound, the same container moves.
    lab.ok(&["restart", "a", "--faults"]);
    lab.ok(&["restart", "b", "--faults"]);
    let (ok, r) = lab.migrate("redis", "b", &["--strategy", "postcopy"]);
    assert!(ok, "{r}");
    assert_eq!(r["outcome"], "migrated", "{r}");
    assert_eq!(
        lab.redis(&ip, &["dbsize"]),
        "1000001",
        "the keys and the probe's"
    );
}

#[test]
fn a_pipe_to_a_process_outside_the_container_is_refused_before_the_freeze() {
    let Some(env) = e2e("a_pipe_to_a_process_outside_the_container_is_refused_before_the_freeze")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    // The container reads a FIFO of its own file system; a process of the host writes it.
    let script = "import os; os.mkfifo('/data/feed'); f = open('/data/feed'); [None for _ in f]";
    lab.ok(&[
        "run",
        "--host",
        "a",
        "--name",
        "reader",
        "--",
        "/usr/bin/python3",
        "-c",
        script,
    ]);
    let fifo = lab.dir().join("a/bundles/reader/rootfs/data/feed");
    assert!(
        eventually(std::time::Duration::from_secs(5), || fifo.exists()),
        "{} appears",
        fifo.display()
    );
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!("exec sleep 100000 > {}", fifo.display()))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (ok, out) = lab.ferry(&["check", "reader", "--to", "b"]);
    let (moved, said) = lab.ferry(&["migrate", "reader", "--to", "b"]);
    let running = lab.container_status("a", "reader");
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(!ok, "{out}");
    assert!(
        out.contains("a pipe") && out.contains("(sleep) outside the container"),
        "{out}"
    );
    assert!(!moved, "{said}");
    assert!(
        said.contains("python3") && said.contains("(sleep)"),
        "{said}"
    );
    assert_eq!(
        running.as_deref(),
        Some("running"),
        "refused before the freeze"
    );
}
