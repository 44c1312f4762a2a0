//! End-to-end: post-copy migration between lab hosts with real agents, runc, CRIU lazy
//! pages and userfaultfd, a 1 GB Redis and a client that stays connected.

mod common;

use std::time::Duration;

use common::lab::{assert_unbroken, Lab};
use common::*;

/// A lab of two hosts, Redis on `a` with `keys` values of 1000 bytes; its address and
/// the digest of its data.
fn redis_on_a(env: &Env, keys: &str) -> (Lab, String, String) {
    let lab = Lab::up(env, 2);
    let ip = lab.run_redis("a", "redis");
    assert_eq!(
        lab.redis(&ip, &["debug", "populate", keys, "key", "1000"]),
        "OK"
    );
    let before = digest(&lab, &ip);
    (lab, ip, before)
}

/// Redis's digest of its data set, without the probe's counter.
fn digest(lab: &Lab, ip: &str) -> String {
    lab.redis(ip, &["del", "ferry:probe"]);
    lab.redis(ip, &["debug", "digest"])
}

fn pages(r: &serde_json::Value, field: &str) -> u64 {
    r[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {r}"))
}

#[test]
fn a_1gb_redis_with_a_live_client_moves_with_postcopy_a_to_b_and_back() {
    let Some(env) = e2e("a_1gb_redis_with_a_live_client_moves_with_postcopy_a_to_b_and_back")
    else {
        return;
    };
    let (lab, ip, before) = redis_on_a(&env, "1000000");
    let probe = lab.probe(&ip);

    for (to, from) in [("b", "a"), ("a", "b")] {
        let (ok, r) = lab.migrate("redis", to, &["--strategy", "postcopy"]);
        assert!(ok, "{from} -> {to}: {r}");
        assert_eq!(r["outcome"], "migrated");
        assert_eq!(r["strategy"], "postcopy");
        let total = pages(&r, "pages_total");
        assert!(total > 250_000, "1 GB of lazy pages: {r}");
        let arrived = pages(&r, "pages_pushed") + pages(&r, "pages_on_demand");
        assert!(arrived >= total, "every page arrived: {r}");
        assert!(
            r["bytes_sent"].as_u64().unwrap() > total * 4096,
            "the pages went through ferry's channels: {r}"
        );
        let postcopy = r["postcopy_ms"].as_f64().unwrap();
        let downtime = r["downtime_ms"].as_f64().unwrap();
        assert!(postcopy > 0.0 && downtime > 0.0, "{r}");
        assert!(
            r["source_released_ms"].as_f64().unwrap() >= downtime + postcopy,
            "the source let go only after the last page: {r}"
        );
        assert_eq!(lab.containers_on(from), Vec::<String>::new());
        assert_eq!(lab.containers_on(to), vec!["redis".to_string()]);
    }

    let p = probe.stop();
    assert_unbroken(&p);
    assert!(p["requests"].as_u64().unwrap() > 100);
    assert_eq!(
        lab.redis(&ip, &["get", "ferry:probe"]),
        p["last_value"].to_string(),
        "the client's last write is there"
    );
    assert_eq!(digest(&lab, &ip), before, "the data set is intact");
}

#[test]
fn a_link_cut_after_the_container_runs_stops_the_copy_and_keeps_the_source_frozen() {
    let Some(env) =
        e2e("a_link_cut_after_the_container_runs_stops_the_copy_and_keeps_the_source_frozen")
    else {
        return;
    };
    let (lab, ip, before) = redis_on_a(&env, "100000");

    let started = std::time::Instant::now();
    let (ok, r) = lab.migrate(
        "redis",
        "b",
        &["--strategy", "postcopy", "--inject-fault", "cut-postcopy"],
    );
    assert!(!ok, "{r}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "no hang"
    );
    assert_eq!(r["outcome"], "failed", "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("ferry resume redis"), "{reason}");
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("paused"),
        "the source copy is kept frozen"
    );
    assert_eq!(
        lab.containers_on("b"),
        Vec::<String>::new(),
        "the broken copy is stopped and removed"
    );
    assert!(
        !lab.netns_exists(&format!("{}-redis", lab.netns("b"))),
        "b dropped its namespace"
    );

    let (ok, out) = lab.ferry(&["resume", "redis"]);
    assert!(ok, "{out}");
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("running")
    );
    assert_eq!(digest(&lab, &ip), before, "the frozen copy kept its data");

    // Nothing is left frozen to resume twice.
    let (ok, out) = lab.ferry(&["resume", "redis", "--agent", "a"]);
    assert!(!ok);
    assert!(out.contains("nothing to resume"), "{out}");
}

