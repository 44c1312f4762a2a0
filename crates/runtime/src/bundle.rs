//! OCI bundles: `config.json` plus a root file system.
//!
//! ferry edits only the fields it owns (the network namespace path and annotations) and
//! keeps every other field of `config.json` as it found it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::RuntimeError;

/// The annotation runc reads to find a container's CRIU configuration file.
pub const CRIU_CONFIG_ANNOTATION: &str = "org.criu.config";

/// A bundle directory and its parsed `config.json`.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// Reads `dir/config.json` and checks the fields ferry relies on.
    pub fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let path = dir.join("config.json");
        let text = std::fs::read(&path).map_err(|e| RuntimeError::Bundle {
            path: dir.to_path_buf(),
            detail: format!("cannot read config.json ({e}); is this an OCI bundle directory?"),
        })?;
        let config: Value = serde_json::from_slice(&text).map_err(|e| RuntimeError::Bundle {
            path: dir.to_path_buf(),
            detail: format!("config.json is not valid JSON: {e}"),
        })?;
        let b = Self {
            dir: dir.to_path_buf(),
            config,
        };
        let root = b.rootfs();
        if !root.is_dir() {
            return Err(RuntimeError::Bundle {
                path: dir.to_path_buf(),
                detail: format!("its root file system {} does not exist", root.display()),
            });
        }
        Ok(b)
    }

    pub fn save(&self) -> Result<(), RuntimeError> {
        let path = self.dir.join("config.json");
        let text = serde_json::to_vec_pretty(&self.config).unwrap_or_default();
        std::fs::write(&path, text).map_err(|e| RuntimeError::io(&path, e))
    }

    /// The root file system directory (`root.path`, relative to the bundle).
    pub fn rootfs(&self) -> PathBuf {
        let p = self
            .config
            .pointer("/root/path")
            .and_then(Value::as_str)
            .unwrap_or("rootfs");
        self.dir.join(p)
    }

    fn namespaces_mut(&mut self) -> Option<&mut Vec<Value>> {
        self.config
            .pointer_mut("/linux/namespaces")
            .and_then(Value::as_array_mut)
    }

    /// The path of the network namespace the container joins, if it joins one.
    pub fn netns_path(&self) -> Option<String> {
        self.config
            .pointer("/linux/namespaces")?
            .as_array()?
            .iter()
            .find(|n| n.get("type").and_then(Value::as_str) == Some("network"))?
            .get("path")?
            .as_str()
            .map(str::to_string)
    }

    /// Whether its root file system lies outside its directory (an absolute `root.path`
    /// elsewhere, or one that climbs out).
    pub fn rootfs_outside(&self) -> bool {
        !self.rootfs().starts_with(&self.dir)
    }

    /// Points `root.path` at `path` (relative to the bundle directory).
    pub fn set_root_path(&mut self, path: &str) {
        if let Some(root) = self.config.get_mut("root").and_then(Value::as_object_mut) {
            root.insert("path".into(), Value::String(path.to_string()));
        }
    }

    /// Makes the container join the network namespace at `path`.
    pub fn set_netns_path(&mut self, path: &str) {
        if let Some(list) = self.namespaces_mut() {
            list.retain(|n| n.get("type").and_then(Value::as_str) != Some("network"));
            list.push(json!({"type": "network", "path": path}));
        }
    }

    /// Places the container's cgroups at `path` (relative to each hierarchy's root).
    pub fn set_cgroups_path(&mut self, path: &str) {
        if let Some(linux) = self.config.get_mut("linux").and_then(Value::as_object_mut) {
            linux.insert("cgroupsPath".into(), Value::String(path.to_string()));
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.config.get("annotations")?.get(key)?.as_str()
    }

    pub fn set_annotation(&mut self, key: &str, value: &str) {
        if let Some(obj) = self.config.as_object_mut() {
            let ann = obj.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = ann.as_object_mut() {
                a.insert(key.to_string(), Value::String(value.to_string()));
            }
        }
    }

    /// Destinations of bind mounts: their content comes from the host, not the bundle.
    pub fn bind_mount_destinations(&self) -> Vec<String> {
        let Some(mounts) = self.config.get("mounts").and_then(Value::as_array) else {
            return Vec::new();
        };
        mounts
            .iter()
            .filter(|m| is_bind(m))
            .filter_map(|m| {
                m.get("destination")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    }

    /// The host paths it bind-mounts (sources of bind mounts): they must exist wherever
    /// it runs.
    pub fn bind_mount_sources(&self) -> Vec<String> {
        let Some(mounts) = self.config.get("mounts").and_then(Value::as_array) else {
            return Vec::new();
        };
        mounts
            .iter()
            .filter(|m| is_bind(m))
            .filter_map(|m| m.get("source").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// A digest of what defines the container (everything but the fields that differ
    /// between hosts: the network namespace path and annotations). Two bundles with the
    /// same identity can restore each other's checkpoints.
    pub fn identity_digest(&self) -> String {
        let mut c = self.config.clone();
        if let Some(obj) = c.as_object_mut() {
            obj.remove("annotations");
        }
        if let Some(linux) = c.get_mut("linux").and_then(Value::as_object_mut) {
            linux.remove("cgroupsPath");
        }
        if let Some(list) = c
            .pointer_mut("/linux/namespaces")
            .and_then(Value::as_array_mut)
        {
            for n in list.iter_mut() {
                if let Some(o) = n.as_object_mut() {
                    o.remove("path");
                }
            }
        }
        hex::encode(Sha256::digest(c.to_string().as_bytes()))
    }
}

/// Whether an OCI mount is a bind mount (by its type or its options).
pub(crate) fn is_bind(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("bind")
        || m.get("options").and_then(Value::as_array).is_some_and(|o| {
            o.iter()
                .any(|x| matches!(x.as_str(), Some("bind") | Some("rbind")))
        })
}

/// A container that runs a program of this host, with no image: an empty root file
/// system whose `/usr` and `/etc` are read-only bind mounts of the host's.
#[derive(Debug, Clone, Default)]
pub struct HostProgramSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Network namespace to join (created beforehand), e.g. `/run/netns/ferry-a-redis`.
    pub netns: Option<String>,
    pub hostname: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// Where the container's cgroups go (runc's default is `/<container id>`, which
    /// collides when several hosts share one machine, as in the lab).
    pub cgroups_path: Option<String>,
}

/// Writes a bundle for `spec` into `dir` (created if needed).
pub fn create_host_program_bundle(
    dir: &Path,
    spec: &HostProgramSpec,
) -> Result<Bundle, RuntimeError> {
    let rootfs = dir.join("rootfs");
    for sub in [
        "usr", "etc", "proc", "sys", "dev", "tmp", "run", "var/tmp", "data", "root",
    ] {
        let p = rootfs.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| RuntimeError::io(&p, e))?;
    }
    for (link, target) in [
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
    ] {
        let p = rootfs.join(link);
        if std::fs::symlink_metadata(&p).is_err() {
            std::os::unix::fs::symlink(target, &p).map_err(|e| RuntimeError::io(&p, e))?;
        }
    }
    let mut env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    env.extend(spec.env.iter().cloned());
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    namespaces.push(match &spec.netns {
        Some(p) => json!({"type": "network", "path": p}),
        None => json!({"type": "network"}),
    });
    let config = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": spec.args,
            "env": env,
            "cwd": "/data",
            "capabilities": caps(),
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": spec.hostname.clone().unwrap_or_else(|| "ferry".into()),
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
            {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]}
        ],
        "annotations": spec.annotations,
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    let mut b = Bundle {
        dir: dir.to_path_buf(),
        config,
    };
    if let Some(p) = &spec.cgroups_path {
        b.set_cgroups_path(p);
    }
    b.save()?;
    Ok(b)
}

