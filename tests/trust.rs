//! End-to-end: who may ask an agent for what (docs/security.md). Redis runs under a live
//! INCR client; after each refusal it runs on `a` only, and no acknowledged INCR is lost.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};

use common::lab::{assert_unbroken, tls_dir, Lab};
use common::*;

const A: &str = "10.77.0.1:7070";
const B: &str = "10.77.0.2:7070";

/// `ferry ARGS` from the lab's client namespace, as a CLI on another machine, proving
/// itself with the certificate `cert` of the lab's CA (none: no TLS at all).
fn remote(lab: &Lab, cert: Option<&str>, args: &[&str]) -> (bool, String) {
    let dir = lab.dir();
    let tls = dir.join("tls");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.netns("client")])
        .arg(&lab.ferry)
        .args(args)
        .arg("--secret-file")
        .arg(dir.join("secret"))
        .stdin(Stdio::null());
    if let Some(cert) = cert {
        cmd.arg("--tls-ca")
            .arg(tls.join("ca.pem"))
            .arg("--tls-cert")
            .arg(tls.join(format!("{cert}.pem")))
            .arg("--tls-key")
            .arg(tls.join(format!("{cert}-key.pem")));
    }
    let out = cmd.output().expect("ferry");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn runs_on_a_only(lab: &Lab) {
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("running")
    );
    assert!(lab.containers_on("b").is_empty());
}

#[test]
fn operators_control_hosts_migrate_and_tcp_needs_tls() {
    let Some(env) = e2e("operators_control_hosts_migrate_and_tcp_needs_tls") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "20000", "key", "100"]);
    let probe = lab.probe(&ip);
    let check = ["check", "redis", "--agent", A, "--to", B];

    // An operator certificate controls a remote agent.
    let (ok, out) = remote(&lab, Some("operator-lab"), &check);
    assert!(ok, "{out}");
    // A host certificate does not, whichever host's.
    for host in ["a", "b"] {
        let (ok, out) = remote(&lab, Some(host), &check);
        assert!(!ok, "{out}");
        assert!(out.contains("cannot control an agent"), "{out}");
        assert_eq!(out.trim().lines().count(), 1, "one sentence: {out}");
    }
    // A CLI without TLS does not dial a TCP agent at all.
    let (ok, out) = remote(&lab, None, &check);
    assert!(!ok && out.contains("mutual TLS only"), "{out}");

    // An agent whose certificate is an operator's cannot migrate: b refuses it as a host.
    let tls = lab.dir().join("tls");
    let op = tls_dir(&env.work, &tls, &tls, "operator-lab", "a");
    lab.ok(&[
        "restart",
        "a",
        "--faults",
        "--tls-dir",
        op.to_str().unwrap(),
    ]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok, "{r}");
    assert_ne!(r["outcome"], "migrated", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not act as a host"), "{r}");
    runs_on_a_only(&lab);
    lab.ok(&["restart", "a", "--faults"]);

    // b takes containers from c only: a's migration is refused before anything moves.
    lab.ok(&["restart", "b", "--faults", "--", "--accept-from", "c"]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok, "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("host 'a' is not among the peers"), "{r}");
    runs_on_a_only(&lab);
    lab.ok(&["restart", "b", "--faults", "--", "--accept-from", "a,c"]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(ok, "{r}");
    let (ok, r) = lab.migrate("redis", "a", &[]);
    assert!(ok, "{r}");
    lab.ok(&["restart", "b", "--faults"]);

    // An agent listening on TCP with a shared secret only does not start.
    let state = env.work.join(unique("plain"));
    std::fs::create_dir_all(&state).unwrap();
    let secret = lab.dir().join("secret");
    let out = Command::new(&env.ferry)
        .args(["agent", "--name", "plain", "--listen", "127.0.0.1:7999"])
        .arg("--secret-file")
        .arg(&secret)
        .arg("--state-dir")
        .arg(&state)
        .arg("--runtime-root")
        .arg(state.join("runc"))
        .arg("--control")
        .arg(state.join("agent.sock"))
        .stdin(Stdio::null())
        .output()
        .expect("ferry agent");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("needs mutual TLS"), "{text}");

    // After all of that, the container still runs on a, its client unbroken.
    runs_on_a_only(&lab);
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(&ip, &["dbsize"]), "20001");
}