/// The processes of `container`'s cgroup on lab host `host` (none once it is gone).
fn cgroup_procs(lab: &Lab, host: &str, container: &str) -> String {
    let dir = format!(
        "/sys/fs/cgroup/ferry/ferry-{}-{host}/{container}",
        lab.name()
    );
    std::fs::read_to_string(format!("{dir}/cgroup.procs")).unwrap_or_default()
}

#[test]
fn a_destination_agent_dying_during_post_copy_takes_its_copy_with_it() {
    let Some(env) = e2e("a_destination_agent_dying_during_post_copy_takes_its_copy_with_it") else {
        return;
    };
    let (lab, ip, before) = redis_on_a(&env, "100000");

    // b's agent exits 0.3 s into post-copy, its pages still owed. Its keeper held the
    // container's userfaultfds, so no thread read a missing page as zeros, and it stops
    // the container as soon as the agent is gone.
    let (ok, r) = lab.migrate(
        "redis",
        "b",
        &[
            "--strategy",
            "postcopy",
            "--inject-fault",
            "dest-dies-during-postcopy",
        ],
    );
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "failed", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("ferry resume redis"),
        "{r}"
    );
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("paused"),
        "the source copy is kept frozen"
    );
    let keeper = format!("keeper --cgroup /ferry/ferry-{}-b/redis", lab.name());
    assert!(
        eventually(Duration::from_secs(10), || cgroup_procs(&lab, "b", "redis")
            .trim()
            .is_empty()
            && pids_with(&keeper).is_empty()),
        "the keeper stopped b's copy, then exited"
    );

    let log = std::fs::read_to_string(lab.dir().join("b/agent.log")).unwrap_or_default();
    assert!(
        log.contains("ferry keeper: the agent died during post-copy; killed"),
        "the keeper, not a crash on zeros, stopped it: {log}"
    );
    assert!(!log.contains("killed 0 processes"), "{log}");

    // The restarted agent removes what is left of the copy; the source resumes its own.
    lab.ok(&["restart", "b", "--faults"]);
    assert!(lab.containers_on("b").is_empty(), "{}", lab.status());
    let (ok, out) = lab.ferry(&["resume", "redis"]);
    assert!(ok, "{out}");
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("running")
    );
    assert_eq!(digest(&lab, &ip), before, "the frozen copy kept its data");
}

#[test]
fn a_source_agent_dying_during_post_copy_resumes_its_copy_when_it_restarts() {
    let Some(env) = e2e("a_source_agent_dying_during_post_copy_resumes_its_copy_when_it_restarts")
    else {
        return;
    };
    let (lab, ip, before) = redis_on_a(&env, "100000");

    // a's agent exits as soon as b committed, every page still owed: b's copy cannot go
    // on, b stops it and records the session as dropped, never as committed.
    let (ok, _) = lab.ferry(&[
        "migrate",
        "redis",
        "--to",
        "b",
        "--strategy",
        "postcopy",
        "--inject-fault",
        "source-dies-during-postcopy",
    ]);
    assert!(!ok);
    assert!(
        eventually(Duration::from_secs(30), || lab
            .containers_on("b")
            .is_empty()),
        "b stopped its copy: {}",
        lab.status()
    );

    // The restarted source asks b, hears "dropped", and resumes its intact copy.
    lab.ok(&["restart", "a", "--faults"]);
    assert!(
        eventually(Duration::from_secs(60), || lab
            .container_status("a", "redis")
            .as_deref()
            == Some("running")),
        "the restarted agent resumed it: {}",
        lab.status()
    );
    assert!(lab.containers_on("b").is_empty());
    assert_eq!(digest(&lab, &ip), before, "the frozen copy kept its data");
}
