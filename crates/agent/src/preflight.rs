//! The preflight: what a container's processes and both hosts allow, found before
//! anything is frozen (`ferry check`, and every `ferry migrate`). The rules are the
//! engine's (`ferry_engine::policy::preflight`); this gathers the facts.

use std::time::Duration;

use ferry_engine::policy::preflight::assess;
use ferry_engine::ports::container::Subject;
use ferry_engine::ports::peer::{Dialer, Frame};
use ferry_proto::{PeerReply, PeerRequest};
use ferry_transport::Endpoint;
use ferry_types::{Action, HostFacts, Preflight};

use crate::adapters::peer::PeerDialer;
use crate::engines::Found;
use crate::error::Refusal;
use crate::state::Agent;

/// How long the destination may take to say what it can take.
const PROBE_WITHIN: Duration = Duration::from_secs(10);

/// Asks the destination what it can take, and which of `paths` (what the container
/// bind-mounts) it lacks.
pub async fn probe(
    agent: &Agent,
    dest: &Endpoint,
    paths: Vec<String>,
) -> Result<HostFacts, Refusal> {
    let unreachable = |why: String| Refusal::Unreachable {
        dest: dest.to_string(),
        why,
    };
    let dialer = PeerDialer {
        dest: dest.clone(),
        host: agent.cfg.name.clone(),
        creds: agent.cfg.creds.clone(),
    };
    let ask = async {
        let mut link = dialer
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        link.send(&PeerRequest::Probe {
            cpuinfo: agent.cpuinfo(),
            paths,
        })
        .await
        .map_err(|e| unreachable(e.to_string()))?;
        match link.recv().await {
            Ok(Frame::Message(PeerReply::Probed { host })) => Ok(host),
            Ok(_) => Err(unreachable("it answered something else".into())),
            Err(e) => Err(unreachable(e.to_string())),
        }
    };
    tokio::time::timeout(PROBE_WITHIN, ask)
        .await
        .map_err(|_| unreachable(format!("no answer within {PROBE_WITHIN:?}")))?
}

/// The preflight of container `name`, towards `dest` when it is known.
pub fn check(agent: &Agent, name: &str, found: &Found, dest: Option<&HostFacts>) -> Preflight {
    let procs = ferry_host::procfs::processes(&found.runc.processes());
    let mut pf = assess(name, procs, &agent.host_facts(), dest);
    crate::engines::limit(&mut pf, found.kind());
    pf
}

/// The refusal a migration ends with, if the preflight found one.
pub fn refusal(name: &str, p: &Preflight) -> Option<Refusal> {
    p.refusal().map(|f| Refusal::Preflight {
        container: name.to_string(),
        subject: f.subject.clone(),
        sentence: f.sentence.clone(),
    })
}

/// What the preflight enabled or noticed, for the report's notes.
pub fn notes(p: &Preflight) -> Vec<String> {
    p.findings
        .iter()
        .filter(|f| f.action != Action::Refuse)
        .map(|f| format!("preflight: {}: {}", f.subject, f.sentence))
        .collect()
}
