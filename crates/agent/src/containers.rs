//! Containers an agent starts and removes itself (the lab and tests use this).

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_runtime::bundle::{create_host_program_bundle, HostProgramSpec, CRIU_CONFIG_ANNOTATION};
use ferry_runtime::{Runtime, RuntimeError};
use ferry_types::{ContainerInfo, EngineKind, NetSpec};

use crate::adapters::network::release_net;
use crate::config::valid_name;
use crate::error::{AgentError, Refusal};
use crate::registry::ContainerRecord;
use crate::state::Agent;

/// Starts a container running `args` (a program of this host), with its own network.
pub async fn run(
    agent: &Arc<Agent>,
    name: &str,
    args: &[String],
    net: Option<NetSpec>,
) -> Result<ContainerInfo, AgentError> {
    if !valid_name(name, 40) {
        return Err(Refusal::BadName(name.to_string()).into());
    }
    if args.is_empty() {
        return Err(Refusal::NoCommand.into());
    }
    let _claim = agent.claim(name)?;
    if agent.registry.get(name).is_some() || agent.engine.runc().state(name).await.is_ok() {
        return Err(Refusal::Exists {
            name: name.to_string(),
            host: agent.cfg.name.clone(),
        }
        .into());
    }
    // A pod's later members join the namespace (and address) of the first.
    let mut net = net;
    let mut joined = false;
    if let Some(pod) = net.as_ref().and_then(|n| n.pod.clone()) {
        if !valid_name(&pod, 40) {
            return Err(Refusal::BadPodName(pod).into());
        }
        let mates = agent.registry.pod_members(&pod, name);
        if let Some(rec) = mates.first().and_then(|m| agent.registry.get(m)) {
            net = rec.net;
            joined = true;
        }
    }
    let cnet = match &net {
        Some(spec) => {
            let n = crate::adapters::network::container_net(agent, name, spec)?;
            if !joined {
                n.create().await?;
                n.up().await?;
            }
            Some(n)
        }
        None => None,
    };
    let bundle = agent.cfg.bundles_dir().join(name);
    let _ = std::fs::remove_dir_all(&bundle);
    let mut annotations = BTreeMap::new();
    annotations.insert(
        CRIU_CONFIG_ANNOTATION.to_string(),
        agent.engine.settings.criu_conf(name).display().to_string(),
    );
    let spec = HostProgramSpec {
        args: args.to_vec(),
        netns: cnet.as_ref().map(|n| n.netns_path().display().to_string()),
        hostname: Some(name.to_string()),
        annotations,
        cgroups_path: Some(agent.engine.settings.cgroups_path(name)),
        ..Default::default()
    };
    let started = async {
        create_host_program_bundle(&bundle, &spec)?;
        agent.engine.runc().run_detached(name, &bundle).await
    }
    .await;
    if let Err(e) = started {
        if let Some(n) = cnet.as_ref().filter(|_| !joined) {
            let _ = n.destroy().await;
        }
        let _ = std::fs::remove_dir_all(&bundle);
        return Err(e.into());
    }
    if let Some(n) = &cnet {
        let _ = n.announce().await;
    }
    agent
        .registry
        .put(&ContainerRecord {
            name: name.to_string(),
            bundle: bundle.clone(),
            net: net.clone(),
            group: None,
        })
        .map_err(|e| AgentError::io("saving the container record", e))?;
    info(agent, name).await
}

/// Forgets the record of `name` when runc has no such container any more (it died with
/// a crash or a reboot of this host): the record alone would keep the name taken. The
/// caller holds the container's claim. Whether a record was forgotten.
pub async fn forget_if_gone(agent: &Agent, name: &str) -> bool {
    let Some(rec) = agent.registry.get(name) else {
        return false;
    };
    if agent.engine.runc().state(name).await.is_ok() {
        return false;
    }
    tracing::warn!(
        container = name,
        bundle = %rec.bundle.display(),
        "runc has no container of this record any more (it died with this host): the record is forgotten"
    );
    agent.registry.remove(name);
    let _ = std::fs::remove_file(agent.engine.settings.criu_conf(name));
    true
}

