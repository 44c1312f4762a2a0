//! Containers started by hand, as their owners would, without ferry: a named network
//! namespace on a lab host's bridge, a bundle that joins it, and `runc run`.

use std::process::{Command, Stdio};

use super::lab::{Lab, REDIS_ARGS};
use super::Env;

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a user does by hand on host `a`: a named namespace with `eth0` on the host's
/// bridge, a bundle that joins it, and `runc run` in the agent's runtime root.
pub fn start_by_hand(lab: &Lab, env: &Env, name: &str, ip: &str, mac: &str, attach: bool) {
    let host = lab.netns("a");
    let ns = format!("ferry-{}-user-{name}", lab.name());
    let (outer, inner) = (format!("u{name}h"), format!("u{name}c"));
    sh(&["ip", "netns", "add", &ns]);
    sh(&[
        "ip", "-n", &host, "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns",
        &ns,
    ]);
    sh(&["ip", "-n", &ns, "link", "set", &inner, "name", "eth0"]);
    sh(&["ip", "-n", &ns, "link", "set", "eth0", "address", mac]);
    sh(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{ip}/16"),
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    if attach {
        sh(&[
            "ip", "-n", &host, "link", "set", &outer, "master", "br0", "up",
        ]);
    } else {
        sh(&["ip", "-n", &host, "link", "set", &outer, "up"]);
    }
    let bundle = env.work.join(format!("bundle-{name}"));
    let b = bundle.to_str().unwrap();
    let mut args = vec!["bundle", "create", b, "--netns"];
    let path = format!("/run/netns/{ns}");
    args.push(&path);
    args.push("--");
    args.extend_from_slice(REDIS_ARGS);
    env.ferry_ok(&args);
    // Its root file system elsewhere, as a bundle that points at an unpacked image has.
    let elsewhere = env.work.join(format!("rootfs-{name}"));
    std::fs::rename(bundle.join("rootfs"), &elsewhere).unwrap();
    let config = bundle.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["root"]["path"] = elsewhere.to_str().unwrap().into();
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    runc_run(lab, b, name);
}

/// `runc run -d` of `bundle` as `name` in host `a`'s runtime root, as its owner would.
pub fn runc_run(lab: &Lab, bundle: &str, name: &str) {
    let ok = Command::new("runc")
        .arg("--root")
        .arg(lab.dir().join("a/runc"))
        .args(["run", "-d", "--bundle", bundle, name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "runc run {name}");
}

/// runc's status of `name` in host `host`'s runtime root, if it is there.
pub fn runc_status(lab: &Lab, host: &str, name: &str) -> Option<String> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(lab.dir().join(host).join("runc"))
        .args(["state", name])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["status"].as_str().map(str::to_string)
}
