//! End-to-end: `ferry checkpoint` and `ferry restore` of real runc containers on one host.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn redis_with_10000_keys_survives_checkpoint_and_restore() {
    let Some(mut env) = e2e("redis_with_10000_keys_survives_checkpoint_and_restore") else {
        return;
    };
    let (ns, bundle) = env.running_redis("redis", "fr", 10_000);
    let images = env.work.join("images");
    let report_file = env.work.join("checkpoint.json");
    env.checkpoint(
        "redis",
        &images,
        &[
            "--tcp-established",
            "--report",
            report_file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        env.status("redis"),
        "absent",
        "a checkpoint without --leave-running stops the container"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(report["outcome"], "checkpointed");
    let phases: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["freeze", "dump"]);
    let dump = &report["criu"]["dump"];
    assert!(
        dump["pages_written"].as_u64().unwrap() > 100,
        "CRIU statistics: {dump}"
    );
    assert!(dump["frozen_time_us"].as_u64().unwrap() > 0);
    assert!(report["images"]["pages_bytes"].as_u64().unwrap() > 400_000);

    let restore_report = env.work.join("restore.json");
    env.ferry_ok(&[
        "restore",
        "redis",
        "--images",
        images.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        "--tcp-established",
        "--runtime-root",
        &env.root_arg(),
        "--report",
        restore_report.to_str().unwrap(),
    ]);
    assert_eq!(env.status("redis"), "running");
    assert_eq!(redis_cli(&ns, &["ping"]), "PONG");
    check_keys(&ns, 10_000);
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&restore_report).unwrap()).unwrap();
    assert_eq!(r["outcome"], "restored");
    assert!(r["criu"]["restore"]["restore_time_us"].as_u64().unwrap() > 0);
    assert!(r["phases"][0]["name"] == "restore");
}

/// A shell that counts into /data/count every 10 ms, running two commands a step.
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /data/count.tmp; mv /data/count.tmp /data/count; sleep 0.01; done";

