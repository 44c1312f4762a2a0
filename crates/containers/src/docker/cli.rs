//! Docker's command line, pointed at this host's daemon (`DOCKER_HOST`), for what it
//! does well: inspecting, saving and loading images, starting from a checkpoint,
//! removing. Creating a container from another host's definition goes through the
//! daemon's API ([`super::api`]), which takes the definition whole.

use std::path::{Path, PathBuf};

use ferry_engine::ports::container::ContainerError;
use serde::Deserialize;

/// How to reach this host's Docker.
#[derive(Debug, Clone)]
pub struct Docker {
    pub program: PathBuf,
    /// The daemon's socket.
    pub socket: PathBuf,
}

/// What `docker container inspect` says of a container, the parts ferry reads (the
/// whole of it travels as the container's definition).
#[derive(Debug, Clone, Deserialize)]
pub struct Inspected {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "State")]
    pub state: State,
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "Config")]
    pub config: Config,
    #[serde(rename = "GraphDriver", default)]
    pub graph_driver: Option<crate::podman::cli::GraphDriver>,
    #[serde(rename = "NetworkSettings", default)]
    pub network: Option<NetworkSettings>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct State {
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Pid", default)]
    pub pid: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(rename = "Image", default)]
    pub image: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkSettings {
    #[serde(rename = "SandboxKey", default)]
    pub sandbox_key: String,
}

impl Inspected {
    /// Its name without Docker's leading slash.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    /// The upper directory of its overlay layer, where what it wrote is.
    pub fn upper_dir(&self) -> Option<PathBuf> {
        self.graph_driver
            .as_ref()
            .filter(|g| g.name.starts_with("overlay"))
            .and_then(|g| g.data.get("UpperDir"))
            .map(PathBuf::from)
    }
}

impl Docker {
    fn env(&self) -> Vec<(String, String)> {
        vec![(
            "DOCKER_HOST".into(),
            format!("unix://{}", self.socket.display()),
        )]
    }

    /// Runs the client to the end; its standard output, or its last line of error.
    pub async fn run(&self, args: &[&str]) -> Result<String, ContainerError> {
        let env = self.env();
        let cli = crate::cli::Cli {
            program: &self.program,
            env: &env,
            label: "docker",
        };
        cli.run(args).await
    }

    /// The same, blocking: for the port's synchronous questions.
    pub fn run_blocking(&self, args: &[&str]) -> Result<String, ContainerError> {
        let env = self.env();
        let cli = crate::cli::Cli {
            program: &self.program,
            env: &env,
            label: "docker",
        };
        cli.run_blocking(args)
    }

    /// Whether the client is installed (nothing run: the daemon may start later).
    pub fn installed(&self) -> bool {
        crate::cli::installed(&self.program)
    }

    /// The whole of what `docker container inspect` says of `name`, if Docker has it
    /// (no daemon listening: it has nothing).
    pub async fn inspect_json(&self, name: &str) -> Result<Option<String>, ContainerError> {
        if !self.socket.exists() {
            return Ok(None);
        }
        match self.run(&["container", "inspect", "--", name]).await {
            Ok(o) => Ok(Some(o)),
            Err(ContainerError::Failed(m)) if m.contains("No such") || m.contains("no such") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Container `name`, if Docker has one: what ferry reads of it, and the whole.
    pub async fn inspect(
        &self,
        name: &str,
    ) -> Result<Option<(Inspected, serde_json::Value)>, ContainerError> {
        let Some(out) = self.inspect_json(name).await? else {
            return Ok(None);
        };
        let unreadable = |e: serde_json::Error| {
            ContainerError::Failed(format!(
                "docker container inspect said something unreadable: {e}"
            ))
        };
        let mut whole: Vec<serde_json::Value> = serde_json::from_str(&out).map_err(unreadable)?;
        let Some(whole) = whole.pop() else {
            return Ok(None);
        };
        let read: Inspected = serde_json::from_value(whole.clone()).map_err(unreadable)?;
        Ok(Some((read, whole)))
    }

    /// Whether a container of this name exists.
    pub async fn exists(&self, name: &str) -> bool {
        self.inspect_json(name).await.is_ok_and(|o| o.is_some())
    }

    /// Where the daemon keeps its state (`--data-root`).
    pub fn root_dir(&self) -> Result<PathBuf, ContainerError> {
        let out = self.run_blocking(&["info", "--format", "{{.DockerRootDir}}"])?;
        let p = PathBuf::from(out.trim());
        match p.is_absolute() {
            true => Ok(p),
            false => Err(ContainerError::Failed(format!(
                "docker info did not name its root directory: {out}"
            ))),
        }
    }

    /// Whether image `name` is here, and is image `id` (hex, with or without `sha256:`).
    pub fn image_is(&self, name: &str, id: &str) -> bool {
        self.run_blocking(&["image", "inspect", "--format", "{{.Id}}", "--", name])
            .is_ok_and(|out| out.trim().trim_start_matches("sha256:") == id)
    }

    /// Names image `id` `name` too; a name that is an id needs none.
    pub fn tag(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        if name.starts_with("sha256:") || name == id {
            return Ok(());
        }
        self.run_blocking(&["image", "tag", &format!("sha256:{id}"), name])
            .map(drop)
    }

    /// Writes image `name` (with its name) into an archive at `to`.
    pub fn save(&self, name: &str, to: &Path) -> Result<(), ContainerError> {
        let to = to.to_string_lossy();
        self.run_blocking(&["image", "save", "-o", &to, name])
            .map(drop)
    }

    /// Loads the images of an archive.
    pub fn load(&self, from: &Path) -> Result<(), ContainerError> {
        let from = from.to_string_lossy();
        self.run_blocking(&["image", "load", "--quiet", "-i", &from])
            .map(drop)
    }

    /// Removes a container, running or not, with what Docker set up for it.
    pub async fn remove(&self, name: &str) -> Result<(), ContainerError> {
        match self.run(&["container", "rm", "--force", "--", name]).await {
            Ok(_) => Ok(()),
            Err(ContainerError::Failed(m)) if m.contains("No such container") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl crate::image::ImageStore for Docker {
    fn engine(&self) -> &'static str {
        "Docker"
    }
    fn load(&self, archive: &Path) -> Result<(), ContainerError> {
        Docker::load(self, archive)
    }
    fn tag(&self, id: &str, name: &str) -> Result<(), ContainerError> {
        Docker::tag(self, id, name)
    }
    fn image_is(&self, name: &str, id: &str) -> bool {
        Docker::image_is(self, name, id)
    }
}
