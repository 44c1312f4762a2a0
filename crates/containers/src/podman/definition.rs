//! A Podman container's definition, as it travels: what Podman's own checkpoint export
//! holds besides CRIU's images (the container's configuration, its OCI spec, its network
//! status, its log, what it wrote to its root file system and to `/dev/shm`), taken at the
//! freeze and written into the image directory, and at the destination assembled into
//! the archive `podman container restore --import` reads, with CRIU's images linked, not
//! copied.

use std::path::{Path, PathBuf};

use ferry_engine::ports::container::ContainerError;
use serde_json::Value;

use super::bolt::{Bolt, Entry};
use super::cli::Store;

/// The files of the definition: the name Podman's archive gives each, and the name it
/// travels under in the image directory.
pub const FILES: [(&str, &str); 8] = [
    ("config.dump", "podman-config.img"),
    ("spec.dump", "podman-spec.img"),
    ("network.status", "podman-network.img"),
    ("ctr.log", "podman-ctr-log.img"),
    ("rootfs-diff.tar", "podman-rootfs-diff.img"),
    ("deleted.files", "podman-deleted.img"),
    ("devshm-checkpoint.tar", "podman-devshm.img"),
    ("store.json", "podman-store.img"),
];

fn shipped(archive_name: &str) -> &'static str {
    FILES
        .iter()
        .find(|(a, _)| *a == archive_name)
        .map(|(_, s)| *s)
        .unwrap_or("podman-unknown.img")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
    move |e| ContainerError::io(path, e)
}

fn bad(what: impl std::fmt::Display) -> ContainerError {
    ContainerError::Failed(format!("reading Podman's record of the container: {what}"))
}

/// Where a container's definition comes from at the source.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub id: &'a str,
    pub store: &'a Store,
    /// The bundle runc runs it from (its `config.json` is the OCI spec).
    pub bundle: &'a Path,
    /// Its root file system's upper layer: what it wrote.
    pub upper: Option<&'a Path>,
}

/// The container's configuration as Podman's export writes it: the database's record,
/// with its networks (minus the alias of its short id, which a new host gives itself).
pub fn config_dump(db: &Bolt, id: &str) -> Result<(Value, Option<Value>), ContainerError> {
    let ctr = db
        .root()
        .bucket(b"ctr")
        .map_err(bad)?
        .and_then(|b| b.bucket(id.as_bytes()).ok().flatten())
        .ok_or_else(|| bad(format!("container {id} is not in its database")))?;
    let raw = ctr
        .value(b"config")
        .map_err(bad)?
        .ok_or_else(|| bad("no configuration"))?;
    let mut config: Value = serde_json::from_slice(raw).map_err(bad)?;
    let mut networks = serde_json::Map::new();
    if let Some(nets) = ctr.bucket(b"networks").map_err(bad)? {
        for (name, e) in nets.entries().map_err(bad)? {
            let Entry::Value(v) = e else { continue };
            let mut opts: Value = serde_json::from_slice(v).map_err(bad)?;
            if let Some(aliases) = opts.get_mut("aliases").and_then(Value::as_array_mut) {
                aliases.retain(|a| a.as_str() != id.get(..12));
            }
            networks.insert(String::from_utf8_lossy(name).into_owned(), opts);
        }
    }
    if !networks.is_empty() {
        config["newNetworks"] = Value::Object(networks);
    }
    let status = match ctr.value(b"state").map_err(bad)? {
        Some(s) => serde_json::from_slice::<Value>(s)
            .map_err(bad)?
            .get("networkStatus")
            .cloned(),
        None => None,
    };
    Ok((config, status))
}

fn write_json(path: &Path, v: &Value) -> Result<(), ContainerError> {
    let bytes = serde_json::to_vec(v).map_err(|e| bad(e.to_string()))?;
    std::fs::write(path, bytes).map_err(io(path))
}

/// Writes the definition into `images`.
pub fn capture(src: &Source<'_>, images: &Path) -> Result<(), ContainerError> {
    let db = Bolt::open(&src.store.database()).map_err(bad)?;
    let (config, status) = config_dump(&db, src.id)?;
    write_json(&images.join(shipped("config.dump")), &config)?;
    let spec = src.bundle.join("config.json");
    std::fs::copy(&spec, images.join(shipped("spec.dump"))).map_err(io(&spec))?;
    if let Some(status) = status {
        write_json(&images.join(shipped("network.status")), &status)?;
    }
    let store = serde_json::json!({
        "graph_root": src.store.graph_root,
        "run_root": src.store.run_root,
    });
    write_json(&images.join(shipped("store.json")), &store)?;
    if let Some(log) = config.get("logPath").and_then(Value::as_str) {
        let _ = std::fs::copy(log, images.join(shipped("ctr.log")));
    }
    if let Some(upper) = src.upper {
        rootfs_diff(upper, images)?;
    }
    if let Some(shm) = config.get("ShmDir").and_then(Value::as_str) {
        let shm = Path::new(shm);
        if std::fs::read_dir(shm).is_ok_and(|mut d| d.next().is_some()) {
            crate::layer::tar_create(
                shm,
                &[".".into()],
                &images.join(shipped("devshm-checkpoint.tar")),
            )?;
        }
    }
    Ok(())
}

