//! End-to-end: many migrations in a row lose nothing and leave nothing behind; many at
//! once into one agent succeed, or are refused cleanly past its limit.

mod common;

use std::process::{Command, Stdio};

use common::lab::{assert_unbroken, Lab};
use common::*;

/// What host `h` holds, from `ferry lab status --json`.
fn holds(lab: &Lab, h: &str) -> serde_json::Value {
    let s = lab.status();
    s["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|x| x["name"] == h))
        .map(|x| x["resources"].clone())
        .expect("the host's resources")
}

#[test]
fn ping_pong_migrations_lose_nothing_and_leave_nothing() {
    let Some(env) = e2e("ping_pong_migrations_lose_nothing_and_leave_nothing") else {
        return;
    };
    let runs: usize = std::env::var("FERRY_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "20000", "key", "200"]);
    // One round trip first, so that what the agents set up once is in the baseline.
    for to in ["b", "a"] {
        let (ok, r) = lab.migrate("redis", to, &[]);
        assert!(ok, "{r}");
    }
    let before = [holds(&lab, "a"), holds(&lab, "b")];
    let probe = lab.probe(&ip);
    let mut total_ms = Vec::new();
    for i in 0..runs {
        let to = if i.is_multiple_of(2) { "b" } else { "a" };
        let (ok, r) = lab.migrate("redis", to, &[]);
        assert!(ok, "migration {i} to {to}: {r}");
        total_ms.push(r["total_ms"].as_f64().unwrap_or(0.0));
    }
    let p = probe.stop();
    assert_unbroken(&p);
    let (lo, hi) = total_ms
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), t| (l.min(*t), h.max(*t)));
    eprintln!("{runs} migrations; total ms per migration: min {lo:.0}, max {hi:.0}");
    // The data, and the INCR probe's key.
    assert_eq!(lab.redis(&ip, &["dbsize"]), "20001");
    let home = if runs.is_multiple_of(2) { "a" } else { "b" };
    assert_eq!(lab.containers_on(home), ["redis"]);
    let after = [holds(&lab, "a"), holds(&lab, "b")];
    for (b, a) in before.iter().zip(&after) {
        for k in [
            "netns",
            "mounts",
            "cgroups",
            "sessions",
            "nft_tables",
            "iptables_rules",
        ] {
            assert_eq!(a[k], b[k], "{k}: before {b}, after {a}");
        }
        let (fb, fa) = (
            b["agent_fds"].as_u64().unwrap(),
            a["agent_fds"].as_u64().unwrap(),
        );
        assert!(
            fa <= fb + 4,
            "agent descriptors grew: before {b}, after {a}"
        );
    }
}

/// Starts `ferry migrate NAME --to TO` for each name at once; returns each one's report.
fn migrate_all(env: &Env, lab: &Lab, names: &[String], to: &str) -> Vec<serde_json::Value> {
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            let report = env.work.join(format!("{}.json", unique(n)));
            let child = Command::new(&env.ferry)
                .args(["migrate", n, "--to", to, "--json", "--report"])
                .arg(&report)
                .env("FERRY_LAB", lab.name())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("ferry migrate");
            (child, report)
        })
        .collect();
    children
        .into_iter()
        .map(|(c, report)| {
            let out = c.wait_with_output().expect("ferry migrate");
            match std::fs::read(&report) {
                Ok(t) => serde_json::from_slice(&t).expect("report json"),
                Err(_) => serde_json::json!({
                    "outcome": "refused",
                    "reason": String::from_utf8_lossy(&out.stderr).trim(),
                }),
            }
        })
        .collect()
}

#[test]
fn ten_concurrent_migrations_into_one_agent() {
    let Some(env) = e2e("ten_concurrent_migrations_into_one_agent") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let names: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let mut ips = Vec::new();
    for n in &names {
        let ip = lab.run_redis("a", n);
        lab.redis(&ip, &["debug", "populate", "30000", "key", "500"]);
        ips.push(ip);
    }
    // Within the agents' limit (16 in a lab): all ten move.
    let reports = migrate_all(&env, &lab, &names, "b");
    for r in &reports {
        assert_eq!(r["outcome"], "migrated", "{r}");
    }
    assert_eq!(lab.containers_on("b").len(), 10);

    // An agent that takes 3 at once refuses the excess, each cleanly.
    lab.ok(&["restart", "a", "--faults", "--", "--max-sessions", "3"]);
    let reports = migrate_all(&env, &lab, &names, "a");
    let moved = reports
        .iter()
        .filter(|r| r["outcome"] == "migrated")
        .count();
    let refused: Vec<_> = reports
        .iter()
        .filter(|r| r["outcome"] != "migrated")
        .collect();
    assert!(!refused.is_empty(), "ten at once exceed a limit of 3");
    for r in &refused {
        let why = r["reason"].to_string();
        assert!(why.contains("its limit"), "{r}");
    }
    let (on_a, on_b) = (lab.containers_on("a"), lab.containers_on("b"));
    assert_eq!(on_a.len(), moved);
    assert_eq!(on_a.len() + on_b.len(), 10, "each runs exactly once");
    for (n, ip) in names.iter().zip(&ips) {
        assert_eq!(lab.redis(ip, &["dbsize"]), "30000", "{n}");
    }
}
