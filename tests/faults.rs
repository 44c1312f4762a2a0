//! End-to-end: the fault matrix (docs/faults.md). Redis runs under a live INCR client;
//! after each case it runs exactly once, and no acknowledged INCR is lost.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::lab::{assert_rolled_back, assert_unbroken, tls_dir, Lab};
use common::*;

/// The migration did not happen, and the container runs on `a` only.
fn stays_on_a(lab: &Lab, r: &serde_json::Value, says: &str) {
    assert_ne!(r["outcome"], "migrated", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(says), "'{says}' in: {r}");
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("running"),
        "{r}"
    );
    assert!(lab.containers_on("b").is_empty(), "{r}");
}

/// The migration rolled back: the container runs on `a` with its 100,000 keys and the
/// probe's, and nothing runs on `b`.
fn rolled_back_to_a(lab: &Lab, r: &serde_json::Value, ip: &str) {
    assert_rolled_back(lab, r, ip, "100001");
    assert!(lab.containers_on("b").is_empty(), "{r}");
}

#[test]
fn certificates_and_protocol_versions_are_checked() {
    let Some(env) = e2e("certificates_and_protocol_versions_are_checked") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "20000", "key", "500"]);
    let probe = lab.probe(&ip);
    let dir = lab.dir();
    let tls = dir.join("tls");
    assert!(tls.join("ca.pem").exists(), "the lab made its CA");

    // 9a. b presents a certificate from another CA.
    let foreign = env.work.join(unique("foreign"));
    let f = foreign.to_str().unwrap();
    env.ferry_ok(&["certs", "init", "--dir", f]);
    env.ferry_ok(&["certs", "issue", "b", "--dir", f, "--ip", "10.77.0.2"]);
    lab.ok(&["restart", "b", "--faults", "--tls-dir", f]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok);
    stays_on_a(&lab, &r, "TLS handshake");

    // An agent checks its own files at start, and names the one at fault.
    let mixed = tls_dir(&env.work, &tls, &foreign, "b", "b");
    let (ok, out) = lab.ferry(&[
        "lab",
        "restart",
        "b",
        "--faults",
        "--tls-dir",
        mixed.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("{}", mixed.join("b.pem").display()))
            && out.contains("does not verify"),
        "{out}"
    );

    // 9b. a's certificate is the lab CA's, but for another host name.
    env.ferry_ok(&[
        "certs",
        "issue",
        "c",
        "--dir",
        tls.to_str().unwrap(),
        "--ip",
        "10.77.0.1",
    ]);
    let named = tls_dir(&env.work, &tls, &tls, "c", "a");
    lab.ok(&[
        "restart",
        "a",
        "--faults",
        "--tls-dir",
        named.to_str().unwrap(),
    ]);
    lab.ok(&["restart", "b", "--faults"]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok);
    stays_on_a(&lab, &r, "not valid for host 'a'");
    lab.ok(&["restart", "a", "--faults"]);

    // 10. b speaks protocol versions a does not.
    lab.ok(&[
        "restart",
        "b",
        "--faults",
        "--",
        "--announce-versions",
        "7-9",
    ]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok);
    stays_on_a(&lab, &r, "version");
    lab.ok(&["restart", "b", "--faults"]);

    // With matching certificates the move works, its pages inside TLS.
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(ok, "{r}");
    assert_eq!(lab.containers_on("b"), ["redis"]);
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(&ip, &["dbsize"]), "20001");

    // No secret in any log or report.
    let secret = std::fs::read_to_string(dir.join("secret")).unwrap();
    let key = std::fs::read_to_string(tls.join("a-key.pem")).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_string();
    let mut texts = vec![r.to_string()];
    for h in ["a", "b"] {
        texts.push(std::fs::read_to_string(dir.join(h).join("agent.log")).unwrap_or_default());
    }
    for t in texts {
        assert!(!t.contains(secret.trim()), "the shared secret leaked");
        assert!(
            !t.contains(&key_body) && !t.contains("PRIVATE KEY"),
            "a key leaked"
        );
    }
}

