//! The engines a container may run under on this host: the agent's runc root (its own
//! containers and any other there), Podman and Docker. A container is looked up by name
//! in that order.

use std::sync::Arc;

use ferry_containers::docker::DockerSubject;
use ferry_containers::podman::PodmanSubject;
use ferry_containers::runc::RuncSubject;
use ferry_engine::policy::auto::needs_lazy_pages;
use ferry_engine::ports::container::{ContainerError, Subject};
use ferry_types::{EngineKind, Preflight};

use crate::error::AgentError;
use crate::state::Agent;

/// The engine's own view of a container found on this host, beside runc's.
#[derive(Debug)]
pub enum Owner {
    /// runc's alone: the agent's own, or one started by hand.
    Runc,
    Podman(PodmanSubject),
    Docker(DockerSubject),
}

/// A container found on this host.
#[derive(Debug)]
pub struct Found {
    /// runc's view of it: processes, bundle, network namespace.
    pub runc: RuncSubject,
    /// The engine that runs it.
    pub owner: Owner,
}

impl Found {
    pub fn kind(&self) -> EngineKind {
        match self.owner {
            Owner::Runc => EngineKind::Runc,
            Owner::Podman(_) => EngineKind::Podman,
            Owner::Docker(_) => EngineKind::Docker,
        }
    }

    /// The engine's own view of it.
    pub fn subject(&self) -> &dyn Subject {
        match &self.owner {
            Owner::Runc => &self.runc,
            Owner::Podman(p) => p,
            Owner::Docker(d) => d,
        }
    }

    /// The host paths it bind-mounts that the destination must hold; an engine makes
    /// its own (`/etc/hosts`, `resolv.conf`, `/dev/shm`, …) when it restores.
    pub fn bind_mount_sources(&self, agent: &Agent) -> Vec<String> {
        let all = self.runc.bundle().bind_mount_sources();
        let own: Vec<std::path::PathBuf> = match &self.owner {
            Owner::Runc => return all,
            Owner::Podman(p) => vec![p.store().graph_root.clone(), p.store().run_root.clone()],
            Owner::Docker(_) => agent
                .docker
                .iter()
                .filter_map(|d| d.root_dir().ok())
                .map(|r| r.join("containers"))
                .collect(),
        };
        all.into_iter()
            .filter(|s| !own.iter().any(|o| std::path::Path::new(s).starts_with(o)))
            .collect()
    }
}

/// Container `name`: running, or (`running` false) in any state runc knows.
pub async fn find(agent: &Arc<Agent>, name: &str, running: bool) -> Result<Found, AgentError> {
    let own = match running {
        true => agent.engine.running(name).await,
        false => agent.engine.open(name).await,
    };
    let host = match own {
        Ok(runc) => {
            return Ok(Found {
                runc,
                owner: Owner::Runc,
            })
        }
        Err(ContainerError::NotFound { host, .. }) => host,
        Err(e) => return Err(e.into()),
    };
    if let Some(podman) = &agent.podman {
        match podman.open(name, running).await {
            Ok(p) => {
                return Ok(Found {
                    runc: p.runc().clone(),
                    owner: Owner::Podman(p),
                })
            }
            Err(ContainerError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(docker) = &agent.docker {
        return match docker.open(name, running).await {
            Ok(d) => Ok(Found {
                runc: d.runc().clone(),
                owner: Owner::Docker(d),
            }),
            Err(e) => Err(e.into()),
        };
    }
    Err(not_found(name.to_string(), host).await.into())
}

/// A container no engine this agent uses has by that name; if Docker has one (this
/// agent was told not to use Docker, or found no daemon), the sentence says so.
async fn not_found(name: String, host: String) -> ContainerError {
    let docker_has = tokio::process::Command::new("docker")
        .args(["container", "inspect", "--format", "{{.Id}}", "--", &name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    match docker_has {
        true => ContainerError::Refused(format!(
            "container '{name}' on {host} runs under Docker, which this host's agent does not use (it found no Docker daemon at its --docker-socket, or was started with --docker none)"
        )),
        false => ContainerError::NotFound { name, host },
    }
}

/// What an engine adds to the preflight: Podman and Docker restore only from complete
/// images.
pub fn limit(pf: &mut Preflight, kind: EngineKind) {
    let why = match kind {
        EngineKind::Runc => return,
        EngineKind::Podman => ferry_containers::podman::NO_LAZY,
        EngineKind::Docker => ferry_containers::docker::NO_LAZY,
    };
    for fit in pf
        .strategies
        .iter_mut()
        .filter(|f| needs_lazy_pages(f.strategy))
    {
        fit.fits = false;
        fit.why = why.to_string();
    }
}
