//! After a crash: migrations the previous run of the agent left half-way, settled by
//! their journals (see `ferry_engine::source::journal`).
//!
//! An incoming one that did not commit is removed (its container and namespace), and so
//! is a post-copy one that still owed pages (its keeper stopped the container). An
//! outgoing one is settled with its destination: if the destination committed, the
//! source's frozen copy is removed; if it did not, or dropped the session, the container
//! resumes here; if the destination cannot be reached, it stays frozen, because only
//! the destination can tell whether it runs there, and running it twice would be worse.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::dest::InJournal;
use ferry_engine::ports::container::Subject;
use ferry_engine::ports::network::ContainerNetwork;
use ferry_engine::source::journal::{ask_destination, verdict, OutJournal, Verdict, JOURNAL};
use ferry_transport::Endpoint;
use ferry_types::SessionState;

use crate::adapters::container::Managed;
use crate::adapters::network::AgentNetwork;
use crate::adapters::peer::PeerDialer;
use crate::state::Agent;

fn read_journal<T: serde::de::DeserializeOwned>(dir: &Path) -> Option<T> {
    let text = std::fs::read(dir.join(JOURNAL)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Settles every migration a previous run left; outgoing ones in the background.
pub async fn recover(agent: &Arc<Agent>) {
    let Ok(rd) = std::fs::read_dir(agent.cfg.images_dir()) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if let Some(session) = name.strip_prefix("in-") {
            if let Some(mut j) = read_journal::<InJournal>(&path) {
                // A post-copy that still owed pages when the previous run stopped: its
                // keeper stopped the container, and what is left of it goes.
                let owed = j.phase == "committed"
                    && agent.outcomes.get(session) == Some(SessionState::Dropped);
                if owed {
                    tracing::warn!(container = %j.container, "post-copy was cut by this agent's stop: removing the copy its keeper stopped (the source keeps the container)");
                    agent.registry.remove(&j.container);
                    j.phase = "pages-owed".into();
                }
                let adopted = agent.registry.get(&j.container).is_some();
                ferry_engine::dest::recover(&crate::adapters::dest_ports(agent), &j, adopted).await;
            }
            let _ = std::fs::remove_dir_all(&path);
        } else if name.starts_with("out-") {
            tracing::warn!("an outgoing migration ({name}) was interrupted; asking its destination how it ended");
            match read_journal::<OutJournal>(&path) {
                Some(j) => {
                    let agent = agent.clone();
                    tokio::spawn(async move { settle(&agent, &path, j).await });
                }
                // Nothing was frozen yet: nothing to settle.
                None => {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
    }
}

/// Removes the frozen copy of a container that runs elsewhere now.
async fn remove_frozen_copy(agent: &Arc<Agent>, name: &str) {
    let spec = agent.registry.get(name).and_then(|r| r.net);
    if let Ok(found) = crate::engines::find(agent, name, false).await {
        let subject = Managed {
            found,
            agent: agent.clone(),
        };
        subject.kill_frozen();
        if let Err(e) = subject.remove().await {
            tracing::warn!(container = %name, "removing the source container: {e}");
        }
    }
    agent.registry.remove(name);
    if let Some(net) = spec.and_then(|s| AgentNetwork::of(agent, name, &s).ok()) {
        if let Err(e) = net.release().await {
            tracing::warn!(container = %name, "removing the source network namespace: {e}");
        }
    }
}

/// Settles one journalled outgoing migration.
async fn settle(agent: &Arc<Agent>, dir: &Path, j: OutJournal) {
    let answer = match j.dest.parse::<Endpoint>() {
        Ok(dest) => {
            let dialer = PeerDialer {
                dest,
                host: agent.cfg.name.clone(),
                creds: agent.cfg.creds.clone(),
            };
            ask_destination(
                &dialer,
                &j.session,
                Duration::from_secs(10),
                Duration::from_secs(1),
            )
            .await
        }
        Err(_) => None,
    };
    let name = j.container.clone();
    match verdict(answer) {
        Verdict::Remove => {
            tracing::warn!(container = %name, "an interrupted migration had committed at {}: removing the frozen copy here", j.dest);
            remove_frozen_copy(agent, &name).await;
        }
        Verdict::Resume => {
            tracing::warn!(container = %name, "an interrupted migration did not commit at {}: resuming the container here", j.dest);
            if let Err(e) = crate::migrate::resume(agent, &name).await {
                tracing::error!(container = %name, "resuming after an interrupted migration failed: {e}");
            }
        }
        Verdict::KeepFrozen => {
            tracing::error!(container = %name, "an interrupted migration cannot be settled: {} does not answer; the container stays frozen here until 'ferry resume {name}' (only if it does not run there)", j.dest);
            return;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
