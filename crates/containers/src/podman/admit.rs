//! A Podman container's definition against the destination's restore policy: the
//! configuration Podman's database kept and the OCI spec it ran, both as they will be
//! imported here, checked before Podman sees them.

use std::path::{Path, PathBuf};

use ferry_runtime::policy::{Refusal, RestorePolicy};
use serde_json::Value;

/// Where Podman keeps one container's own files on this host (its `/etc/hosts`, its
/// `/dev/shm`, …): binds from there are Podman's, not the host's.
fn own_dirs(config: &Value, graph_root: &Path, run_root: &Path) -> Vec<PathBuf> {
    let id = config["id"].as_str().unwrap_or_default();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Vec::new();
    }
    [graph_root, run_root]
        .iter()
        .map(|r| r.join("overlay-containers").join(id))
        .collect()
}

/// Checks the configuration and the spec that arrived, as they will be imported.
pub fn admit(
    config: &Value,
    spec: &Value,
    graph_root: &Path,
    run_root: &Path,
    policy: &RestorePolicy,
) -> Result<(), Refusal> {
    if config["privileged"].as_bool() == Some(true) {
        return Err(Refusal {
            field: "the definition's config.dump privileged".into(),
            reason: "is true: the container would hold every capability and device of this host, which no restore policy allows".into(),
        });
    }
    let own = own_dirs(config, graph_root, run_root);
    let own: Vec<&Path> = own.iter().map(PathBuf::as_path).collect();
    if config["spec"].is_object() {
        policy.check_engine_spec("the definition's config.dump spec", &config["spec"], &own)?;
    }
    policy.check_engine_spec("the definition's spec.dump", spec, &own)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "0123456789abcdef";

    fn spec(extra_mount: Option<Value>) -> Value {
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            json!({"destination": "/etc/hosts", "type": "bind",
                   "source": format!("/run/s/overlay-containers/{ID}/userdata/hosts"),
                   "options": ["bind", "rprivate"]}),
            json!({"destination": "/dev/shm", "type": "bind",
                   "source": format!("/var/s/overlay-containers/{ID}/userdata/shm"),
                   "options": ["bind"]}),
        ];
        mounts.extend(extra_mount);
        json!({
            "root": {"path": "/var/s/overlay/abc/merged"},
            "mounts": mounts,
            "linux": {"namespaces": [
                {"type": "network", "path": "/run/netns/netns-1"},
                {"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}
            ]}
        })
    }

    fn check(config: Value, spec: Value) -> Result<(), Refusal> {
        admit(
            &config,
            &spec,
            Path::new("/var/s"),
            Path::new("/run/s"),
            &RestorePolicy::default(),
        )
    }

    #[test]
    fn podmans_own_files_and_its_root_pass_the_default_policy() {
        let s = spec(None);
        check(json!({"id": ID, "spec": s.clone()}), s).unwrap();
    }

    #[test]
    fn host_mounts_hooks_and_privilege_are_refused_by_field() {
        let host =
            json!({"destination": "/data", "type": "bind", "source": "/root", "options": ["bind"]});
        let r = check(json!({"id": ID}), spec(Some(host.clone()))).unwrap_err();
        assert!(r.field.contains("spec.dump mounts[3].source"), "{r}");
        let r = check(json!({"id": ID, "spec": spec(Some(host))}), spec(None)).unwrap_err();
        assert!(r.field.contains("config.dump spec mounts[3]"), "{r}");
        // Another container's files are not this container's.
        let other = json!({"destination": "/x", "type": "bind",
                           "source": "/var/s/overlay-containers/ffff/userdata", "options": ["bind"]});
        assert!(check(json!({"id": ID}), spec(Some(other))).is_err());
        // Nor is the store itself, reached with '..'.
        let up = json!({"destination": "/x", "type": "bind",
                        "source": format!("/var/s/overlay-containers/{ID}/../.."), "options": ["bind"]});
        assert!(check(json!({"id": ID}), spec(Some(up))).is_err());
        let mut hooked = spec(None);
        hooked["hooks"] = json!({"prestart": [{"path": "/bin/sh"}]});
        let r = check(json!({"id": ID}), hooked).unwrap_err();
        assert!(r.field.contains("hooks.prestart"), "{r}");
        let r = check(json!({"id": ID, "privileged": true}), spec(None)).unwrap_err();
        assert!(r.field.contains("privileged"), "{r}");
    }
}
