//! End-to-end: a standby checkpoint of a running Redis kept on another host for a minute
//! under a write load, round after round, only what changed travelling, its client's
//! connection unbroken meanwhile; then
//! its host is lost (agent killed, container gone) and `ferry failover` restores the
//! newest checkpoint on the standby host, with the container's address and every key
//! written before that checkpoint. A container that still runs is never failed over.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::lab::{assert_unbroken, Lab};
use common::*;

fn standbys(lab: &Lab) -> serde_json::Value {
    serde_json::from_str(&lab.ok_ferry(&["standby", "--list", "--json"])).unwrap()
}

/// The newest checkpoint host `b` holds of `name`.
fn held_seq(lab: &Lab, name: &str) -> u64 {
    let v = standbys(lab);
    v.as_array()
        .unwrap()
        .iter()
        .filter(|h| h["host"] == "b")
        .flat_map(|h| h["holding"].as_array().cloned().unwrap_or_default())
        .find(|c| c["container"] == name)
        .and_then(|c| c["seq"].as_u64())
        .unwrap_or(0)
}

trait OkFerry {
    fn ok_ferry(&self, args: &[&str]) -> String;
}

impl OkFerry for Lab {
    /// `ferry ARGS` in this lab, which must succeed; its standard output.
    fn ok_ferry(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(&self.ferry)
            .args(args)
            .env("FERRY_LAB", &self.name)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ferry {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn a_standby_follows_a_running_redis_and_fails_over_when_its_host_is_lost() {
    let Some(env) = e2e("a_standby_follows_a_running_redis_and_fails_over_when_its_host_is_lost")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "sredis");
    lab.redis(&ip, &["debug", "populate", "50000", "key", "100"]);

    // Bad input: one sentence each, nothing kept.
    let (ok, out) = lab.ferry(&["standby", "sredis", "--to", "b", "--every", "100ms"]);
    assert!(!ok && out.contains("too often"), "{out}");
    let (ok, out) = lab.ferry(&["standby", "nosuch", "--to", "b"]);
    assert!(!ok && out.contains("nosuch"), "{out}");
    let (ok, out) = lab.ferry(&["failover", "sredis", "--on", "b"]);
    assert!(!ok && out.contains("still runs on a"), "{out}");
    let (ok, out) = lab.ferry(&["failover", "ghost", "--on", "b"]);
    assert!(
        !ok && out.contains("no complete standby checkpoint"),
        "{out}"
    );

    let probe = lab.probe(&ip);
    let first: serde_json::Value = serde_json::from_str(
        &lab.ok_ferry(&["standby", "sredis", "--to", "b", "--every", "5s", "--json"]),
    )
    .unwrap();
    assert_eq!(first["seq"], 1, "{first}");
    assert!(first["paused_ms"].as_f64().unwrap() > 0.0, "{first}");
    let first_bytes = first["bytes_sent"].as_u64().unwrap();
    assert!(
        first_bytes > 5_000_000,
        "the whole memory the first time: {first}"
    );
    let (ok, out) = lab.ferry(&["standby", "sredis", "--to", "b"]);
    assert!(!ok && out.contains("already has a standby"), "{out}");

    // A minute under a write load: SETs over 100k keys, and the probe's INCRs.
    let mut writer = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.netns("client"),
            "redis-benchmark",
            "-h",
            &ip,
        ])
        .args([
            "-t",
            "set",
            "-r",
            "100000",
            "-d",
            "100",
            "-n",
            "100000000",
            "-c",
            "2",
            "-q",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(60));
    let _ = writer.kill();
    let _ = writer.wait();
    let v = standbys(&lab);
    let kept = &v[0]["keeping"][0];
    assert_eq!(kept["container"], "sredis", "{v}");
    assert!(kept["last_error"].is_null(), "{v}");
    assert!(
        kept["rounds"].as_u64().unwrap() >= 10,
        "a round every 5 s: {v}"
    );
    let last = &kept["last"];
    assert!(
        last["bytes_sent"].as_u64().unwrap() * 2 < last["pages"].as_u64().unwrap() * 4096,
        "a round under load sent under half of the memory it checkpointed: {v}"
    );
    assert!(
        last["pages_held"].as_u64().unwrap() * 2 > last["pages"].as_u64().unwrap(),
        "most pages were already there: {v}"
    );
    let status: serde_json::Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    assert!(
        status["hosts"][1]["standby"]["holding"][0]["seq"]
            .as_u64()
            .unwrap()
            >= 10,
        "lab status shows it: {status}"
    );
    let p = probe.stop();
    assert_unbroken(&p);

    // Written before a checkpoint: it survives the failover.
    lab.redis(&ip, &["set", "marker", "before"]);
    let seq = held_seq(&lab, "sredis");
    assert!(eventually(Duration::from_secs(20), || held_seq(
        &lab, "sredis"
    ) >= seq + 2));

    // Host a is lost: its agent dies, its container with it.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.dir().join("lab.json")).unwrap()).unwrap();
    let pid = state["hosts"][0]["agent_pid"].as_i64().unwrap();
    sh(&format!("kill -KILL {pid}"));
    sh(&format!(
        "runc --root {} delete -f sredis",
        lab.dir().join("a/runc").display()
    ));
    sh(&format!("ip netns delete {}-sredis", lab.netns("a")));

    let f: serde_json::Value =
        serde_json::from_str(&lab.ok_ferry(&["failover", "sredis", "--on", "b", "--json"]))
            .unwrap();
    assert_eq!(f["on"], "b", "{f}");
    assert!(f["checkpoint"]["seq"].as_u64().unwrap() >= seq + 2, "{f}");
    // No older than the period, plus the round that stored it and this failover's own
    // time.
    let age = f["checkpoint"]["age_ms"].as_f64().unwrap();
    let round = last["total_ms"].as_f64().unwrap();
    assert!(
        age <= 5000.0 + round + 1500.0,
        "checkpoint {age} ms old: {f}"
    );
    lab.wait_redis(&ip);
    assert_eq!(lab.redis(&ip, &["get", "marker"]), "before");
    let keys: u64 = lab.redis(&ip, &["dbsize"]).parse().unwrap();
    assert!(keys >= 50_002, "{keys} keys");
    assert_eq!(
        lab.container_status("b", "sredis").as_deref(),
        Some("running")
    );

    // Never a second copy: it runs on b, and b holds no checkpoint of it any more.
    let (ok, out) = lab.ferry(&["failover", "sredis", "--on", "b"]);
    assert!(!ok && out.contains("still runs on b"), "{out}");
    assert_eq!(held_seq(&lab, "sredis"), 0);

    // Host a is back. A migration asked for while a standby round runs waits for the
    // round instead of failing, and the standby ends once the container has left.
    lab.ok(&["restart", "a"]);
    lab.ok_ferry(&["standby", "sredis", "--to", "a", "--every", "1s"]);
    // A round's freeze is ferry's own: the container is listed as running throughout.
    for _ in 0..25 {
        assert_eq!(
            lab.container_status("b", "sredis").as_deref(),
            Some("running"),
            "listed while a standby round freezes it"
        );
        std::thread::sleep(Duration::from_millis(40));
    }
    std::thread::sleep(Duration::from_millis(100));
    let (ok, r) = lab.migrate("sredis", "a", &[]);
    assert!(ok, "{r}");
    assert_eq!(
        lab.container_status("a", "sredis").as_deref(),
        Some("running")
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            standbys(&lab)
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["keeping"].as_array().is_none_or(|k| k.is_empty()))
        }),
        "the standby ended: {}",
        standbys(&lab)
    );
    assert_eq!(lab.redis(&ip, &["get", "marker"]), "before");
}
