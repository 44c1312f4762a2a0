//! End-to-end: containers ferry did not start. A runc container that someone started
//! from their own bundle (its root file system outside it), in their own named network
//! namespace on a lab host's segment, moves with its address and its client's
//! connection, and comes back as ferry's own.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::handmade::{runc_run, runc_status, start_by_hand};
use common::lab::{assert_unbroken, Lab};
use common::*;

#[test]
fn a_runc_container_from_its_owner_s_bundle_moves_and_comes_back_as_ferry_s() {
    let Some(env) = e2e("a_runc_container_from_its_owner_s_bundle_moves_and_comes_back_as_ferry_s")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = "10.77.3.41";
    start_by_hand(&lab, &env, "uredis", ip, "02:42:0a:4d:03:29", true);
    lab.wait_redis(ip);
    lab.redis(ip, &["debug", "populate", "50000", "key", "100"]);
    let probe = lab.probe(ip);

    // A restore failure at the destination leaves it running where it was.
    let (ok, r) = lab.migrate("uredis", "b", &["--inject-fault", "restore-fails"]);
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert_eq!(runc_status(&lab, "a", "uredis").as_deref(), Some("running"));
    assert_eq!(runc_status(&lab, "b", "uredis"), None, "{r}");

    let (ok, r) = lab.migrate("uredis", "b", &[]);
    assert!(ok, "{r}");
    assert_eq!(r["outcome"], "migrated", "{r}");
    assert_eq!(runc_status(&lab, "b", "uredis").as_deref(), Some("running"));
    assert_eq!(runc_status(&lab, "a", "uredis"), None, "gone from a's runc");
    assert!(
        lab.containers_on("b").contains(&"uredis".to_string()),
        "b's agent knows it as its own"
    );
    let config = lab.dir().join("b/bundles/uredis/config.json");
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap();
    assert_eq!(
        c["root"]["path"], "rootfs",
        "its root file system landed in its bundle"
    );

    // Back, now as one of ferry's containers.
    let (ok, r) = lab.migrate("uredis", "a", &["--strategy", "precopy"]);
    assert!(ok, "{r}");
    assert_eq!(runc_status(&lab, "a", "uredis").as_deref(), Some("running"));
    let p = probe.stop();
    assert_unbroken(&p);
    assert_eq!(
        lab.redis(ip, &["dbsize"]),
        "50001",
        "the keys and the probe's"
    );
}

#[test]
fn runc_containers_ferry_cannot_move_are_refused_and_a_broken_post_copy_resumes_where_it_was() {
    let Some(env) = e2e(
        "runc_containers_ferry_cannot_move_are_refused_and_a_broken_post_copy_resumes_where_it_was",
    ) else {
        return;
    };
    let lab = Lab::up(&env, 2);
    // Its own unnamed network namespace: nothing tells ferry where its address lives.
    let bundle = env.work.join("bundle-lonely");
    let b = bundle.to_str().unwrap();
    env.ferry_ok(&["bundle", "create", b, "--", "/bin/sleep", "100000"]);
    runc_run(&lab, b, "lonely");
    let (moved, said) = lab.ferry(&["migrate", "lonely", "--to", "b"]);
    assert!(!moved, "{said}");
    assert!(
        said.contains("was not started by ferry") && said.contains("ip netns add"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert_eq!(runc_status(&lab, "a", "lonely").as_deref(), Some("running"));
    let _ = Command::new("runc")
        .arg("--root")
        .arg(lab.dir().join("a/runc"))
        .args(["delete", "-f", "lonely"])
        .output();

    // A veth on no bridge: its address cannot follow it.
    start_by_hand(
        &lab,
        &env,
        "astray",
        "10.77.3.42",
        "02:42:0a:4d:03:2a",
        false,
    );
    let (moved, said) = lab.ferry(&["migrate", "astray", "--to", "b"]);
    assert!(!moved, "{said}");
    assert!(
        said.contains("is on no bridge, not on br0") && said.contains("cannot follow"),
        "{said}"
    );
    assert_eq!(runc_status(&lab, "a", "astray").as_deref(), Some("running"));

    // Post-copy broken after it ran at b: kept frozen on a, and `ferry resume` finds its
    // owner's network again.
    let ip = "10.77.3.43";
    start_by_hand(&lab, &env, "urest", ip, "02:42:0a:4d:03:2b", true);
    lab.wait_redis(ip);
    lab.redis(ip, &["debug", "populate", "20000", "key", "100"]);
    let (ok, r) = lab.migrate(
        "urest",
        "b",
        &["--strategy", "postcopy", "--inject-fault", "cut-postcopy"],
    );
    assert!(!ok, "{r}");
    assert_eq!(r["outcome"], "failed", "{r}");
    assert_eq!(runc_status(&lab, "a", "urest").as_deref(), Some("paused"));
    let (ok, out) = lab.ferry(&["resume", "urest"]);
    assert!(ok, "{out}");
    assert_eq!(runc_status(&lab, "a", "urest").as_deref(), Some("running"));
    assert_eq!(
        lab.redis(ip, &["dbsize"]),
        "20000",
        "it answers at its address again"
    );
}
