//! End-to-end: a group of dependent containers moves between lab hosts as one, with
//! live connections between its members and from the lab's client.

mod common;

use std::time::Duration;

use common::lab::{assert_unbroken, Lab};
use common::*;

const GROUP: &str = r#"
name = "shop"

[[container]]
name = "front"
after = ["worker"]

[[container]]
name = "worker"
after = ["db"]

[[container]]
name = "db"
"#;

/// Starts `args` as container `name` on `host`; returns its address.
fn run(lab: &Lab, host: &str, name: &str, args: &[&str]) -> String {
    run_in(lab, host, name, None, args)
}

/// Starts `args` as container `name` on `host`, in `pod`'s namespace if given; returns
/// its address.
fn run_in(lab: &Lab, host: &str, name: &str, pod: Option<&str>, args: &[&str]) -> String {
    let mut a = vec!["run", "--host", host, "--name", name];
    if let Some(p) = pod {
        a.extend_from_slice(&["--pod", p]);
    }
    a.push("--");
    a.extend_from_slice(args);
    common::lab::address_of(&lab.ok(&a))
}

/// The id of the connection `db` has from `peer`.
fn connection_from(lab: &Lab, db: &str, peer: &str) -> Option<String> {
    lab.redis(db, &["client", "list"])
        .lines()
        .find(|l| l.contains(&format!("addr={peer}:")))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
}

/// Waits until the worker's counter moves on, proving its connection works.
fn ticking(lab: &Lab, db: &str) -> bool {
    counting(lab, db, "worker:ticks")
}

/// Waits until the counter `key` moves on.
fn counting(lab: &Lab, db: &str, key: &str) -> bool {
    let first: i64 = lab.redis(db, &["get", key]).parse().unwrap_or(0);
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let now: i64 = lab.redis(db, &["get", key]).parse().unwrap_or(0);
        if now > first {
            return true;
        }
    }
    false
}

