//! A Docker container's definition, as it travels: what `docker container inspect` says
//! of it and what it wrote to its root file system, taken at the freeze into the image
//! directory; at the destination, the request that creates the same container (same
//! name, configuration, network, address and MAC) from it.

use std::path::Path;

use ferry_engine::ports::container::ContainerError;
use serde_json::{json, Value};

/// The container as Docker described it at the source.
pub const CONFIG: &str = "docker-config.img";
/// What it wrote to its root file system.
pub const LAYER: &str = "docker-rootfs-diff.img";
/// What it deleted from it.
pub const DELETED: &str = "docker-deleted.img";
/// What it logged (Docker's log file of it), so that `docker logs` shows it all.
pub const LOG: &str = "docker-ctr-log.img";

/// Writes the definition into `images`.
pub fn capture(whole: &Value, upper: Option<&Path>, images: &Path) -> Result<(), ContainerError> {
    let path = images.join(CONFIG);
    let bytes = serde_json::to_vec(whole)
        .map_err(|e| ContainerError::Failed(format!("the container's definition: {e}")))?;
    std::fs::write(&path, bytes).map_err(|e| ContainerError::io(&path, e))?;
    if let Some(upper) = upper {
        crate::layer::capture(upper, &images.join(LAYER), &images.join(DELETED))?;
    }
    if let Some(log) = whole["LogPath"].as_str().filter(|l| !l.is_empty()) {
        let _ = std::fs::copy(log, images.join(LOG));
    }
    Ok(())
}

/// The definition that arrived.
pub fn read(images: &Path) -> Result<Value, ContainerError> {
    let path = images.join(CONFIG);
    let bytes = std::fs::read(&path).map_err(|e| ContainerError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ContainerError::Refused(format!("the container's definition is not JSON: {e}"))
    })
}

/// The name the definition gives the container.
pub fn name_of(whole: &Value) -> Option<&str> {
    whole["Name"].as_str().map(|n| n.trim_start_matches('/'))
}

/// Why a container cannot move with its address and connections, if it cannot: ferry
/// moves containers on one user-defined network (a segment both hosts share), without
/// ports published on this host's address and without Docker volumes, which stay here.
pub fn unfit(whole: &Value) -> Option<String> {
    let mode = whole["HostConfig"]["NetworkMode"].as_str().unwrap_or("");
    if mode == "host" || mode == "none" || mode.starts_with("container:") {
        return Some(format!(
            "it uses network mode '{mode}', whose address is not its own to take along"
        ));
    }
    let nets = whole["NetworkSettings"]["Networks"]
        .as_object()
        .map_or(0, |n| n.len());
    if nets != 1 {
        return Some(format!(
            "it is on {nets} networks; ferry moves a Docker container on exactly one (a network both hosts share)"
        ));
    }
    if let Some(ports) = whole["HostConfig"]["PortBindings"]
        .as_object()
        .filter(|p| !p.is_empty())
    {
        let list: Vec<&str> = ports.keys().map(String::as_str).collect();
        return Some(format!(
            "it publishes ports on this host's address ({}), and connections through them cannot follow it; run it on a network both hosts share, reached at its own address",
            list.join(", ")
        ));
    }
    let volume = whole["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["Type"] == "volume");
    if let Some(v) = volume {
        return Some(format!(
            "it uses Docker volume '{}', which stays on this host; use a bind mount of a path both hosts hold",
            v["Name"].as_str().unwrap_or("?")
        ));
    }
    None
}

/// The body of `POST /containers/create` that makes the container again: its
/// configuration and host configuration as they were, on its network with the same
/// address, MAC and aliases (less the source's short id, which Docker adds itself).
pub fn create_body(whole: &Value) -> Result<Value, ContainerError> {
    let mut body = whole["Config"].clone();
    let Some(obj) = body.as_object_mut() else {
        return Err(ContainerError::Refused(
            "the container's definition has no configuration".into(),
        ));
    };
    obj.insert("HostConfig".into(), whole["HostConfig"].clone());
    let short: String = whole["Id"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(12)
        .collect();
    let mut endpoints = serde_json::Map::new();
    for (net, ep) in whole["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let aliases: Vec<&Value> = ep["Aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a.as_str() != Some(short.as_str()))
            .collect();
        let mut ipam = ep["IPAMConfig"].clone();
        if ipam.is_null() {
            ipam = json!({});
        }
        if ipam["IPv4Address"].as_str().unwrap_or("").is_empty() {
            ipam["IPv4Address"] = ep["IPAddress"].clone();
        }
        endpoints.insert(
            net.clone(),
            json!({
                "IPAMConfig": ipam,
                "Aliases": aliases,
                "MacAddress": ep["MacAddress"],
            }),
        );
    }
    obj.insert(
        "NetworkingConfig".into(),
        json!({ "EndpointsConfig": endpoints }),
    );
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspected() -> Value {
        json!({
            "Id": "a4297bf1429c25bc72261709450c35f9a8995b5993aac82052e8e15c27ceab63",
            "Name": "/redis",
            "Config": {"Image": "localhost/ferry-redis:1", "Cmd": ["redis-server"], "MacAddress": "02:42:0a:4d:03:3d"},
            "HostConfig": {"NetworkMode": "lab", "PortBindings": {}},
            "Mounts": [{"Type": "bind", "Source": "/srv/x"}],
            "NetworkSettings": {"Networks": {"lab": {
                "IPAMConfig": {"IPv4Address": "10.77.3.61"},
                "Aliases": ["a4297bf1429c", "cache"],
                "IPAddress": "10.77.3.61",
                "MacAddress": "02:42:0a:4d:03:3d"
            }}}
        })
    }

    #[test]
    fn the_container_is_made_again_with_its_address_mac_and_aliases() {
        let body = create_body(&inspected()).unwrap();
        assert_eq!(body["Image"], "localhost/ferry-redis:1");
        assert_eq!(body["HostConfig"]["NetworkMode"], "lab");
        let ep = &body["NetworkingConfig"]["EndpointsConfig"]["lab"];
        assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.77.3.61");
        assert_eq!(ep["MacAddress"], "02:42:0a:4d:03:3d");
        assert_eq!(ep["Aliases"], json!(["cache"]));
        assert_eq!(name_of(&inspected()), Some("redis"));
    }

    #[test]
    fn an_address_docker_chose_is_asked_for_again() {
        let mut c = inspected();
        c["NetworkSettings"]["Networks"]["lab"]["IPAMConfig"] = Value::Null;
        let body = create_body(&c).unwrap();
        let ep = &body["NetworkingConfig"]["EndpointsConfig"]["lab"];
        assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.77.3.61");
    }

    #[test]
    fn what_cannot_follow_is_said() {
        assert_eq!(unfit(&inspected()), None);
        let mut c = inspected();
        c["HostConfig"]["PortBindings"] = json!({"6379/tcp": [{"HostPort": "6379"}]});
        assert!(unfit(&c).unwrap().contains("6379/tcp"));
        let mut c = inspected();
        c["HostConfig"]["NetworkMode"] = json!("host");
        assert!(unfit(&c).unwrap().contains("'host'"));
        let mut c = inspected();
        c["Mounts"] = json!([{"Type": "volume", "Name": "data"}]);
        assert!(unfit(&c).unwrap().contains("volume 'data'"));
        let mut c = inspected();
        c["NetworkSettings"]["Networks"]["other"] = json!({});
        assert!(unfit(&c).unwrap().contains("2 networks"));
    }
}