/// What the container wrote: the upper layer's files as a tar, and the paths it
/// deleted (overlay's whiteouts) as the list Podman's import removes.
fn rootfs_diff(upper: &Path, images: &Path) -> Result<(), ContainerError> {
    crate::layer::capture(
        upper,
        &images.join(shipped("rootfs-diff.tar")),
        &images.join(shipped("deleted.files")),
    )
}

/// Where the destination's Podman keeps its state, and the CRIU configuration file the
/// restore must read.
#[derive(Debug, Clone)]
pub struct Destination<'a> {
    pub store: &'a Store,
    pub criu_conf: &'a Path,
    /// The cgroup parent its containers get here, when not the one it had.
    pub cgroup_parent: Option<&'a str>,
    pub policy: &'a ferry_runtime::policy::RestorePolicy,
}

/// Moves the container's cgroup under `parent` (configuration and spec agree).
fn reparent(config: &mut Value, spec: &mut Value, parent: &str) {
    let old = config["cgroupParent"].as_str().unwrap_or("").to_string();
    config["cgroupParent"] = Value::String(parent.to_string());
    if let Some(path) = spec["linux"]["cgroupsPath"].as_str() {
        if !old.is_empty() {
            if let Some(rest) = path.strip_prefix(old.as_str()) {
                spec["linux"]["cgroupsPath"] = Value::String(format!("{parent}{rest}"));
            }
        }
    }
}

/// Replaces the source's storage roots by the destination's in every string of `v`.
fn rebase(v: &mut Value, from: &[(String, String)]) {
    match v {
        Value::String(s) => {
            for (old, new) in from {
                if !old.is_empty() && s.starts_with(old.as_str()) {
                    *s = format!("{new}{}", &s[old.len()..]);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rebase(x, from)),
        Value::Object(o) => o.values_mut().for_each(|x| rebase(x, from)),
        _ => {}
    }
}

fn read_json(path: &Path) -> Result<Value, ContainerError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ContainerError::Failed(format!(
            "{}: not the JSON it should be: {e}",
            path.display()
        ))
    })
}

/// The name the definition gives the container.
pub fn name_in(images: &Path) -> Result<String, ContainerError> {
    let config = read_json(&images.join(shipped("config.dump")))?;
    config
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ContainerError::Failed("the container's definition has no name".into()))
}