/// Edits the `config.json` of `name` on `host` as a compromised source would send it.
fn edit_config(lab: &Lab, host: &str, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = lab.dir().join(format!("{host}/bundles/{name}/config.json"));
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json");
    edit(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

#[test]
fn a_peer_s_hooks_and_host_mounts_are_refused_before_anything_runs() {
    let Some(env) = e2e("a_peer_s_hooks_and_host_mounts_are_refused_before_anything_runs") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    lab.redis(&ip, &["debug", "populate", "20000", "key", "100"]);
    let probe = lab.probe(&ip);
    let marker = env.work.join(unique("hook-ran"));
    let original = std::fs::read(lab.dir().join("a/bundles/redis/config.json")).unwrap();

    // A prestart hook: runc would run it as root on b during the restore.
    let hook = format!("touch {}", marker.display());
    edit_config(&lab, "a", "redis", |c| {
        c["hooks"] =
            serde_json::json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", hook]}]});
    });
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok, "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("hooks.prestart") && reason.contains("'hooks allow'"),
        "{r}"
    );
    runs_on_a_only(&lab);
    assert!(!marker.exists(), "the hook ran");

    // A bind mount of the host's /var outside the lab policy's /usr and /etc.
    std::fs::write(lab.dir().join("a/bundles/redis/config.json"), &original).unwrap();
    edit_config(&lab, "a", "redis", |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!(
            {"destination": "/srv", "type": "bind", "source": "/var", "options": ["rbind", "rw"]}
        ));
    });
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok, "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(".source") && reason.contains("host's /var"),
        "{r}"
    );
    assert!(reason.contains("restore-policy"), "names the policy: {r}");
    runs_on_a_only(&lab);

    // An absolute root.path (here the bundle's own rootfs, named from /): b restores
    // only a root inside the bundle, and refuses before the root file system arrives.
    let bundle = lab.dir().join("a/bundles/redis");
    edit_config(&lab, "a", "redis", |c| {
        c["root"]["path"] = serde_json::json!(bundle.join("rootfs").display().to_string());
    });
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok, "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("config.json root.path"), "{r}");
    runs_on_a_only(&lab);

    // A bundle larger than b takes is refused as it arrives.
    std::fs::write(lab.dir().join("a/bundles/redis/config.json"), &original).unwrap();
    lab.ok(&["restart", "b", "--faults", "--", "--max-bundle-bytes", "1K"]);
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(!ok, "{r}");
    assert!(r.to_string().contains("--max-bundle-bytes"), "{r}");
    runs_on_a_only(&lab);
    lab.ok(&["restart", "b", "--faults"]);

    // Neither arrival left anything on b, and the container runs on, its client unbroken.
    assert!(!lab.dir().join("b/bundles/redis").exists());
    assert!(!lab.dir().join("b/bundles/.redis.incoming").exists());
    std::fs::write(lab.dir().join("a/bundles/redis/config.json"), &original).unwrap();
    let (ok, r) = lab.migrate("redis", "b", &[]);
    assert!(ok, "{r}");
    assert_eq!(lab.containers_on("b"), ["redis"]);
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(&ip, &["dbsize"]), "20001");
}

#[test]
fn a_page_stream_that_fills_the_destination_s_images_tmpfs_is_refused_naming_the_flag() {
    let Some(env) =
        e2e("a_page_stream_that_fills_the_destination_s_images_tmpfs_is_refused_naming_the_flag")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = lab.run_redis("a", "redis");
    // About 100 MB of memory, where b's images may take 24 MB.
    lab.redis(&ip, &["debug", "populate", "100000", "key", "1000"]);
    let probe = lab.probe(&ip);
    lab.ok(&["restart", "b", "--", "--images-size", "24M"]);
    let (ok, r) = lab.migrate("redis", "b", &["--strategy", "cold"]);
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the destination says") && reason.contains("--images-size"),
        "{reason}"
    );
    runs_on_a_only(&lab);
    // With room again, it moves.
    lab.ok(&["restart", "b"]);
    let (ok, r) = lab.migrate("redis", "b", &["--strategy", "cold"]);
    assert!(ok, "{r}");
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(lab.redis(&ip, &["dbsize"]), "100001");
}
