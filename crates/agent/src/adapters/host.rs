//! The destination's host port: admission of incoming containers (a session slot, the
//! container's name, its pod), the sessions' states, and the records of containers
//! that arrived.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_engine::dest::session::POD_WAIT;
use ferry_engine::policy::auto::needs_lazy_pages;
use ferry_engine::ports::container::ContainerEngine;
use ferry_engine::ports::host::{Admission, AdmitError, DestHost, PodArrival, PodError};
use ferry_proto::Prepare;
use ferry_types::{HostFacts, NetSpec, SessionState};

use super::pages_dest::AgentSessionPages;
use crate::config::valid_name;
use crate::registry::ContainerRecord;
use crate::state::{Agent, SessionEntry};

/// The agent, as the destination's host.
#[derive(Debug, Clone)]
pub struct AgentHost(pub Arc<Agent>);

/// The pod an incoming container belongs to, once checked: its members must be named,
/// include it, and not already run here (a pod lives on one host at a time).
fn check_pod(agent: &Agent, p: &Prepare) -> Result<Option<String>, AdmitError> {
    let Some(pod) = p.net.pod.clone() else {
        return Ok(None);
    };
    let members = &p.pod_members;
    if !valid_name(&pod, 40) || members.iter().any(|m| !valid_name(m, 40)) || members.len() > 64 {
        return Err(AdmitError::Refused("invalid pod or pod member name".into()));
    }
    let container = &p.container;
    if !members.iter().any(|m| m == container) {
        return Err(AdmitError::Refused(format!(
            "container '{container}' of pod '{pod}' arrives without the list of its pod's members"
        )));
    }
    if let Some(m) = agent.registry.pod_members(&pod, container).first() {
        return Err(AdmitError::Refused(format!(
            "pod '{pod}' already runs on {} (container '{m}'); a pod lives on one host at a time",
            agent.cfg.name
        )));
    }
    Ok(Some(pod))
}

#[async_trait]
impl DestHost for AgentHost {
    async fn admit(&self, p: &Prepare) -> Result<Admission, AdmitError> {
        let agent = &self.0;
        let host = agent.cfg.name.clone();
        if !crate::config::valid_session(&p.session) || !valid_name(&p.container, 40) {
            return Err(AdmitError::InvalidName);
        }
        let lazy = needs_lazy_pages(p.strategy);
        if lazy && !agent.lazy_pages {
            return Err(AdmitError::NoLazyPages { host });
        }
        let permit = agent
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| AdmitError::Busy {
                host: host.clone(),
                max: agent.cfg.max_sessions,
            })?;
        let claim = agent
            .claim(&p.container)
            .map_err(|e| AdmitError::Refused(e.to_string()))?;
        crate::containers::forget_if_gone(agent, &p.container).await;
        let podman_has = match &agent.podman {
            Some(podman) => podman.exists(&p.container).await,
            None => false,
        };
        let docker_has = match &agent.docker {
            Some(docker) => docker.exists(&p.container).await,
            None => false,
        };
        if podman_has
            || docker_has
            || agent.engine.exists(&p.container).await
            || agent.registry.get(&p.container).is_some()
        {
            return Err(AdmitError::Exists {
                name: p.container.clone(),
                host,
            });
        }
        let pod = check_pod(agent, p)?;
        // A pod's namespace is built by its first arriving member; the others join it.
        let setup: Option<Box<dyn Send>> = match &pod {
            Some(_) => Some(Box::new(agent.pod_setup.clone().lock_owned().await)),
            None => None,
        };
        let join = pod.as_deref().is_some_and(|pod| agent.pods.arriving(pod));
        let (pages_tx, pages_rx) = tokio::sync::oneshot::channel();
        let (urgent_tx, urgent_rx) = match lazy {
            true => {
                let (t, r) = tokio::sync::oneshot::channel();
                (Some(t), Some(r))
            }
            false => (None, None),
        };
        // On disk before the source hears that the destination is ready.
        if let Err(e) = agent.outcomes.record(&p.session, SessionState::Pending) {
            return Err(AdmitError::Refused(format!(
                "{} cannot record the session in its state directory: {e}",
                agent.cfg.name
            )));
        }
        if let Ok(mut s) = agent.sessions.lock() {
            s.insert(
                p.session.clone(),
                SessionEntry {
                    container: p.container.clone(),
                    state: SessionState::Pending,
                    pages: Some(pages_tx),
                    urgent: urgent_tx,
                },
            );
        }
        Ok(Admission {
            guard: Box::new((permit, claim)),
            pod: pod.map(|pod| {
                Box::new(AgentPod {
                    agent: agent.clone(),
                    pod,
                    member: p.container.clone(),
                    members: p.pod_members.clone(),
                }) as Box<dyn PodArrival>
            }),
            join,
            setup,
            pages: Box::new(AgentSessionPages {
                criu: agent.cfg.criu.clone(),
                pages: Some(pages_rx),
                urgent: urgent_rx,
                // Only ferry's runc containers restore lazily from a peer's pages.
                cgroup: (p.engine == ferry_types::EngineKind::Runc)
                    .then(|| agent.cfg.runc_settings().cgroups_path(&p.container)),
            }),
        })
    }

    fn set_session(&self, session: &str, state: SessionState) {
        self.0.set_session(session, state);
    }

    fn session_state(&self, session: &str) -> SessionState {
        self.0.session_state(session)
    }

    fn adopt(&self, container: &str, spec: &NetSpec, group: Option<&str>) {
        let rec = ContainerRecord {
            name: container.to_string(),
            bundle: self.0.cfg.bundles_dir().join(container),
            net: Some(spec.clone()),
            group: group.map(str::to_string),
        };
        if let Err(e) = self.0.registry.put(&rec) {
            tracing::error!(%container, "cannot record the container that arrived: {e}");
        }
    }

    fn memory_arriving(&self, container: &str) -> Box<dyn Send> {
        Box::new(self.0.memory_arriving(container))
    }

    fn forget(&self, container: &str) {
        self.0.registry.remove(container);
    }

    fn facts(&self, cpuinfo: Option<&str>, paths: &[String]) -> HostFacts {
        let mut f = self.0.host_facts();
        f.cpu_check = cpuinfo.map(|c| self.0.cpu_check(c));
        f.missing_paths = paths
            .iter()
            .filter(|p| p.starts_with('/') && !std::path::Path::new(p).exists())
            .cloned()
            .collect();
        f
    }
}

/// A pod member arriving here.
#[derive(Debug)]
struct AgentPod {
    agent: Arc<Agent>,
    pod: String,
    member: String,
    members: Vec<String>,
}

#[async_trait]
impl PodArrival for AgentPod {
    fn arrived(&self) {
        self.agent.pods.join(&self.pod);
    }

    fn restored(&self) {
        self.agent.pods.restored(&self.pod, &self.member);
    }

    async fn wait_all(&self) -> Result<(), PodError> {
        self.agent
            .pods
            .wait_all(&self.pod, &self.members, POD_WAIT)
            .await
    }

    fn failed(&self) {
        self.agent.pods.failed(&self.pod, &self.member);
    }

    fn leave(&self) {
        self.agent.pods.leave(&self.pod);
    }
}