/// Runs `ferry migrate redis --to TO EXTRA…` in the background; returns its child.
fn migrate_in_background(
    env: &Env,
    lab: &Lab,
    to: &str,
    extra: &[&str],
    report: &Path,
) -> std::process::Child {
    Command::new(&env.ferry)
        .args(["migrate", "redis", "--to", to])
        .args(extra)
        .arg("--report")
        .arg(report)
        .env("FERRY_LAB", lab.name())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ferry migrate")
}

#[test]
fn a_cut_link_a_full_destination_and_an_interrupted_cli_lose_nothing() {
    let Some(env) = e2e("a_cut_link_a_full_destination_and_an_interrupted_cli_lose_nothing") else {
        return;
    };
    let lab = Lab::up_shaped(&env, 2, "100mbit");
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "100000", "key", "1000"]);
    let probe = lab.probe(&ip);
    let b = lab.netns("b");

    // 2. b's link goes down while the images are on their way.
    let report = env.work.join(format!("{}.json", unique("cut")));
    let mut child = migrate_in_background(&env, &lab, "b", &[], &report);
    std::thread::sleep(Duration::from_secs(3));
    sh(&format!("ip -n {b} link set up0 down"));
    let status = child.wait().unwrap();
    sh(&format!("ip -n {b} link set up0 up"));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(!status.success());
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("running")
    );
    assert!(
        eventually(Duration::from_secs(40), || !lab
            .netns_exists(&format!("{b}-redis"))),
        "b dropped what it had built once it lost the source"
    );
    assert!(lab.containers_on("b").is_empty());

    // 3. b's image space is too small for the container.
    let images = lab.dir().join("b").join("images");
    sh(&format!(
        "mount -t tmpfs -o size=16m ferry-test-full {}",
        images.display()
    ));
    let (ok, r) = lab.migrate("redis", "b", &[]);
    sh(&format!("umount -l {}", images.display()));
    assert!(!ok);
    rolled_back_to_a(&lab, &r, &ip);

    // 5. The CLI is interrupted mid-migration: the agents carry on without it.
    let report = env.work.join(format!("{}.json", unique("int")));
    let mut child = migrate_in_background(&env, &lab, "b", &[], &report);
    std::thread::sleep(Duration::from_secs(2));
    sh(&format!("kill -INT {}", child.id()));
    let _ = child.wait();
    assert!(
        eventually(Duration::from_secs(90), || {
            let (on_a, on_b) = (
                lab.container_status("a", "redis"),
                lab.container_status("b", "redis"),
            );
            matches!(
                (on_a.as_deref(), on_b.as_deref()),
                (Some("running"), None) | (None, Some("running"))
            )
        }),
        "the container ends up running on exactly one host"
    );
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(&ip, &["dbsize"]), "100001");
}

#[test]
fn a_crashed_source_agent_settles_its_migration_when_it_restarts() {
    let Some(env) = e2e("a_crashed_source_agent_settles_its_migration_when_it_restarts") else {
        return;
    };
    let lab = Lab::up_shaped(&env, 2, "100mbit");
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "100000", "key", "1000"]);
    let probe = lab.probe(&ip);

    // 6. The source agent dies while the images are on their way.
    let report = env.work.join(format!("{}.json", unique("crash")));
    let mut child = migrate_in_background(&env, &lab, "b", &[], &report);
    std::thread::sleep(Duration::from_secs(3));
    let status = lab.status();
    let pid = status["hosts"][0]["agent"]["pid"]
        .as_u64()
        .expect("a's agent");
    sh(&format!("kill -9 {pid}"));
    let _ = child.wait();
    assert!(lab.containers_on("b").is_empty(), "b dropped its half");
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
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(&ip, &["dbsize"]), "100001");
}

