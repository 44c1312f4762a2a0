//! End-to-end: pre-copy and hybrid migration on shaped lab links, with real agents, runc,
//! CRIU and userfaultfd: a Redis under a write load, and a process that dirties memory
//! faster than the link carries it.

mod common;

use std::process::{Child, Command, Stdio};

use common::lab::{assert_rolled_back, assert_unbroken, Lab};
use common::*;

/// A few keys the write load never touches, and their digests.
fn sample_digest(lab: &Lab, ip: &str) -> String {
    let mut args = vec!["debug", "digest-value"];
    let keys: Vec<String> = (0..200_000)
        .step_by(9973)
        .map(|i| format!("key:{i}"))
        .collect();
    args.extend(keys.iter().map(String::as_str));
    lab.redis(ip, &args)
}

/// Rewrites random keys of its own for as long as it runs.
fn write_load(lab: &Lab, ip: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &lab.netns("client")])
        .args([
            "redis-benchmark",
            "-h",
            ip,
            "-t",
            "set",
            "-r",
            "20000",
            "-d",
            "1000",
            "-c",
            "1",
            "-n",
            "100000000",
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-benchmark")
}

fn precopy(r: &serde_json::Value) -> &serde_json::Value {
    let p = &r["precopy"];
    assert_eq!(p["path"], "ferry-hash", "{r}");
    p
}

#[test]
fn a_redis_under_write_load_moves_with_precopy_and_back_with_hybrid() {
    let Some(env) = e2e("a_redis_under_write_load_moves_with_precopy_and_back_with_hybrid") else {
        return;
    };
    let lab = Lab::up_shaped(&env, 2, "1gbit");
    let ip = lab.run_redis("a", "redis");
    assert_eq!(
        lab.redis(&ip, &["debug", "populate", "200000", "key", "1000"]),
        "OK"
    );
    let before = sample_digest(&lab, &ip);
    let probe = lab.probe(&ip);
    let mut load = write_load(&lab, &ip);
    std::thread::sleep(std::time::Duration::from_millis(500));

    let (ok, r) = lab.migrate("redis", "b", &["--strategy", "precopy"]);
    assert!(ok, "a -> b: {r}");
    assert_eq!(r["outcome"], "migrated");
    assert_eq!(r["strategy"], "precopy");
    let p = precopy(&r);
    let rounds = p["rounds"].as_array().unwrap();
    assert!(!rounds.is_empty(), "{r}");
    assert!(
        rounds[0]["scanned_bytes"].as_u64().unwrap() > 200 << 20,
        "the first round read the data set: {r}"
    );
    assert!(
        p["final_pages_referenced"].as_u64().unwrap() > 40_000,
        "the final copy named pages the destination held: {r}"
    );
    assert!(
        r["bytes_sent"].as_u64().unwrap() < r["images"]["pages_bytes"].as_u64().unwrap(),
        "pre-copy sent less than the memory: {r}"
    );
    assert_eq!(lab.containers_on("b"), vec!["redis".to_string()]);

    let (ok, r) = lab.migrate("redis", "a", &["--strategy", "hybrid"]);
    assert!(ok, "b -> a: {r}");
    assert_eq!(r["strategy"], "hybrid");
    let p = precopy(&r);
    assert!(!p["rounds"].as_array().unwrap().is_empty(), "{r}");
    let total = r["pages_total"].as_u64().unwrap();
    assert!(total > 40_000, "post-copy followed the rounds: {r}");
    assert!(
        p["final_pages_referenced"].as_u64().unwrap() > total / 2,
        "post-copy named most pages by reference: {r}"
    );
    assert_eq!(lab.containers_on("a"), vec!["redis".to_string()]);

    let _ = load.kill();
    let _ = load.wait();
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(
        lab.redis(&ip, &["get", "ferry:probe"]),
        p["last_value"].to_string(),
        "the client's last write is there"
    );
    assert_eq!(sample_digest(&lab, &ip), before, "the data set is intact");
    assert!(
        lab.redis(&ip, &["dbsize"]).parse::<u64>().unwrap() >= 200_000,
        "every key is there"
    );
}

/// Keeps 48 MiB of random bytes and changes one byte of every page, over and over.
const DIRTIER: &str = "import os\nb = bytearray(os.urandom(48 << 20))\nv = 0\nwhile True:\n    v = (v + 1) % 251\n    for i in range(0, len(b), 4096):\n        b[i] = v\n";

#[test]
fn memory_dirtied_faster_than_the_link_ends_at_max_rounds_or_in_postcopy() {
    let Some(env) = e2e("memory_dirtied_faster_than_the_link_ends_at_max_rounds_or_in_postcopy")
    else {
        return;
    };
    let lab = Lab::up_shaped(&env, 2, "100mbit");
    lab.ok(&[
        "run",
        "--host",
        "a",
        "--name",
        "dirty",
        "--",
        "/usr/bin/python3",
        "-c",
        DIRTIER,
    ]);
    std::thread::sleep(std::time::Duration::from_secs(1));

    let (ok, r) = lab.migrate(
        "dirty",
        "b",
        &[
            "--strategy",
            "precopy",
            "--max-rounds",
            "3",
            "--compress",
            "none",
        ],
    );
    assert!(ok, "a -> b: {r}");
    let p = precopy(&r);
    assert_eq!(p["stop_reason"], "max-rounds", "{r}");
    let rounds = p["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3, "{r}");
    for round in rounds {
        assert!(
            round["sent_bytes"].as_u64().unwrap() > 40 << 20,
            "every round found the memory changed again: {r}"
        );
    }
    assert_eq!(
        lab.container_status("b", "dirty").as_deref(),
        Some("running")
    );

    // Hybrid, with the default rule: the rounds stop making progress, and post-copy
    // moves what is left.
    let (ok, r) = lab.migrate("dirty", "a", &["--strategy", "hybrid"]);
    assert!(ok, "b -> a: {r}");
    let p = precopy(&r);
    assert_eq!(p["stop_reason"], "no-progress", "{r}");
    // The third round is the first that can show no progress; a round that happened to
    // find fewer changed pages than the two before it lets the rounds go on for longer.
    let n = p["rounds"].as_array().unwrap().len();
    assert!((3..=6).contains(&n), "{n} rounds: {r}");
    let total = r["pages_total"].as_u64().unwrap();
    assert!(total > 10_000, "post-copy moved the changed pages: {r}");
    assert!(
        r["pages_pushed"].as_u64().unwrap() + r["pages_on_demand"].as_u64().unwrap() >= total,
        "{r}"
    );
    assert_eq!(
        lab.container_status("a", "dirty").as_deref(),
        Some("running")
    );
}

#[test]
fn faults_during_precopy_and_hybrid_roll_back() {
    let Some(env) = e2e("faults_during_precopy_and_hybrid_roll_back") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    assert_eq!(
        lab.redis(&ip, &["debug", "populate", "20000", "key", "500"]),
        "OK"
    );
    let probe = lab.probe(&ip);

    // The final copy breaks after the rounds: CRIU's dump fails, the source thaws.
    let (ok, r) = lab.migrate(
        "redis",
        "b",
        &["--strategy", "precopy", "--inject-fault", "cut-transfer"],
    );
    assert!(!ok);
    assert_rolled_back(&lab, &r, &ip, "20001");
    assert!(
        !r["precopy"]["rounds"].as_array().unwrap().is_empty(),
        "rounds ran before the fault: {r}"
    );

    // The destination cannot restore after hybrid's rounds.
    let (ok, r) = lab.migrate(
        "redis",
        "b",
        &["--strategy", "hybrid", "--inject-fault", "restore-fails"],
    );
    assert!(!ok);
    assert_rolled_back(&lab, &r, &ip, "20001");

    // The destination agent dies while the images arrive.
    let (ok, r) = lab.migrate(
        "redis",
        "b",
        &[
            "--strategy",
            "precopy",
            "--inject-fault",
            "dest-dies-during-transfer",
        ],
    );
    assert!(!ok);
    lab.ok(&["restart", "b", "--faults"]);
    assert_rolled_back(&lab, &r, &ip, "20001");

    let p = probe.stop();
    assert_unbroken(&p);
    let (ok, r) = lab.migrate("redis", "b", &["--strategy", "precopy"]);
    assert!(ok, "after the faults, a clean pre-copy works: {r}");
}
