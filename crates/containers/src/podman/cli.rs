//! Podman's command line, with the environment that selects this host's storage
//! (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`, as a lab host sets them).

use std::path::{Path, PathBuf};

use ferry_engine::ports::container::ContainerError;
use serde::Deserialize;

/// How to run Podman on this host.
#[derive(Debug, Clone)]
pub struct Podman {
    pub program: PathBuf,
    /// Variables set for every call (and nothing else changed).
    pub env: Vec<(String, String)>,
}

/// What `podman container inspect` says of a container, the parts ferry reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Inspected {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "State")]
    pub state: InspectedState,
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "ImageName", default)]
    pub image_name: String,
    #[serde(rename = "GraphDriver", default)]
    pub graph_driver: Option<GraphDriver>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InspectedState {
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Pid", default)]
    pub pid: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GraphDriver {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Data", default)]
    pub data: std::collections::HashMap<String, String>,
}

/// Where this host's Podman keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub graph_root: PathBuf,
    pub run_root: PathBuf,
}

impl Store {
    /// Podman's database of containers.
    pub fn database(&self) -> PathBuf {
        self.graph_root.join("libpod/bolt_state.db")
    }
}

impl Podman {
    fn cli(&self) -> crate::cli::Cli<'_> {
        crate::cli::Cli {
            program: &self.program,
            env: &self.env,
            label: "podman",
        }
    }

    /// Runs Podman to the end; its standard output, or its last line of error.
    pub async fn run(&self, args: &[&str]) -> Result<String, ContainerError> {
        self.cli().run(args).await
    }

    /// The same, blocking: for the port's synchronous questions.
    pub fn run_blocking(&self, args: &[&str]) -> Result<String, ContainerError> {
        self.cli().run_blocking(args)
    }

    /// Whether the program is installed (checked without running it, so that an agent
    /// starts without waiting for Podman).
    pub fn installed(&self) -> bool {
        crate::cli::installed(&self.program)
    }

    /// The container named `name`, if Podman has one.
    pub async fn inspect(&self, name: &str) -> Result<Option<Inspected>, ContainerError> {
        let out = match self.run(&["container", "inspect", "--", name]).await {
            Ok(o) => o,
            Err(ContainerError::Failed(m)) if m.contains("no such") => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut all: Vec<Inspected> = serde_json::from_str(&out).map_err(|e| {
            ContainerError::Failed(format!(
                "podman container inspect said something unreadable: {e}"
            ))
        })?;
        Ok(all.pop())
    }

    /// Whether a container of this name exists.
    pub async fn exists(&self, name: &str) -> bool {
        self.run(&["container", "exists", "--", name]).await.is_ok()
    }

    /// The storage's roots.
    pub fn store(&self) -> Result<Store, ContainerError> {
        let out = self.run_blocking(&[
            "info",
            "--format",
            "{{.Store.GraphRoot}}\n{{.Store.RunRoot}}",
        ])?;
        let mut lines = out.lines();
        match (lines.next(), lines.next()) {
            (Some(g), Some(r)) if g.starts_with('/') && r.starts_with('/') => Ok(Store {
                graph_root: PathBuf::from(g.trim()),
                run_root: PathBuf::from(r.trim()),
            }),
            _ => Err(ContainerError::Failed(format!(
                "podman info did not name its storage roots: {out}"
            ))),
        }
    }

    /// Whether image `name` is here, and is image `id`.
    pub fn image_is(&self, name: &str, id: &str) -> bool {
        self.run_blocking(&["image", "inspect", "--format", "{{.Id}}", "--", name])
            .is_ok_and(|out| out.trim() == id)
    }

    /// Names image `id` `name` too.
    pub fn tag(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        self.run_blocking(&["image", "tag", id, name]).map(drop)
    }

    /// Writes image `id` into an archive at `to`.
    pub fn save(&self, id: &str, to: &Path) -> Result<(), ContainerError> {
        let to = to.to_string_lossy();
        let args = [
            "image",
            "save",
            "--quiet",
            "--format",
            "oci-archive",
            "-o",
            &to,
            id,
        ];
        self.run_blocking(&args).map(drop)
    }

    /// Loads the images of an archive.
    pub fn load(&self, from: &Path) -> Result<(), ContainerError> {
        let from = from.to_string_lossy();
        self.run_blocking(&["image", "load", "--quiet", "-i", &from])
            .map(drop)
    }

    /// Removes a container, running or not, with what Podman set up for it.
    pub async fn remove(&self, name: &str) -> Result<(), ContainerError> {
        match self
            .run(&["container", "rm", "--force", "--time", "0", "--", name])
            .await
        {
            Ok(_) => Ok(()),
            Err(ContainerError::Failed(m)) if m.contains("no such container") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
