//! End-to-end: a Redis server moves to another host and a new address, and a client
//! in another ferry container keeps its connection: ferry rewrites the server's own
//! sockets at the destination and checkpoints, rewrites and restores the client in
//! place.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::lab::Lab;
use common::*;

/// The id and peer of the connection `server` has from `peer` (an address).
fn connection_from(lab: &Lab, server: &str, peer: &str) -> Option<String> {
    lab.redis(server, &["client", "list"])
        .lines()
        .find(|l| l.contains(&format!("addr={peer}:")))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
}

/// Waits until `key` moves on at `server`.
fn counting(lab: &Lab, server: &str, key: &str) -> bool {
    let first: i64 = lab.redis(server, &["get", key]).parse().unwrap_or(0);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now: i64 = lab.redis(server, &["get", key]).parse().unwrap_or(0);
        if now > first {
            return true;
        }
    }
    false
}

/// The address `name` has in `ferry lab status`.
fn address(lab: &Lab, name: &str) -> String {
    let s = lab.status();
    s["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["containers"].as_array().unwrap().iter())
        .find(|c| c["name"] == name)
        .and_then(|c| c["net"]["address"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no '{name}' in {s}"))
}

#[test]
fn a_redis_takes_a_new_address_and_its_clients_connection_follows() {
    let Some(env) = e2e("a_redis_takes_a_new_address_and_its_clients_connection_follows") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let db = lab.run_redis("a", "db");
    lab.redis(&db, &["debug", "populate", "20000", "key", "100"]);
    let digest = lab.redis(&db, &["debug", "digest-value", "key:1", "key:19999"]);
    let out = lab.ok(&[
        "run",
        "--host",
        "b",
        "--name",
        "cli",
        "--",
        "/usr/bin/redis-cli",
        "-h",
        &db,
        "-r",
        "-1",
        "-i",
        "0.05",
        "incr",
        "ticks",
    ]);
    let cli = common::lab::address_of(&out);
    assert!(counting(&lab, &db, "ticks"), "the client writes");
    let before = connection_from(&lab, &db, &cli).expect("the client's connection");

    // Mistakes are one sentence each, and nothing moves.
    let (ok, out) = lab.ferry(&["migrate", "db", "--to", "b", "--new-ip", "10.77.1"]);
    assert!(!ok && out.contains("is not an IPv4 address"), "{out}");
    let (ok, out) = lab.ferry(&["migrate", "db", "--to", "b", "--new-ip", &db]);
    assert!(!ok && out.contains("already has the address"), "{out}");
    let (ok, out) = lab.ferry(&["migrate", "db", "--to", "b", "--peers", "cli"]);
    assert!(!ok && out.contains("--new-ip"), "{out}");
    assert_eq!(lab.containers_on("a"), ["db"]);

    let new = "10.77.1.99";
    let (ok, r) = lab.migrate("db", "b", &["--new-ip", new, "--peers", "cli"]);
    assert!(ok, "{r}");
    assert_eq!(r["outcome"], "migrated", "{r}");
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("peer 'cli': 1 socket(s) now point at 10.77.1.99"),
        "{r}"
    );
    assert!(lab.containers_on("a").is_empty());
    assert_eq!(address(&lab, "db"), format!("{new}/16"));
    assert!(
        counting(&lab, new, "ticks"),
        "the client writes at the new address"
    );
    assert_eq!(
        connection_from(&lab, new, &cli),
        Some(before),
        "the same connection, not a new one"
    );
    assert_eq!(
        lab.redis(new, &["debug", "digest-value", "key:1", "key:19999"]),
        digest
    );
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"restore-hold"), "{phases:?}");

    // A peer that is not there is refused before anything moves.
    let (ok, out) = lab.ferry(&[
        "migrate",
        "db",
        "--to",
        "a",
        "--new-ip",
        "10.77.1.98",
        "--peers",
        "cli,ghost",
    ]);
    assert!(!ok && out.contains("'ghost'"), "{out}");
    assert_eq!(lab.containers_on("b").len(), 2);
    assert_eq!(address(&lab, "db"), format!("{new}/16"));
    assert!(counting(&lab, new, "ticks"), "the client still writes");

    // Without --peers, ferry finds the peer itself, and names the client outside its
    // hosts (the lab's client namespace) as one whose connection cannot follow.
    let mut outside = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.netns("client"),
            "redis-cli",
            "-h",
            new,
        ])
        .args(["-r", "-1", "-i", "0.1", "incr", "outside"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        connection_from(&lab, new, "10.77.0.100").is_some()
    }));
    let third = "10.77.1.98";
    let (ok, r) = lab.migrate("db", "a", &["--new-ip", third]);
    let _ = outside.kill();
    let _ = outside.wait();
    assert!(ok, "{r}");
    let notes = r["notes"].to_string();
    assert!(
        notes.contains("peer 'cli': 1 socket(s) now point at 10.77.1.98"),
        "found by itself: {r}"
    );
    assert!(
        notes.contains("could not follow") && notes.contains("10.77.0.100:"),
        "the outside client is named: {r}"
    );
    assert_eq!(address(&lab, "db"), format!("{third}/16"));
    assert!(counting(&lab, third, "ticks"), "the client follows again");
}
