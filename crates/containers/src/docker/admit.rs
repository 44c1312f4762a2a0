//! A Docker container's definition against the destination's restore policy: what its
//! `HostConfig` would give it on this host, checked before Docker creates it.

use ferry_runtime::policy::{Refusal, RestorePolicy};
use serde_json::Value;

fn refusal(field: &str, reason: &str) -> Refusal {
    Refusal {
        field: format!("the definition's HostConfig.{field}"),
        reason: reason.to_string(),
    }
}

/// Docker names capabilities with or without `CAP_`.
fn cap_name(cap: &str) -> String {
    let upper = cap.to_ascii_uppercase();
    match upper.starts_with("CAP_") {
        true => upper,
        false => format!("CAP_{upper}"),
    }
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// Checks the whole `docker inspect` of a container that arrived.
pub fn admit(whole: &Value, policy: &RestorePolicy) -> Result<(), Refusal> {
    let hc = &whole["HostConfig"];
    let field = |f: &str| format!("the definition's HostConfig.{f}");
    if hc["Privileged"].as_bool() == Some(true) {
        return Err(refusal(
            "Privileged",
            "is true: the container would hold every capability and device of this host, which no restore policy allows",
        ));
    }
    for cap in strings(&hc["CapAdd"]) {
        policy.capability(&field("CapAdd"), &cap_name(cap))?;
    }
    for (i, bind) in strings(&hc["Binds"]).enumerate() {
        let mut parts = bind.split(':');
        let source = parts.next().unwrap_or_default();
        let read_only = parts
            .nth(1)
            .is_some_and(|o| o.split(',').any(|x| x == "ro"));
        if !source.starts_with('/') {
            return Err(refusal(
                &format!("Binds[{i}]"),
                "names a Docker volume, which does not travel",
            ));
        }
        policy.host_mount(&field(&format!("Binds[{i}]")), source, read_only)?;
    }
    for (i, m) in hc["Mounts"].as_array().into_iter().flatten().enumerate() {
        let f = format!("Mounts[{i}]");
        match m["Type"].as_str() {
            Some("bind") => {
                let source = m["Source"].as_str().unwrap_or_default();
                let read_only = m["ReadOnly"].as_bool() == Some(true);
                policy.host_mount(&field(&f), source, read_only)?;
            }
            Some("tmpfs") => {}
            _ => return Err(refusal(&f, "is a Docker volume, which does not travel")),
        }
    }
    // `UsernsMode: host` is Docker's default (no user namespace), and the cgroup
    // namespace shows only the container's own cgroup either way.
    for (key, kind) in [
        ("NetworkMode", "network"),
        ("PidMode", "pid"),
        ("IpcMode", "ipc"),
        ("UTSMode", "uts"),
    ] {
        let mode = hc[key].as_str().unwrap_or_default();
        if mode == "host" || mode.starts_with("container:") {
            policy.namespace_join(&field(key), kind)?;
        }
    }
    let devices = hc["Devices"].as_array().is_some_and(|d| !d.is_empty())
        || hc["DeviceCgroupRules"]
            .as_array()
            .is_some_and(|d| !d.is_empty());
    if devices {
        policy.devices(&field("Devices"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn with(hc: Value) -> Value {
        json!({"Name": "/redis", "HostConfig": hc})
    }

    #[test]
    fn a_plain_container_passes_the_default_policy() {
        let p = RestorePolicy::default();
        admit(
            &with(json!({"NetworkMode": "lab", "CapAdd": null, "Binds": null})),
            &p,
        )
        .unwrap();
        admit(
            &with(json!({"CapAdd": ["NET_RAW", "CAP_CHOWN"], "IpcMode": "private"})),
            &p,
        )
        .unwrap();
    }

    #[test]
    fn privilege_capabilities_mounts_namespaces_and_devices_are_refused_by_field() {
        let p = RestorePolicy::default();
        let cases = [
            (json!({"Privileged": true}), "HostConfig.Privileged"),
            (json!({"CapAdd": ["SYS_ADMIN"]}), "CAP_SYS_ADMIN"),
            (
                json!({"Binds": ["/etc:/host-etc:ro"]}),
                "HostConfig.Binds[0]",
            ),
            (json!({"Binds": ["data:/data"]}), "Docker volume"),
            (
                json!({"Mounts": [{"Type": "bind", "Source": "/var", "ReadOnly": false}]}),
                "HostConfig.Mounts[0]",
            ),
            (json!({"PidMode": "host"}), "HostConfig.PidMode"),
            (json!({"IpcMode": "container:db"}), "HostConfig.IpcMode"),
            (
                json!({"Devices": [{"PathOnHost": "/dev/kvm"}]}),
                "HostConfig.Devices",
            ),
        ];
        for (hc, says) in cases {
            let e = admit(&with(hc.clone()), &p).unwrap_err().to_string();
            assert!(e.contains(says), "{hc}: {e}");
        }
        let lab = RestorePolicy::parse(
            Path::new("p"),
            "host-mount /etc ro\ncapability CAP_SYS_ADMIN",
        )
        .unwrap();
        admit(
            &with(json!({"Binds": ["/etc:/host-etc:ro"], "CapAdd": ["SYS_ADMIN"]})),
            &lab,
        )
        .unwrap();
        let e = admit(&with(json!({"Binds": ["/etc:/host-etc"]})), &lab)
            .unwrap_err()
            .to_string();
        assert!(e.contains("read-only only"), "{e}");
    }
}