fn caps() -> Value {
    let set = json!([
        "CAP_AUDIT_WRITE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER"
    ]);
    json!({"bounding": set, "effective": set, "permitted": set})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HostProgramSpec {
        HostProgramSpec {
            args: vec!["/usr/bin/redis-server".into()],
            netns: Some("/run/netns/x".into()),
            ..Default::default()
        }
    }

    #[test]
    fn host_program_bundle_has_an_empty_rootfs_and_host_binds() {
        let d = tempfile::tempdir().unwrap();
        let b = create_host_program_bundle(d.path(), &spec()).unwrap();
        assert!(d.path().join("rootfs/usr").is_dir());
        assert_eq!(
            std::fs::read_link(d.path().join("rootfs/lib")).unwrap(),
            Path::new("usr/lib")
        );
        assert_eq!(
            b.bind_mount_destinations(),
            vec!["/usr".to_string(), "/etc".to_string()]
        );
        let loaded = Bundle::load(d.path()).unwrap();
        assert_eq!(loaded.netns_path().as_deref(), Some("/run/netns/x"));
        assert_eq!(
            loaded.config.pointer("/process/terminal"),
            Some(&json!(false))
        );
    }

    #[test]
    fn identity_ignores_netns_path_and_annotations_but_not_args() {
        let d = tempfile::tempdir().unwrap();
        let mut b = create_host_program_bundle(d.path(), &spec()).unwrap();
        let before = b.identity_digest();
        b.set_netns_path("/run/netns/elsewhere");
        b.set_annotation(CRIU_CONFIG_ANNOTATION, "/x.conf");
        b.set_cgroups_path("/ferry/b/redis");
        assert_eq!(b.identity_digest(), before);
        assert_eq!(b.annotation(CRIU_CONFIG_ANNOTATION), Some("/x.conf"));
        b.config["process"]["args"] = json!(["/bin/sh"]);
        assert_ne!(b.identity_digest(), before);
    }

    #[test]
    fn cgroups_path_is_written_when_asked() {
        let d = tempfile::tempdir().unwrap();
        let mut s = spec();
        s.cgroups_path = Some("/ferry/a/redis".into());
        create_host_program_bundle(d.path(), &s).unwrap();
        let b = Bundle::load(d.path()).unwrap();
        assert_eq!(
            b.config.pointer("/linux/cgroupsPath"),
            Some(&json!("/ferry/a/redis"))
        );
    }

    #[test]
    fn loading_a_non_bundle_says_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let err = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        let err = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(err.contains("root file system"), "{err}");
    }
}
