//! Outgoing migrations: the agent's checks before one may start, the ports it builds for
//! it, and resuming a container it keeps frozen.

use std::sync::Arc;
use std::time::Duration;

use ferry_engine::policy::auto::{effective_strategy, pick_auto};
use ferry_engine::ports::container::Subject;
use ferry_engine::source::rollback::{undo, Undo};
use ferry_engine::source::{Events, SourcePorts, SourceRequest};
use ferry_proto::ControlReply;
use ferry_transport::Endpoint;
use ferry_types::{EngineKind, MigrateOptions, Report, Strategy, StrategyChoice};
use tokio::sync::mpsc::UnboundedSender;

use crate::adapters::container::Managed;
use crate::adapters::network::AgentNetwork;
use crate::adapters::pages_source::AgentPages;
use crate::adapters::peer::PeerDialer;
use crate::error::{AgentError, Refusal};
use crate::pod::check_moving_together;
use crate::state::Agent;

/// A migration as the CLI asked for it.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    pub container: String,
    pub dest: Endpoint,
    pub options: MigrateOptions,
}

/// A container belongs to one group at most: the one it last moved with.
pub fn check_group(
    container: &str,
    recorded: Option<&str>,
    asked: Option<&str>,
) -> Result<(), Refusal> {
    match (recorded, asked) {
        (Some(g), Some(h)) if g != h => Err(Refusal::OtherGroup {
            container: container.to_string(),
            recorded: g.to_string(),
            asked: h.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The container, found and checked: runc's, on the network the agent manages, or one
/// this agent did not start (by hand, or by Podman) on the hosts' shared segment.
pub(crate) async fn subject(
    agent: &Arc<Agent>,
    name: &str,
) -> Result<(Managed, AgentNetwork), AgentError> {
    let found = crate::engines::find(agent, name, true).await?;
    let record = agent.registry.get(name).and_then(|r| r.net);
    let Some(spec) = record.filter(|_| found.kind() == EngineKind::Runc) else {
        let net = crate::foreign::network(agent, name, &found.runc).await?;
        let subject = Managed {
            found,
            agent: agent.clone(),
        };
        return Ok((subject, net));
    };
    let net = AgentNetwork::of(agent, name, &spec)?;
    let netns = net.net.netns_path();
    if found.runc.bundle().netns_path().as_deref() != Some(netns.to_string_lossy().as_ref()) {
        return Err(Refusal::OutsideNetns {
            name: name.to_string(),
            netns,
        }
        .into());
    }
    Ok((
        Managed {
            found,
            agent: agent.clone(),
        },
        net,
    ))
}

/// Migrates a container. Bad input is an error (nothing changed); anything else ends in a
/// report whose outcome says where the container runs. With `holds`, the migration waits
/// for the client's word before freezing and before the destination restores
/// ([`ferry_engine::source::Holds`]).
pub async fn migrate(
    agent: Arc<Agent>,
    req: MigrateRequest,
    events: UnboundedSender<ControlReply>,
    holds: ferry_engine::source::Holds,
) -> Result<Report, AgentError> {
    let choice = effective_strategy(&req.options, agent.lazy_pages).map_err(Refusal::from)?;
    // A standby round holding the container ends within seconds: the migration waits
    // for it rather than failing.
    let _claim = agent
        .claim_after_standby(&req.container, Duration::from_secs(60))
        .await?;
    if !agent
        .wait_memory_complete(&req.container, Duration::from_secs(300))
        .await
    {
        return Err(Refusal::StillReceiving(req.container.clone()).into());
    }
    let (subject, network) = subject(&agent, &req.container).await?;
    let recorded = agent.registry.get(&req.container).and_then(|r| r.group);
    check_group(
        &req.container,
        recorded.as_deref(),
        req.options.group.as_deref(),
    )?;
    if let Some(pod) = &network.net.spec.pod {
        let mates = agent.registry.pod_members(pod, &req.container);
        check_moving_together(&req.container, pod, &mates, &req.options.pod)?;
    }
    // The preflight: nothing is frozen before it has said yes. A destination that
    // cannot be asked is not judged here; the migration itself will say why it fails.
    let paths = subject.found.bind_mount_sources(&agent);
    let dest_facts = crate::preflight::probe(&agent, &req.dest, paths).await.ok();
    let pf = crate::preflight::check(&agent, &req.container, &subject.found, dest_facts.as_ref());
    if let Some(r) = crate::preflight::refusal(&req.container, &pf) {
        return Err(r.into());
    }
    let mut options = req.options;
    let mut notes = crate::preflight::notes(&pf);
    if pf.needs_file_locks() {
        options.file_locks = true;
    }
    let strategy = match choice {
        StrategyChoice::Auto => {
            let (s, why) = pick_auto(
                options.allow_postcopy,
                agent.lazy_pages,
                subject.resident_bytes(),
            );
            notes.push(why);
            match fitting(&pf, s) {
                Some(s) => s,
                None => {
                    return Err(Refusal::DoesNotFit {
                        container: req.container,
                        strategy: Strategy::Cold,
                        why: pf
                            .fit(Strategy::Cold)
                            .map(|f| f.why.clone())
                            .unwrap_or_default(),
                    }
                    .into())
                }
            }
        }
        StrategyChoice::Fixed(s) => match pf.fit(s) {
            Some(f) if !f.fits => {
                return Err(Refusal::DoesNotFit {
                    container: req.container,
                    strategy: s,
                    why: f.why.clone(),
                }
                .into())
            }
            _ => s,
        },
    };
    let dialer = PeerDialer {
        dest: req.dest.clone(),
        host: agent.cfg.name.clone(),
        creds: agent.cfg.creds.clone(),
    };
    let ports = SourcePorts {
        subject: Arc::new(subject),
        network: Box::new(network),
        pages: Box::new(AgentPages {
            dialer: dialer.clone(),
        }),
        dialer: Box::new(dialer),
    };
    let request = SourceRequest {
        container: req.container,
        options,
        strategy,
        notes,
    };
    let settings = agent.host_settings();
    Ok(ferry_engine::migration::migrate(ports, &settings, request, Events(events), holds).await?)
}

/// `auto`'s choice, or the first that fits after it (pre-copy, cold); none when neither
/// does (post-copy is never chosen unless allowed).
fn fitting(pf: &ferry_types::Preflight, picked: Strategy) -> Option<Strategy> {
    let order = [picked, Strategy::Precopy, Strategy::Cold];
    order
        .into_iter()
        .find(|&s| pf.fit(s).is_none_or(|f| f.fits))
}

/// Resumes a container this agent keeps frozen after a failed post-copy migration.
pub async fn resume(agent: &Arc<Agent>, name: &str) -> Result<(), AgentError> {
    let _claim = agent.claim(name)?;
    let found = crate::engines::find(agent, name, false).await?;
    let kind = found.kind();
    let subject = found.runc;
    if subject.state().status != "paused" {
        return Err(Refusal::NotFrozen {
            name: name.to_string(),
            status: subject.state().status.clone(),
        }
        .into());
    }
    // A container someone else started: its network is found again where it was.
    let record = agent.registry.get(name).and_then(|r| r.net);
    let net = match record.filter(|_| kind == EngineKind::Runc) {
        Some(spec) => AgentNetwork::of(agent, name, &spec)?,
        None => crate::foreign::network(agent, name, &subject).await?,
    };
    let errors = undo(
        &net,
        &subject,
        &[
            Undo::LinkUp,
            Undo::Unlock,
            Undo::ReleaseSockets,
            Undo::Thaw,
            Undo::Announce,
        ],
    )
    .await;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AgentError::Resume {
            name: name.to_string(),
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_belongs_to_one_group() {
        assert!(check_group("db", None, Some("shop")).is_ok());
        assert!(check_group("db", Some("shop"), Some("shop")).is_ok());
        assert!(check_group("db", Some("shop"), None).is_ok());
        let e = check_group("db", Some("shop"), Some("blog")).unwrap_err();
        assert!(e.to_string().contains("'shop'") && e.to_string().contains("'blog'"));
    }
}