#[test]
fn a_destination_restarting_between_commit_and_its_answer_keeps_the_container() {
    let Some(env) =
        e2e("a_destination_restarting_between_commit_and_its_answer_keeps_the_container")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "100000", "key", "1000"]);
    let probe = lab.probe(&ip);

    // 11. b commits, records it, and its agent dies before a hears "committed"; a asks
    // again while b restarts, and b's record says it runs there.
    let b_pid = lab.status()["hosts"][1]["agent"]["pid"]
        .as_u64()
        .expect("b's agent");
    let report = env.work.join(format!("{}.json", unique("commit")));
    let mut child = migrate_in_background(
        &env,
        &lab,
        "b",
        &["--inject-fault", "dest-dies-after-commit"],
        &report,
    );
    assert!(
        eventually(Duration::from_secs(60), || !Path::new(&format!(
            "/proc/{b_pid}"
        ))
        .exists()),
        "b's agent exited after committing"
    );
    lab.ok(&["restart", "b", "--faults"]);
    let status = child.wait().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(status.success(), "{r}");
    assert_eq!(r["outcome"], "migrated", "{r}");
    assert!(r.to_string().contains("confirmed the commit"), "{r}");
    assert_eq!(lab.containers_on("b"), ["redis"]);
    assert!(
        lab.containers_on("a").is_empty(),
        "one copy only: {}",
        lab.status()
    );
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(&ip, &["dbsize"]), "100001");
}

/// Writes an executable CRIU stand-in that runs the real CRIU, but kills it `after`
/// seconds into every RPC session (`swrk`: runc's dumps and restores).
fn crashing_criu(work: &Path, after: &str) -> PathBuf {
    let real = sh("command -v criu");
    let path = work.join(unique("criu"));
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = swrk ]; then\n  {real} \"$@\" &\n  pid=$!\n  sleep {after}\n  kill -9 $pid\n  wait $pid\n  exit 137\nfi\nexec {real} \"$@\"\n",
        real = real.trim()
    );
    std::fs::write(&path, script).expect("the CRIU stand-in");
    sh(&format!("chmod 755 {}", path.display()));
    path
}

#[test]
fn criu_crashing_on_either_side_and_a_container_exiting_are_settled() {
    let Some(env) = e2e("criu_crashing_on_either_side_and_a_container_exiting_are_settled") else {
        return;
    };
    let lab = Lab::up_shaped(&env, 2, "100mbit");
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "100000", "key", "1000"]);
    let probe = lab.probe(&ip);

    // 7. CRIU dies on the source a second into the dump.
    let slow = crashing_criu(&env.work, "1");
    lab.ok(&[
        "restart",
        "a",
        "--faults",
        "--",
        "--criu",
        slow.to_str().unwrap(),
    ]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok);
    rolled_back_to_a(&lab, &r, &ip);
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("out of repair mode"),
        "ferry says what it did about the sockets a killed CRIU left in repair mode: {r}"
    );
    lab.ok(&["restart", "a", "--faults"]);
    // The client's connection may still be reset: where CRIU thawed the container to
    // hold it by ptrace alone (cgroup v1 freezer), its death lets the application run
    // before ferry's rollback, and a read in repair mode fails. No acknowledged increment
    // is lost: count on a new connection.
    let p = probe.stop();
    assert_eq!(p["lost_or_repeated"], 0, "{p}");
    let probe = lab.probe(&ip);

    // 8. CRIU dies on the destination as soon as the restore starts.
    let quick = crashing_criu(&env.work, "0");
    lab.ok(&[
        "restart",
        "b",
        "--faults",
        "--",
        "--criu",
        quick.to_str().unwrap(),
    ]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok);
    rolled_back_to_a(&lab, &r, &ip);
    lab.ok(&["restart", "b", "--faults"]);
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(&ip, &["dbsize"]), "100001");

    // 12. The container exits by itself while pre-copy rounds run.
    let report = env.work.join(format!("{}.json", unique("exit")));
    let mut child = migrate_in_background(&env, &lab, "b", &["--strategy", "precopy"], &report);
    std::thread::sleep(Duration::from_secs(2));
    let pid = lab.status()["hosts"][0]["containers"][0]["pid"]
        .as_u64()
        .expect("the container's pid");
    sh(&format!("kill -9 {pid}"));
    let status = child.wait().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(!status.success(), "{r}");
    assert_ne!(r["outcome"], "migrated", "{r}");
    assert_ne!(
        lab.container_status("a", "redis").as_deref(),
        Some("running"),
        "{r}"
    );
    assert!(lab.containers_on("b").is_empty(), "nothing runs at b: {r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("exited by itself"),
        "{r}"
    );
}