fn read_count(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_counter_resumes_where_it_stopped() {
    let Some(mut env) = e2e("a_counter_resumes_where_it_stopped") else {
        return;
    };
    let ns = env.netns("fc");
    let bundle = env.shell_bundle("counter", &ns, COUNTER);
    env.run("counter", &bundle);
    let count_file = bundle.join("rootfs/data/count");
    std::thread::sleep(Duration::from_millis(400));
    assert!(read_count(&count_file) > 5, "the counter runs");

    let images = env.work.join("images");
    env.ferry_ok(&[
        "checkpoint",
        "counter",
        "--images",
        images.to_str().unwrap(),
        "--runtime-root",
        &env.root_arg(),
    ]);
    let stopped_at = read_count(&count_file);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_count(&count_file),
        stopped_at,
        "nothing counts while checkpointed"
    );

    env.ferry_ok(&[
        "restore",
        "counter",
        "--images",
        images.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        "--runtime-root",
        &env.root_arg(),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let after = read_count(&count_file);
    assert!(
        after > stopped_at,
        "the counter goes on after restore ({stopped_at} -> {after})"
    );
    assert!(
        after < stopped_at + 200,
        "it resumed instead of starting over ({stopped_at} -> {after})"
    );
}

#[test]
fn leave_running_keeps_the_container_serving() {
    let Some(mut env) = e2e("leave_running_keeps_the_container_serving") else {
        return;
    };
    let ns = env.netns("fl");
    let bundle = env.redis_bundle("redis", &ns);
    env.run("redis", &bundle);
    wait_redis(&ns);
    load_keys(&ns, 100);
    let images = env.work.join("images");
    let out = env.ferry_ok(&[
        "checkpoint",
        "redis",
        "--images",
        images.to_str().unwrap(),
        "--leave-running",
        "--runtime-root",
        &env.root_arg(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["downtime_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(env.status("redis"), "running");
    assert_eq!(redis_cli(&ns, &["set", "after", "1"]), "OK");
    check_keys_plus_one(&ns);
}

fn check_keys_plus_one(ns: &str) {
    assert_eq!(redis_cli(ns, &["dbsize"]), "101");
}

#[test]
fn bad_input_gets_one_sentence_and_a_non_zero_exit() {
    let Some(mut env) = e2e("bad_input_gets_one_sentence_and_a_non_zero_exit") else {
        return;
    };
    let images = env.work.join("none");
    let img = images.to_str().unwrap();

    let out = env.ferry(&[
        "checkpoint",
        "ghost",
        "--images",
        img,
        "--runtime-root",
        &env.root_arg(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'ghost' does not exist"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");

    let out = env.ferry(&[
        "checkpoint",
        "ghost",
        "--images",
        img,
        "--runtime-root",
        "/nonexistent/root",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--runtime-root"));

    // A bundle that does not match the checkpoint.
    let ns = env.netns("fb");
    let bundle = env.redis_bundle("redis", &ns);
    env.run("redis", &bundle);
    wait_redis(&ns);
    let images = env.work.join("images");
    env.ferry_ok(&[
        "checkpoint",
        "redis",
        "--images",
        images.to_str().unwrap(),
        "--runtime-root",
        &env.root_arg(),
    ]);
    let other = env.shell_bundle("other", &ns, "sleep 1000");
    let out = env.ferry(&[
        "restore",
        "redis",
        "--images",
        images.to_str().unwrap(),
        "--bundle",
        other.to_str().unwrap(),
        "--runtime-root",
        &env.root_arg(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match the checkpoint"), "{err}");
    assert_eq!(env.status("redis"), "absent", "nothing was restored");
}

#[test]
fn criu_failures_show_criu_error_lines_and_the_log_path() {
    let Some(mut env) = e2e("criu_failures_show_criu_error_lines_and_the_log_path") else {
        return;
    };
    // A process that does not run as root cannot be checkpointed on hosts where root lacks
    // CAP_SYS_RESOURCE; where it has it, a process holding a file lock without
    // --file-locks fails instead. Either way CRIU fails and ferry must explain it.
    let ns = env.netns("fe");
    let bundle = env.shell_bundle(
        "locker",
        &ns,
        "exec /usr/bin/flock /data/lockfile /bin/sh -c 'while :; do sleep 1; done'",
    );
    env.run("locker", &bundle);
    std::thread::sleep(Duration::from_millis(300));
    let images = env.work.join("images");
    let out = env.ferry(&[
        "checkpoint",
        "locker",
        "--images",
        images.to_str().unwrap(),
        "--runtime-root",
        &env.root_arg(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--file-locks"), "names the fix: {err}");
    assert!(
        err.contains("CRIU says:") && err.contains("Error ("),
        "shows CRIU's error lines: {err}"
    );
    assert!(err.contains("dump.log"), "gives the log path: {err}");
    assert_eq!(
        env.status("locker"),
        "running",
        "a failed checkpoint leaves the container running"
    );
}

/// A shell that runs commands in a loop is often frozen between a vfork and its child's
/// exec, where CRIU cannot stop it; ferry must freeze it elsewhere, every time.
#[test]
fn a_shell_forking_in_a_loop_is_checkpointed_every_time() {
    let Some(mut env) = e2e("a_shell_forking_in_a_loop_is_checkpointed_every_time") else {
        return;
    };
    let ns = env.netns("fv");
    let bundle = env.shell_bundle("forker", &ns, COUNTER);
    env.run("forker", &bundle);
    std::thread::sleep(Duration::from_millis(200));
    for k in 0..120 {
        let images = env.work.join(format!("images{k}"));
        let out = env.ferry(&[
            "checkpoint",
            "forker",
            "--leave-running",
            "--images",
            images.to_str().unwrap(),
            "--runtime-root",
            &env.root_arg(),
        ]);
        assert!(
            out.status.success(),
            "checkpoint {k} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_dir_all(&images).unwrap();
    }
    assert_eq!(env.status("forker"), "running");
}
