//! The containers an agent manages, persisted so that a restarted agent knows them.

use std::path::{Path, PathBuf};

use ferry_types::NetSpec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub bundle: PathBuf,
    pub net: Option<NetSpec>,
    /// The group it moved with last (`ferry migrate --group`): a container belongs to one
    /// group at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    pub fn put(&self, rec: &ContainerRecord) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{}.tmp", rec.name));
        std::fs::write(&tmp, serde_json::to_vec_pretty(rec).unwrap_or_default())?;
        std::fs::rename(tmp, self.path(&rec.name))
    }

    pub fn get(&self, name: &str) -> Option<ContainerRecord> {
        let text = std::fs::read(self.path(name)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }

    pub fn all(&self) -> Vec<ContainerRecord> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<ContainerRecord> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

impl Registry {
    /// The containers registered here that belong to `pod`, other than `except`.
    pub fn pod_members(&self, pod: &str, except: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|r| {
                r.name != except && r.net.as_ref().and_then(|n| n.pod.as_deref()) == Some(pod)
            })
            .map(|r| r.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_persist() {
        let d = tempfile::tempdir().unwrap();
        let r = Registry::new(d.path()).unwrap();
        let rec = ContainerRecord {
            name: "redis".into(),
            bundle: "/b".into(),
            net: None,
            group: None,
        };
        r.put(&rec).unwrap();
        assert_eq!(Registry::new(d.path()).unwrap().get("redis"), Some(rec));
        assert_eq!(r.all().len(), 1);
        r.remove("redis");
        assert!(r.all().is_empty());
    }
}