/// Builds the archive for `podman container restore --import` in `work` from the
/// definition in `images`; returns its path.
pub fn assemble(
    images: &Path,
    work: &Path,
    dest: &Destination<'_>,
) -> Result<PathBuf, ContainerError> {
    let dir = work.join("podman-import");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let store = read_json(&images.join(shipped("store.json")))?;
    let root = |k: &str| {
        store
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let roots = [
        (
            root("graph_root"),
            dest.store.graph_root.display().to_string(),
        ),
        (root("run_root"), dest.store.run_root.display().to_string()),
    ];
    let mut config = read_json(&images.join(shipped("config.dump")))?;
    rebase(&mut config, &roots);
    let mut spec = read_json(&images.join(shipped("spec.dump")))?;
    rebase(&mut spec, &roots);
    let (graph, run) = (&dest.store.graph_root, &dest.store.run_root);
    super::admit::admit(&config, &spec, graph, run, dest.policy)
        .map_err(|r| ContainerError::Refused(r.to_string()))?;
    if !spec["annotations"].is_object() {
        spec["annotations"] = serde_json::json!({});
    }
    spec["annotations"]["org.criu.config"] = Value::String(dest.criu_conf.display().to_string());
    if let Some(parent) = dest.cgroup_parent {
        reparent(&mut config, &mut spec, parent);
    }
    write_json(&dir.join("config.dump"), &config)?;
    write_json(&dir.join("spec.dump"), &spec)?;
    for (archive, travelled) in FILES.iter().skip(2) {
        let from = images.join(travelled);
        if *archive == "store.json" || !from.exists() {
            continue;
        }
        let to = dir.join(archive);
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(io(&from))?;
        }
    }
    std::os::unix::fs::symlink(images, dir.join("checkpoint")).map_err(io(&dir))?;
    let members: Vec<String> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let out = work.join("podman-import.tar");
    crate::layer::tar_create(&dir, &members, &out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::bolt::tests::{file, inline, leaf};
    use super::*;

    fn db(id: &str) -> Bolt {
        let config = br#"{"id":"ID","name":"redis","logPath":"/g/overlay-containers/ID/userdata/ctr.log","newNetworks":null}"#;
        let nets = inline(&[(
            b"lab",
            br#"{"aliases":["0123456789ab","cache"],"static_ips":["10.77.3.41"]}"#.to_vec(),
            false,
        )]);
        let state = br#"{"state":3,"networkStatus":{"lab":{"interfaces":{"eth0":{"mac_address":"02:42:0a:4d:03:29"}}}}}"#;
        let ctr = inline(&[
            (b"config", config.to_vec(), false),
            (b"networks", nets, true),
            (b"state", state.to_vec(), false),
        ]);
        let ctrs = inline(&[(id.as_bytes(), ctr, true)]);
        Bolt::from_bytes(file(vec![leaf(3, &[(b"ctr", ctrs, true)], true)])).unwrap()
    }

    #[test]
    fn the_configuration_carries_its_networks_without_the_short_id_alias() {
        let id = "0123456789abcdef";
        let (config, status) = config_dump(&db(id), id).unwrap();
        assert_eq!(config["name"], "redis");
        assert_eq!(
            config["newNetworks"]["lab"]["aliases"],
            serde_json::json!(["cache"])
        );
        assert_eq!(config["newNetworks"]["lab"]["static_ips"][0], "10.77.3.41");
        assert_eq!(
            status.unwrap()["lab"]["interfaces"]["eth0"]["mac_address"],
            "02:42:0a:4d:03:29"
        );
        assert!(config_dump(&db(id), "other").is_err());
    }

    #[test]
    fn the_source_roots_become_the_destinations() {
        let mut v = serde_json::json!({
            "staticDir": "/src/g/overlay-containers/x/userdata",
            "ExitCommand": ["podman", "--root", "/src/g", "--runroot", "/src/r", "cleanup"],
            "other": "/src/gx-not-a-root-prefix-but-a-string-prefix",
            "n": 3,
        });
        let roots = [
            ("/src/g".to_string(), "/dst/g".to_string()),
            ("/src/r".to_string(), "/dst/r".to_string()),
        ];
        rebase(&mut v, &roots);
        assert_eq!(v["staticDir"], "/dst/g/overlay-containers/x/userdata");
        assert_eq!(v["ExitCommand"][2], "/dst/g");
        assert_eq!(v["ExitCommand"][4], "/dst/r");
        assert_eq!(v["n"], 3);
    }

    #[test]
    fn the_archive_links_the_images_and_names_ferrys_criu_configuration() {
        let t = tempfile::tempdir().unwrap();
        let (images, work) = (t.path().join("images"), t.path().join("work"));
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let w = |n: &str, s: &str| std::fs::write(images.join(n), s).unwrap();
        w(
            "podman-config.img",
            r#"{"name":"redis","staticDir":"/a/g/x","cgroupParent":"/libpod_parent"}"#,
        );
        w(
            "podman-spec.img",
            r#"{"ociVersion":"1.0.2","linux":{"cgroupsPath":"/libpod_parent/libpod-x","namespaces":[{"type":"pid"},{"type":"mount"},{"type":"ipc"},{"type":"uts"}]}}"#,
        );
        w(
            "podman-store.img",
            r#"{"graph_root":"/a/g","run_root":"/a/r"}"#,
        );
        w("podman-network.img", "{}");
        w("inventory.img", "criu");
        let store = Store {
            graph_root: "/b/g".into(),
            run_root: "/b/r".into(),
        };
        let conf = Path::new("/etc/ferry/redis.conf");
        let dest = Destination {
            store: &store,
            criu_conf: conf,
            cgroup_parent: Some("/ferry/b/podman"),
            policy: &ferry_runtime::policy::RestorePolicy::default(),
        };
        let tar = assemble(&images, &work, &dest).unwrap();
        assert_eq!(name_in(&images).unwrap(), "redis");
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&tar)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            listing.contains(&format!("checkpoint -> {}", images.display())),
            "{listing}"
        );
        assert!(listing.contains("network.status") && !listing.contains("store.json"));
        let config = read_json(&work.join("podman-import/config.dump")).unwrap();
        assert_eq!(config["staticDir"], "/b/g/x");
        let spec = read_json(&work.join("podman-import/spec.dump")).unwrap();
        assert_eq!(
            spec["annotations"]["org.criu.config"],
            "/etc/ferry/redis.conf"
        );
        assert_eq!(spec["linux"]["cgroupsPath"], "/ferry/b/podman/libpod-x");
        assert_eq!(config["cgroupParent"], "/ferry/b/podman");
    }

    #[test]
    fn whiteouts_become_the_deleted_list() {
        let t = tempfile::tempdir().unwrap();
        let (upper, images) = (t.path().join("upper"), t.path().join("images"));
        std::fs::create_dir_all(upper.join("data")).unwrap();
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(upper.join("data/dump.rdb"), "REDIS").unwrap();
        rootfs_diff(&upper, &images).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tf")
            .arg(images.join("podman-rootfs-diff.img"))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("data/dump.rdb"), "{listing}");
        // Making a whiteout needs mknod, which only root may: checked end to end.
        assert!(!images.join("podman-deleted.img").exists());
    }
}