/// What the agent knows of one container.
pub async fn info(agent: &Agent, name: &str) -> Result<ContainerInfo, AgentError> {
    let rec = agent.registry.get(name);
    match agent.engine.runc().state(name).await {
        Ok(s) => Ok(ContainerInfo {
            name: name.to_string(),
            // A standby round's freeze is ferry's, for a moment: the container runs.
            status: if s.status == "paused" && agent.standbys.frozen_for_round(name) {
                "running".to_string()
            } else {
                s.status
            },
            pid: Some(s.pid),
            bundle: s.bundle.display().to_string(),
            net: rec.and_then(|r| r.net),
            engine: EngineKind::Runc,
        }),
        Err(RuntimeError::NotFound { .. }) | Err(RuntimeError::RootMissing(_)) => match rec {
            Some(r) => Ok(ContainerInfo {
                name: name.to_string(),
                status: "stopped".into(),
                pid: None,
                bundle: r.bundle.display().to_string(),
                net: r.net,
                engine: EngineKind::Runc,
            }),
            None => Err(Refusal::Unknown {
                name: name.to_string(),
                host: agent.cfg.name.clone(),
            }
            .into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// All containers: those this agent registered, and any other in its runtime root.
pub async fn list(agent: &Agent) -> Vec<ContainerInfo> {
    let mut names: Vec<String> = agent.registry.all().into_iter().map(|r| r.name).collect();
    if let Ok(states) = agent.engine.runc().list().await {
        for s in states {
            if !names.contains(&s.id) {
                names.push(s.id);
            }
        }
    }
    names.sort();
    let mut out = Vec::new();
    for n in names {
        if let Ok(i) = info(agent, &n).await {
            out.push(i);
        }
    }
    if let Some(p) = &agent.podman {
        out.extend(podman_list(p.podman()).await);
    }
    if let Some(d) = &agent.docker {
        out.extend(docker_list(d.docker()).await);
    }
    out
}

/// The containers Docker runs here, as `docker ps --all` lists them.
async fn docker_list(docker: &ferry_containers::docker::Docker) -> Vec<ContainerInfo> {
    let Ok(out) = docker
        .run(&["ps", "--all", "--format", "{{.Names}}\t{{.State}}"])
        .await
    else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(name, state)| ContainerInfo {
            name: name.to_string(),
            pid: None,
            status: state.to_string(),
            bundle: String::new(),
            net: None,
            engine: EngineKind::Docker,
        })
        .collect()
}

/// The containers Podman runs here, as `podman ps --all` lists them.
async fn podman_list(podman: &ferry_containers::podman::Podman) -> Vec<ContainerInfo> {
    #[derive(serde::Deserialize)]
    struct Listed {
        #[serde(rename = "Names", default)]
        names: Vec<String>,
        #[serde(rename = "State", default)]
        state: String,
        #[serde(rename = "Pid", default)]
        pid: u32,
    }
    let Ok(out) = podman.run(&["ps", "--all", "--format", "json"]).await else {
        return Vec::new();
    };
    let listed: Vec<Listed> = serde_json::from_str(&out).unwrap_or_default();
    listed
        .into_iter()
        .filter_map(|l| {
            Some(ContainerInfo {
                name: l.names.into_iter().next()?,
                pid: (l.pid > 0).then_some(l.pid),
                status: l.state,
                bundle: String::new(),
                net: None,
                engine: EngineKind::Podman,
            })
        })
        .collect()
}

/// Stops and deletes a container and everything the agent made for it.
pub async fn remove(agent: &Arc<Agent>, name: &str) -> Result<(), AgentError> {
    let _claim = agent.claim(name)?;
    let rec = agent.registry.get(name);
    let exists = agent.engine.runc().state(name).await.is_ok();
    if rec.is_none() && !exists {
        return Err(Refusal::Unknown {
            name: name.to_string(),
            host: agent.cfg.name.clone(),
        }
        .into());
    }
    if exists {
        agent.engine.runc().delete(name, true).await?;
    }
    if let Some(r) = &rec {
        if let Some(spec) = &r.net {
            release_net(
                agent,
                &crate::adapters::network::container_net(agent, name, spec)?,
            )
            .await?;
        }
        let _ = std::fs::remove_dir_all(&r.bundle);
    }
    let _ = std::fs::remove_file(agent.engine.settings.criu_conf(name));
    agent.registry.remove(name);
    Ok(())
}
