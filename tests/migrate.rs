//! End-to-end: live migration between lab hosts with real agents, runc, CRIU, Redis,
//! iperf3 and clients that stay connected.

mod common;

use common::lab::{assert_rolled_back, assert_unbroken, Lab};
use common::*;

#[test]
fn redis_with_a_live_client_migrates_a_to_b_and_back() {
    let Some(env) = e2e("redis_with_a_live_client_migrates_a_to_b_and_back") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    assert_eq!(
        lab.redis(&ip, &["debug", "populate", "20000", "key", "500"]),
        "OK"
    );
    let probe = lab.probe(&ip);

    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(ok, "a -> b: {r}");
    assert_eq!(r["outcome"], "migrated");
    assert_eq!(r["strategy"], "cold");
    assert!(r["downtime_ms"].as_f64().unwrap() > 0.0);
    assert!(
        r["bytes_sent"].as_u64().unwrap() > 10_000_000,
        "the pages went over: {r}"
    );
    for phase in ["freeze", "dump", "images", "restore", "commit"] {
        assert!(
            r["phases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == phase),
            "phase {phase}: {r}"
        );
    }
    assert!(r["criu"]["dump"]["pages_written"].as_u64().unwrap() > 1000);
    assert!(r["criu"]["restore"].is_object());
    assert_eq!(lab.containers_on("a"), Vec::<String>::new());
    assert_eq!(lab.containers_on("b"), vec!["redis".to_string()]);
    assert!(
        !lab.netns_exists(&format!("{}-redis", lab.netns("a"))),
        "the source namespace is removed"
    );

    let (ok, r) = lab.migrate("redis", "a", &[]);
    assert!(ok, "b -> a: {r}");
    assert_eq!(lab.containers_on("a"), vec!["redis".to_string()]);
    assert_eq!(lab.containers_on("b"), Vec::<String>::new());

    let p = probe.stop();
    assert_unbroken(&p);
    assert!(p["requests"].as_u64().unwrap() > 100);
    assert_eq!(
        lab.redis(&ip, &["dbsize"]),
        "20001",
        "the keys and the probe's counter"
    );
    assert_eq!(
        lab.redis(&ip, &["get", "ferry:probe"]),
        p["last_value"].to_string()
    );
}

#[test]
fn an_iperf3_stream_survives_the_move() {
    let Some(env) = e2e("an_iperf3_stream_survives_the_move") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let out = lab.ok(&[
        "run",
        "--host",
        "a",
        "--name",
        "iperf",
        "--",
        "/usr/bin/iperf3",
        "-s",
        "-1",
    ]);
    let ip = out
        .split(" at ")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .trim()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let client = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.netns("client"),
            "iperf3",
            "-c",
            &ip,
            "-t",
            "6",
            "-J",
            "-b",
            "200M",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (ok, r) = lab.migrate("iperf", "b", &[]);
    assert!(ok, "{r}");
    let out = client.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "iperf3 failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("error").is_none(), "{}", v["error"]);
    let intervals = v["intervals"].as_array().unwrap();
    assert!(
        intervals.len() >= 5,
        "the stream went on for its whole duration"
    );
    let last = &intervals[intervals.len() - 1]["sum"];
    assert!(
        last["bytes"].as_u64().unwrap() > 0,
        "data flowed after the migration: {last}"
    );
}

#[test]
fn each_injected_fault_rolls_back() {
    let Some(env) = e2e("each_injected_fault_rolls_back") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    assert_eq!(
        lab.redis(&ip, &["debug", "populate", "20000", "key", "500"]),
        "OK"
    );
    let probe = lab.probe(&ip);

    let (ok, r) = lab.migrate("redis", "b", &["--inject-fault", "restore-fails"]);
    assert!(!ok);
    assert_rolled_back(&lab, &r, &ip, "20001");
    assert!(
        r["reason"].as_str().unwrap().contains("could not restore"),
        "{r}"
    );
    assert_eq!(lab.containers_on("b"), Vec::<String>::new());

    let (ok, r) = lab.migrate("redis", "b", &["--inject-fault", "cut-transfer"]);
    assert!(!ok);
    assert_rolled_back(&lab, &r, &ip, "20001");
    assert!(
        r["criu_errors"]["lines"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "CRIU's words: {r}"
    );

    let (ok, r) = lab.migrate(
        "redis",
        "b",
        &["--inject-fault", "dest-dies-during-transfer"],
    );
    assert!(!ok);
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(lab.containers_on("a"), vec!["redis".to_string()]);
    lab.ok(&["restart", "b", "--faults"]);
    assert_rolled_back(&lab, &r, &ip, "20001");

    let (ok, r) = lab.migrate("redis", "b", &["--inject-fault", "dest-dies-after-restore"]);
    assert!(!ok);
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    // The destination restored a copy before dying; the restarted agent removes it.
    lab.ok(&["restart", "b", "--faults"]);
    assert_rolled_back(&lab, &r, &ip, "20001");
    assert_eq!(
        lab.containers_on("b"),
        Vec::<String>::new(),
        "no second copy survives"
    );

    let (ok, r) = lab.migrate("redis", "10.77.0.250:7070", &[]);
    assert!(!ok);
    assert_eq!(r["outcome"], "rolled_back");
    assert!(r["reason"].as_str().unwrap().contains("unreachable"), "{r}");
    assert!(r["downtime_ms"].is_null(), "the container was never frozen");

    let p = probe.stop();
    assert_unbroken(&p);

    // After all that, a clean migration still works.
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(ok, "{r}");
}

#[test]
fn bad_requests_get_one_sentence() {
    let Some(env) = e2e("bad_requests_get_one_sentence") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let out = std::process::Command::new(&env.ferry)
        .args(["migrate", "ghost", "--to", "b", "--lab", &lab.name])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no host of lab") && err.contains("ghost"),
        "{err}"
    );
    let out = std::process::Command::new(&env.ferry)
        .args(["migrate", "ghost", "--to", "nowhere", "--lab", &lab.name])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no host 'nowhere'"));
    let out = std::process::Command::new(&env.ferry)
        .args(["lab", "--lab", "nolab", "status"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lab named 'nolab' is up"));
}

/// Counts the TCP resets that enter or leave the client's namespace.
fn count_resets(lab: &Lab, install: bool) -> u64 {
    if install {
        let rules = "table inet ferry-test-rst {\n counter resets { }\n \
            chain input { type filter hook input priority 0; tcp flags & rst != 0 counter name \"resets\"; }\n \
            chain output { type filter hook output priority 0; tcp flags & rst != 0 counter name \"resets\"; }\n}\n";
        let path = std::env::temp_dir().join(unique("rst.nft"));
        std::fs::write(&path, rules).expect("write the counting rules");
        let out = lab.client(&["nft", "-f", path.to_str().expect("a UTF-8 path")]);
        assert!(out.is_empty(), "cannot count resets: {out}");
    }
    let out = lab.client(&["nft", "list", "counter", "inet", "ferry-test-rst", "resets"]);
    let packets = out
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .unwrap_or_else(|| panic!("no counter: {out}"));
    packets.parse().expect("a packet count")
}

#[test]
fn the_client_waits_no_longer_than_the_downtime_and_sees_no_reset() {
    let Some(env) = e2e("the_client_waits_no_longer_than_the_downtime_and_sees_no_reset") else {
        return;
    };
    let lab = Lab::up_shaped(&env, 2, "1gbit");
    let ip = lab.run_redis("a", "redis");
    assert_eq!(
        lab.redis(&ip, &["debug", "populate", "200000", "key", "1000"]),
        "OK"
    );
    assert_eq!(count_resets(&lab, true), 0);
    // Packets the client sends during the downtime are held and delivered at the
    // commit, so its worst request ends with the downtime, not at its next
    // retransmission (200 ms, then 400 ms more, ...).
    for (to, back) in [("b", "a"), ("a", "b")] {
        let probe = lab.probe(&ip);
        let (ok, r) = lab.migrate("redis", to, &[]);
        assert!(ok, "{back} -> {to}: {r}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let p = probe.stop();
        assert_unbroken(&p);
        let downtime = r["downtime_ms"].as_f64().unwrap();
        let worst = p["max_latency_ms"].as_f64().unwrap();
        assert!(
            worst < downtime + 150.0,
            "{back} -> {to}: the client waited {worst:.1} ms for a downtime of {downtime:.1} ms"
        );
        eprintln!(
            "{back} -> {to}: downtime {downtime:.1} ms, client's worst request {worst:.1} ms"
        );
        // The report says when the client's connection came back, seen at the
        // destination: the probe's connection, from its own address and port.
        let peers = r["peers_resumed"].as_array().cloned().unwrap_or_default();
        let probe_conn = p["local_addr"].as_str().unwrap();
        let mine = peers
            .iter()
            .find(|c| c["peer"] == probe_conn)
            .unwrap_or_else(|| panic!("{probe_conn} is not among the peers: {peers:?}"));
        assert_eq!(mine["local_port"], 6379);
        let first = mine["first_packet_ms"]
            .as_f64()
            .expect("the probe's packets came");
        assert!(first < 1000.0, "{mine}");
        eprintln!("{back} -> {to}: peers {peers:?}");
    }
    assert_eq!(
        count_resets(&lab, false),
        0,
        "a reset crossed the client's namespace"
    );
    assert_eq!(lab.redis(&ip, &["dbsize"]), "200001");
}
