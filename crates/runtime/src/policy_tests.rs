use serde_json::json;

use super::*;
use crate::bundle::{create_host_program_bundle, HostProgramSpec};

/// The `config.json` of a host-program container (host /usr and /etc read-only).
fn host_program() -> Value {
    let d = tempfile::tempdir().unwrap();
    let spec = HostProgramSpec {
        args: vec!["/bin/true".into()],
        netns: Some("/run/netns/x".into()),
        ..Default::default()
    };
    create_host_program_bundle(d.path(), &spec).unwrap().config
}

fn lab() -> RestorePolicy {
    let text = "# the lab\nhost-mount /usr ro\nhost-mount /etc ro  # read-only\n";
    RestorePolicy::parse(Path::new("/lab/policy"), text).unwrap()
}

fn refused(p: &RestorePolicy, c: &Value) -> String {
    p.check(c).unwrap_err().to_string()
}

#[test]
fn the_default_refuses_host_mounts_and_a_policy_line_allows_them() {
    let c = host_program();
    let e = refused(&RestorePolicy::default(), &c);
    assert!(
        e.contains("mounts[7].source") && e.contains("host's /usr"),
        "{e}"
    );
    assert!(
        e.contains("default restore policy") && e.contains("'host-mount /usr'"),
        "{e}"
    );
    lab().check(&c).unwrap();
}

#[test]
fn a_read_only_line_allows_read_only_mounts_only() {
    let mut c = host_program();
    c["mounts"][8]["options"] = json!(["rbind"]);
    let e = refused(&lab(), &c);
    assert!(
        e.contains("mounts[8].source") && e.contains("read-write"),
        "{e}"
    );
    assert!(
        e.contains("line 3 of the restore policy /lab/policy"),
        "{e}"
    );
    // Below an allowed path counts; beside it does not.
    c["mounts"][8] =
        json!({"destination": "/x", "type": "bind", "source": "/usr/share", "options": ["ro"]});
    lab().check(&c).unwrap();
    c["mounts"][8]["source"] = json!("/usrx");
    assert!(refused(&lab(), &c).contains("'host-mount /usrx'"));
    c["mounts"][8]["source"] = json!("/usr/../root");
    assert!(refused(&lab(), &c).contains("without '..'"));
}

#[test]
fn hooks_are_refused_unless_allowed() {
    let mut c = host_program();
    c["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "id"]}]});
    let e = refused(&lab(), &c);
    assert!(
        e.contains("hooks.prestart") && e.contains("'hooks allow'"),
        "{e}"
    );
    c["hooks"] = json!({"prestart": []});
    lab().check(&c).unwrap();
    c["hooks"] = json!({"createRuntime": [{"path": "/bin/true"}]});
    let allow = RestorePolicy::parse(
        Path::new("p"),
        "host-mount /usr ro\nhost-mount /etc ro\nhooks allow",
    )
    .unwrap();
    allow.check(&c).unwrap();
}

#[test]
fn root_path_must_stay_inside_the_bundle() {
    for bad in ["/", "/srv/rootfs", "../rootfs", "rootfs/../..", ".", ""] {
        let mut c = host_program();
        c["root"]["path"] = json!(bad);
        let e = refused(&lab(), &c);
        assert!(e.contains("root.path"), "{bad}: {e}");
    }
    let mut c = host_program();
    c["root"]["path"] = json!("./images/rootfs");
    lab().check(&c).unwrap();
}

#[test]
fn capabilities_beyond_the_default_set_need_a_line() {
    let mut c = host_program();
    c["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN", "CAP_SYS_ADMIN"]);
    let e = refused(&lab(), &c);
    assert!(
        e.contains("process.capabilities.bounding") && e.contains("CAP_SYS_ADMIN"),
        "{e}"
    );
    let p = RestorePolicy::parse(
        Path::new("p"),
        "host-mount /usr ro\nhost-mount /etc ro\ncapability CAP_SYS_ADMIN",
    )
    .unwrap();
    p.check(&c).unwrap();
}

#[test]
fn namespaces_stay_private_and_only_the_network_is_joined_by_path() {
    let mut c = host_program();
    c["linux"]["namespaces"] =
        json!([{"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}]);
    assert!(refused(&lab(), &c).contains("no pid namespace"));
    c["linux"]["namespaces"] = json!([{"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network", "path": "/run/netns/x"}]);
    let e = refused(&lab(), &c);
    assert!(
        e.contains("linux.namespaces[0].path") && e.contains("'namespace-path pid'"),
        "{e}"
    );
}

#[test]
fn a_rule_that_opens_every_device_is_refused() {
    let mut c = host_program();
    c["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]);
    lab().check(&c).unwrap();
    c["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    let e = refused(&lab(), &c);
    assert!(
        e.contains("linux.resources.devices[0]") && e.contains("'devices allow'"),
        "{e}"
    );
}

#[test]
fn policy_files_with_errors_name_the_line() {
    let e = RestorePolicy::parse(Path::new("/p"), "hooks allow\nhost-mount usr\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "restore policy /p, line 2: 'usr' is not an absolute path without '..'"
    );
    let e = RestorePolicy::parse(Path::new("/p"), "allow everything").unwrap_err();
    assert!(
        e.to_string()
            .contains("line 1: 'allow everything' is not a rule"),
        "{e}"
    );
    let e = RestorePolicy::parse(Path::new("/p"), "host-mount /usr rw").unwrap_err();
    assert!(e.to_string().contains("'host-mount PATH ro'"), "{e}");
}
