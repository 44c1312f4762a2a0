//! The engines a container may run under on this host: the agent's runc root (its own
//! containers and any other there), and Podman. A container is looked up by name in
//! that order.

use std::sync::Arc;

use ferry_containers::podman::{PodmanSubject, NO_LAZY};
use ferry_containers::runc::RuncSubject;
use ferry_engine::policy::auto::needs_lazy_pages;
use ferry_engine::ports::container::{ContainerError, Subject};
use ferry_types::{EngineKind, Preflight};

use crate::error::AgentError;
use crate::state::Agent;

/// A container found on this host.
#[derive(Debug)]
pub struct Found {
    /// runc's view of it: processes, bundle, network namespace.
    pub runc: RuncSubject,
    /// Podman's, when Podman runs it.
    pub podman: Option<PodmanSubject>,
}

impl Found {
    pub fn kind(&self) -> EngineKind {
        match self.podman {
            Some(_) => EngineKind::Podman,
            None => EngineKind::Runc,
        }
    }

    /// The engine's own view of it: Podman's, or runc's.
    pub fn subject(&self) -> &dyn Subject {
        match &self.podman {
            Some(p) => p,
            None => &self.runc,
        }
    }

    /// The host paths it bind-mounts that the destination must hold; Podman makes its
    /// own (`/etc/hosts`, `resolv.conf`, `/dev/shm`, …) when it restores.
    pub fn bind_mount_sources(&self) -> Vec<String> {
        let all = self.runc.bundle().bind_mount_sources();
        let Some(p) = &self.podman else { return all };
        let store = p.store();
        all.into_iter()
            .filter(|s| {
                let s = std::path::Path::new(s);
                !s.starts_with(&store.graph_root) && !s.starts_with(&store.run_root)
            })
            .collect()
    }
}

/// Container `name`: running, or (`running` false) in any state runc knows.
pub async fn find(agent: &Arc<Agent>, name: &str, running: bool) -> Result<Found, AgentError> {
    let own = match running {
        true => agent.engine.running(name).await,
        false => agent.engine.open(name).await,
    };
    match (own, &agent.podman) {
        (Ok(runc), _) => Ok(Found { runc, podman: None }),
        (Err(ContainerError::NotFound { .. }), Some(podman)) => {
            match podman.open(name, running).await {
                Ok(p) => Ok(Found {
                    runc: p.runc().clone(),
                    podman: Some(p),
                }),
                Err(ContainerError::NotFound { name, host }) => {
                    Err(not_found(name, host).await.into())
                }
                Err(e) => Err(e.into()),
            }
        }
        (Err(ContainerError::NotFound { name, host }), _) => {
            Err(not_found(name, host).await.into())
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// A container no engine ferry moves has by that name; if Docker has one, the sentence
/// says so.
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
            "container '{name}' on {host} runs under Docker, whose containers ferry does not move yet (docs/engines.md); Podman's and runc's it does"
        )),
        false => ContainerError::NotFound { name, host },
    }
}

/// What an engine adds to the preflight: Podman restores only from complete images.
pub fn limit(pf: &mut Preflight, kind: EngineKind) {
    if kind != EngineKind::Podman {
        return;
    }
    for fit in pf
        .strategies
        .iter_mut()
        .filter(|f| needs_lazy_pages(f.strategy))
    {
        fit.fits = false;
        fit.why = NO_LAZY.to_string();
    }
}