#[test]
fn a_three_level_group_moves_with_the_pipeline_and_rolls_back_as_one() {
    let Some(env) = e2e("a_three_level_group_moves_with_the_pipeline_and_rolls_back_as_one") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let db = lab.run_redis("a", "db");
    lab.redis(&db, &["debug", "populate", "50000", "key", "1000"]);
    let digest = lab.redis(&db, &["debug", "digest-value", "key:1", "key:49999"]);
    let front = lab.run_redis("a", "front");
    let worker = run(
        &lab,
        "a",
        "worker",
        &[
            "/usr/bin/redis-cli",
            "-h",
            &db,
            "-r",
            "-1",
            "-i",
            "0.05",
            "incr",
            "worker:ticks",
        ],
    );
    assert!(ticking(&lab, &db), "the worker writes to the database");
    let conn = connection_from(&lab, &db, &worker).expect("the worker's connection");
    let file = env.work.join(format!("{}.toml", unique("group")));
    std::fs::write(&file, GROUP).unwrap();
    let file = file.to_str().unwrap().to_string();
    let probe = lab.probe(&front);

    let report = env.work.join(format!("{}.json", unique("report")));
    let (ok, out) = lab.ferry(&[
        "migrate",
        "--group",
        &file,
        "--to",
        "b",
        "--schedule",
        "pipeline",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["outcome"], "migrated", "{r}");
    let order: Vec<&str> = r["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["front", "worker", "db"], "dependents first: {r}");
    let starts: Vec<f64> = r["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["start_ms"].as_f64().unwrap())
        .collect();
    let front_end = r["containers"][0]["end_ms"].as_f64().unwrap();
    assert!(
        starts[1] < front_end,
        "the worker started before the front's migration ended (a pipeline): {r}"
    );
    // The worker waited, prepared, until the front's dump and transfer were over, then
    // froze; the front waited, frozen, for the worker, which waited for the database:
    // each restored only once what it calls ran at the destination.
    let phase_at = |c: usize, name: &str| -> Option<(usize, f64)> {
        r["containers"][c]["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .find(|(_, p)| p[0] == name)
            .map(|(i, p)| (i, p[1].as_f64().unwrap()))
    };
    let at = |c: usize, name: &str| {
        phase_at(c, name)
            .unwrap_or_else(|| panic!("{c} {name}: {r}"))
            .1
    };
    let (i, _) = phase_at(1, "ready").expect("the worker waited before freezing");
    let after_ready = r["containers"][1]["timeline"][i + 1][1].as_f64().unwrap();
    assert!(
        after_ready >= at(0, "restore-ready"),
        "the worker froze only once the front's transfer was over: {r}"
    );
    assert_eq!(r["restore_order"], "dependencies-first", "{r}");
    assert!(
        at(2, "cleanup") <= at(1, "restore"),
        "the database ran before the worker restored: {r}"
    );
    assert!(
        at(1, "cleanup") <= at(0, "restore"),
        "the worker ran before the front restored: {r}"
    );
    assert!(phase_at(2, "restore-ready").is_some(), "{r}");
    for c in r["containers"].as_array().unwrap() {
        assert!(c["downtime_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    let mut on_b = lab.containers_on("b");
    on_b.sort();
    assert_eq!(on_b, ["db", "front", "worker"]);
    assert!(ticking(&lab, &db), "the worker's connection survived");
    assert_eq!(
        connection_from(&lab, &db, &worker).as_deref(),
        Some(conn.as_str()),
        "the same connection, not a new one"
    );

    // The last container fails to restore: the whole group stays on b.
    let (ok, out) = lab.ferry(&[
        "migrate",
        "--group",
        &file,
        "--to",
        "a",
        "--schedule",
        "pipeline",
        "--inject-fault",
        "restore-fails",
        "--fault-member",
        "db",
        "--json",
    ]);
    assert!(!ok, "{out}");
    let json = &out[out.find('{').unwrap()..out.rfind('}').unwrap() + 1];
    let r: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(r["failed"], "db", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("db"), "{r}");
    // The front and the worker waited, frozen, for the database: never restored at a,
    // they ran on b again by themselves; there was nothing to move back.
    assert_eq!(r["moved_back"], serde_json::json!([]), "{r}");
    for c in r["containers"].as_array().unwrap() {
        assert_eq!(c["outcome"], "rolled_back", "{r}");
    }
    let mut on_b = lab.containers_on("b");
    on_b.sort();
    assert_eq!(on_b, ["db", "front", "worker"], "{r}");
    assert!(lab.containers_on("a").is_empty());
    assert!(
        ticking(&lab, &db),
        "the worker's connection survived the rollback"
    );
    assert_eq!(
        connection_from(&lab, &db, &worker).as_deref(),
        Some(conn.as_str())
    );

    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(
        lab.redis(&db, &["debug", "digest-value", "key:1", "key:49999"]),
        digest
    );
}

#[test]
fn group_files_with_mistakes_are_refused_before_anything_moves() {
    let Some(env) = e2e("group_files_with_mistakes_are_refused_before_anything_moves") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    lab.run_redis("a", "db");
    let bad = [
        (
            "name = \"g\"\n[[container]]\nname = \"db\"\nafter = [\"x\"]\n[[container]]\nname = \"x\"\nafter = [\"db\"]\n",
            "cycle",
        ),
        ("name = \"g\"\n[[container]]\nname = \"db\"\nafter = [\"nope\"]\n", "'nope'"),
        (
            "name = \"g\"\n[[container]]\nname = \"db\"\n[[container]]\nname = \"ghost\"\n",
            "not running",
        ),
    ];
    for (text, says) in bad {
        let file = env.work.join(format!("{}.toml", unique("bad")));
        std::fs::write(&file, text).unwrap();
        let (ok, out) = lab.ferry(&["migrate", "--group", file.to_str().unwrap(), "--to", "b"]);
        assert!(!ok, "{text}");
        assert!(out.contains(says), "{says} in: {out}");
        assert_eq!(lab.containers_on("a"), ["db"], "nothing moved");
    }

    // A container moved with one group cannot be claimed by another.
    let write = |text: &str| {
        let file = env.work.join(format!("{}.toml", unique("g")));
        std::fs::write(&file, text).unwrap();
        file.to_str().unwrap().to_string()
    };
    let g1 = write("name = \"g1\"\n[[container]]\nname = \"db\"\n");
    let g2 = write("name = \"g2\"\n[[container]]\nname = \"db\"\n");
    let (ok, out) = lab.ferry(&["migrate", "--group", &g1, "--to", "b"]);
    assert!(ok, "{out}");
    let (ok, out) = lab.ferry(&["migrate", "--group", &g2, "--to", "a"]);
    assert!(!ok, "{out}");
    assert!(out.contains("belongs to group 'g1'"), "{out}");
    assert_eq!(lab.containers_on("b"), ["db"], "nothing moved");
}

#[test]
fn a_pod_moves_whole_with_its_shared_namespace() {
    let Some(env) = e2e("a_pod_moves_whole_with_its_shared_namespace") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    // A pod: Redis and a sidecar writing to it over the pod's loopback.
    let ip = run_in(&lab, "a", "web", Some("shop"), common::lab::REDIS_ARGS);
    for _ in 0..200 {
        if lab.redis(&ip, &["ping"]) == "PONG" {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    lab.redis(&ip, &["debug", "populate", "20000", "key", "500"]);
    let digest = lab.redis(&ip, &["debug", "digest-value", "key:1", "key:19999"]);
    let side_ip = run_in(
        &lab,
        "a",
        "side",
        Some("shop"),
        &[
            "/usr/bin/redis-cli",
            "-h",
            "127.0.0.1",
            "-r",
            "-1",
            "-i",
            "0.05",
            "incr",
            "side:ticks",
        ],
    );
    assert_eq!(side_ip, ip, "pod members share one address");
    assert!(counting(&lab, &ip, "side:ticks"), "the sidecar writes");
    let conn = connection_from(&lab, &ip, "127.0.0.1").expect("the sidecar's connection");
    let probe = lab.probe(&ip);
    let write = |text: &str| {
        let file = env.work.join(format!("{}.toml", unique("pod")));
        std::fs::write(&file, text).unwrap();
        file.to_str().unwrap().to_string()
    };

    // A pod member does not move without its mates.
    let (ok, out) = lab.ferry(&["migrate", "web", "--to", "b"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("pod 'shop'") && out.contains("'side'"),
        "{out}"
    );
    let half = write("name = \"half\"\n[[container]]\nname = \"web\"\n");
    let (ok, out) = lab.ferry(&["migrate", "--group", &half, "--to", "b"]);
    assert!(!ok, "{out}");
    assert!(out.contains("does not name"), "{out}");
    let mut on_a = lab.containers_on("a");
    on_a.sort();
    assert_eq!(on_a, ["side", "web"], "nothing moved");

    let whole = write(
        "name = \"shop\"\n[[container]]\nname = \"web\"\n[[container]]\nname = \"side\"\nafter = [\"web\"]\n",
    );
    let (ok, out) = lab.ferry(&["migrate", "--group", &whole, "--to", "b", "--json"]);
    assert!(ok, "{out}");
    let mut on_b = lab.containers_on("b");
    on_b.sort();
    assert_eq!(on_b, ["side", "web"], "{out}");
    assert!(
        !lab.netns_exists(&format!("{}-shop", lab.netns("a"))),
        "the pod's namespace left a with its last member"
    );
    assert!(lab.netns_exists(&format!("{}-shop", lab.netns("b"))));
    assert!(
        counting(&lab, &ip, "side:ticks"),
        "the sidecar still writes"
    );
    assert_eq!(
        connection_from(&lab, &ip, "127.0.0.1").as_deref(),
        Some(conn.as_str()),
        "over the same loopback connection"
    );

    // One member fails to restore on a: the whole pod stays on b, working.
    let (ok, out) = lab.ferry(&[
        "migrate",
        "--group",
        &whole,
        "--to",
        "a",
        "--inject-fault",
        "restore-fails",
        "--fault-member",
        "side",
        "--json",
    ]);
    assert!(!ok, "{out}");
    let mut on_b = lab.containers_on("b");
    on_b.sort();
    assert_eq!(on_b, ["side", "web"], "{out}");
    assert!(lab.containers_on("a").is_empty(), "{out}");
    assert!(!lab.netns_exists(&format!("{}-shop", lab.netns("a"))));
    assert!(
        counting(&lab, &ip, "side:ticks"),
        "the sidecar still writes"
    );
    assert_eq!(
        connection_from(&lab, &ip, "127.0.0.1").as_deref(),
        Some(conn.as_str())
    );
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(
        lab.redis(&ip, &["debug", "digest-value", "key:1", "key:19999"]),
        digest
    );
}
