//! After a crash: outgoing migrations the previous run of the agent left half-way.
//!
//! From the freeze on, the source journals where its migration stands
//! (`out-SESSION/session.json`). A restarted agent reads it back and asks the destination
//! how the session ended. If the destination committed, the source's frozen copy is
//! removed. If the destination did not commit, or dropped the session, the container
//! resumes here. If the destination cannot be reached, it stays frozen: only the
//! destination can tell whether it runs there, and running it twice would be worse.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::{PeerReply, PeerRequest, Role};
use ferry_runtime::Runtime;
use ferry_transport::{connect, ClientHello, Endpoint};
use ferry_types::SessionState;
use serde::{Deserialize, Serialize};

use crate::state::Agent;

/// Where an outgoing migration stands, as journalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutJournal {
    pub container: String,
    pub session: String,
    pub dest: String,
    /// `frozen` (commit not sent) or `commit-sent`.
    pub phase: String,
}

pub const JOURNAL: &str = "session.json";

/// What a restarted source does about one journalled migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The destination runs it: remove the frozen copy here.
    Remove,
    /// The destination does not: resume it here.
    Resume,
    /// Nobody can tell: keep it frozen.
    KeepFrozen,
}

/// The pure rule: what the destination answered (None: unreachable) decides.
pub fn verdict(answer: Option<SessionState>) -> Verdict {
    match answer {
        Some(SessionState::Committed) => Verdict::Remove,
        Some(_) => Verdict::Resume,
        None => Verdict::KeepFrozen,
    }
}

async fn ask_destination(agent: &Agent, j: &OutJournal) -> Option<SessionState> {
    let dest: Endpoint = j.dest.parse().ok()?;
    for _ in 0..10 {
        let hello = ClientHello {
            role: Role::Peer,
            host: agent.cfg.name.clone(),
            session: None,
        };
        if let Ok(mut c) = connect(&dest, hello, &agent.cfg.creds).await {
            let asked = c
                .send(&PeerRequest::Resolve {
                    session: j.session.clone(),
                })
                .await;
            if asked.is_ok() {
                if let Ok(Ok(PeerReply::Resolution { state, .. })) =
                    tokio::time::timeout(Duration::from_secs(5), c.recv_msg::<PeerReply>()).await
                {
                    // A destination still busy with it may be committing right now;
                    // ask again until it has decided.
                    if state != SessionState::Pending {
                        return Some(state);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}

/// Settles one journalled migration.
async fn settle(agent: &Arc<Agent>, dir: &Path, j: OutJournal) {
    let state = ask_destination(agent, &j).await;
    let name = j.container.clone();
    match verdict(state) {
        Verdict::Remove => {
            tracing::warn!(container = %name, "an interrupted migration had committed at {}: removing the frozen copy here", j.dest);
            let freezer = match agent.runc.state(&name).await {
                Ok(s) => ferry_runtime::freezer::Freezer::for_pid(s.pid).ok(),
                Err(_) => None,
            };
            let net = agent
                .registry
                .get(&name)
                .and_then(|r| r.net)
                .and_then(|spec| crate::containers::container_net(agent, &name, &spec).ok());
            for w in super::remove_frozen_copy(agent, &name, freezer.as_ref(), net.as_ref()).await {
                tracing::warn!(container = %name, "{w}");
            }
        }
        Verdict::Resume => {
            tracing::warn!(container = %name, "an interrupted migration did not commit at {}: resuming the container here", j.dest);
            if let Err(e) = super::resume(agent, &name).await {
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

/// Settles every outgoing migration a previous run left, in the background.
pub fn recover(agent: &Arc<Agent>, dir: &Path) {
    let journal = std::fs::read(dir.join(JOURNAL))
        .ok()
        .and_then(|t| serde_json::from_slice::<OutJournal>(&t).ok());
    match journal {
        Some(j) => {
            let (agent, dir) = (agent.clone(), dir.to_path_buf());
            tokio::spawn(async move { settle(&agent, &dir, j).await });
        }
        // Nothing was frozen yet: nothing to settle.
        None => {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_committed_destination_takes_the_container() {
        assert_eq!(verdict(Some(SessionState::Committed)), Verdict::Remove);
        assert_eq!(verdict(Some(SessionState::Dropped)), Verdict::Resume);
        assert_eq!(verdict(Some(SessionState::Pending)), Verdict::Resume);
        assert_eq!(verdict(Some(SessionState::Unknown)), Verdict::Resume);
        assert_eq!(verdict(None), Verdict::KeepFrozen);
    }
}
