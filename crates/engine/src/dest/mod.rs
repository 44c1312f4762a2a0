//! The destination half of a migration: one session per peer connection, driven by the
//! receiver state machine of [`machine`]. What a session receives and how it restores
//! is its strategy's ([`crate::strategies`]).

pub mod arrival;
pub mod machine;
pub mod session;

use std::sync::Arc;

use ferry_proto::PeerReply;
use ferry_types::{EngineKind, NetSpec, SessionState};

use crate::error::IncomingError;
use crate::ports::container::ContainerEngine;
use crate::ports::host::{AdmitError, DestHost, HostSettings};
use crate::ports::network::{ContainerNetwork, Network};
use crate::ports::pages::LazyDaemon;
use crate::ports::peer::{Frame, ToSource};
use machine::{DestAction, DestMachine, Input};
pub use session::{DestSession, InJournal};

/// Everything the destination half touches.
#[derive(Clone)]
pub struct DestPorts {
    /// runc's, for the containers ferry restores as its own.
    pub engine: Arc<dyn ContainerEngine>,
    pub network: Arc<dyn Network>,
    pub host: Arc<dyn DestHost>,
    /// The other engines of this host (Podman, Docker), each with its own network.
    pub others: Vec<EnginePorts>,
}

/// An engine of this host besides runc, and the network its containers get.
#[derive(Clone)]
pub struct EnginePorts {
    pub kind: EngineKind,
    pub engine: Arc<dyn ContainerEngine>,
    pub network: Arc<dyn Network>,
}

impl std::fmt::Debug for EnginePorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnginePorts")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl DestPorts {
    /// The ports that restore a container of `kind`.
    pub fn for_engine(&self, kind: EngineKind) -> Result<DestPorts, AdmitError> {
        if kind == EngineKind::Runc {
            return Ok(self.clone());
        }
        let e = self
            .others
            .iter()
            .find(|e| e.kind == kind)
            .ok_or(AdmitError::NoEngine(kind))?;
        Ok(DestPorts {
            engine: e.engine.clone(),
            network: e.network.clone(),
            host: self.host.clone(),
            others: Vec::new(),
        })
    }
}

impl std::fmt::Debug for DestPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestPorts").finish_non_exhaustive()
    }
}

/// A committed post-copy container, whose last page the source waits for.
pub struct LastPage {
    session: String,
    settings: HostSettings,
    dir: std::path::PathBuf,
    daemon: Box<dyn LazyDaemon>,
    guard: Box<dyn Send>,
    container: String,
    ports: DestPorts,
    net: Box<dyn ContainerNetwork>,
}

impl std::fmt::Debug for LastPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastPage")
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

impl LastPage {
    /// Waits until every page is in place, or the source is lost; returns what to tell
    /// the source. If the source was lost, the container has been stopped: it cannot run
    /// without its memory (its frozen copy on the source is intact).
    pub async fn finish(self) -> PeerReply {
        let LastPage {
            session,
            settings,
            dir,
            daemon,
            guard,
            container,
            ports,
            net,
        } = self;
        let r = daemon.wait().await;
        drop(guard);
        let reply = match r {
            Ok(stats) => {
                ports.host.set_session(&session, SessionState::Committed);
                PeerReply::PostcopyDone { stats }
            }
            Err(e) => {
                // Its copy here is gone: the source's frozen one is the container now.
                ports.host.set_session(&session, SessionState::Dropped);
                let reason = e.to_string();
                tracing::error!(
                    container = %container,
                    "post-copy failed ({reason}): the container lacked memory and was stopped here; its frozen copy on the source is intact"
                );
                let _ = ports.engine.delete(&container).await;
                let _ = net.release().await;
                ports.host.forget(&container);
                PeerReply::PostcopyFailed { reason }
            }
        };
        crate::logs::remove_session_dir(&settings, &session, &dir);
        reply
    }
}

/// Serves one peer connection: one incoming migration, or one question about how a
/// session ended.
pub async fn serve(ports: DestPorts, settings: HostSettings, mut link: Box<ToSource>) {
    let mut machine = DestMachine::new();
    let mut session: Option<DestSession> = None;
    loop {
        let Ok(received) = tokio::time::timeout(settings.idle_timeout, link.recv()).await else {
            let message = format!(
                "{} drops a session whose source said nothing for {:?} (the agent's --session-idle-timeout)",
                settings.name,
                settings.idle_timeout
            );
            tracing::warn!("{message}");
            refuse(&mut *link, &mut session, message).await;
            return;
        };
        let input = match received {
            Ok(Frame::Message(m)) => Input::Message(m),
            Ok(Frame::Data(d)) => Input::Data(d),
            Err(e) => {
                if let Some(s) = session.take() {
                    if machine.drop_on_disconnect() {
                        tracing::warn!(session = %s.id(), "the source went away ({e}); dropping what this session built");
                        s.drop_all().await;
                    }
                }
                return;
            }
        };
        let actions = match machine.on(input) {
            Ok(a) => a,
            Err(e) => {
                // Words from the peer are escaped before they reach the log.
                tracing::warn!(peer = ?link.peer_host(), "protocol error: {}", e.to_string().escape_debug());
                refuse(&mut *link, &mut session, e.to_string()).await;
                return;
            }
        };
        for action in actions {
            let reply = match step(&ports, &settings, &mut machine, &mut session, action).await {
                Ok(r) => r,
                Err(e) => {
                    refuse(
                        &mut *link,
                        &mut session,
                        space_hint(&settings, e.to_string()),
                    )
                    .await;
                    return;
                }
            };
            let Some(reply) = reply else { continue };
            if !answer(&mut *link, &mut machine, &mut session, reply).await {
                return;
            }
        }
    }
}

/// Drops what the session built and tells the source why.
/// A full image space says how big it is and which flag changes that.
fn space_hint(settings: &HostSettings, message: String) -> String {
    if !message.contains("No space left on device") {
        return message;
    }
    format!(
        "{message}; {}'s images live on a tmpfs of at most {} (its agent's --images-size)",
        settings.name, settings.images_size
    )
}

async fn refuse(link: &mut ToSource, session: &mut Option<DestSession>, message: String) {
    if let Some(s) = session.take() {
        s.drop_all().await;
    }
    let _ = link.send(&PeerReply::Error { message }).await;
}

/// Sends a reply; returns whether the conversation goes on.
async fn answer(
    link: &mut ToSource,
    machine: &mut DestMachine,
    session: &mut Option<DestSession>,
    reply: Reply,
) -> bool {
    let (msg, last, peers) = match reply {
        Reply::Now(m) => (m, None, None),
        Reply::Committed(m, last, peers) => (m, last, peers),
    };
    let end = matches!(
        msg,
        PeerReply::Committed { .. } | PeerReply::Aborted | PeerReply::RestoreFailed { .. }
    );
    if let Err(e) = link.send(&msg).await {
        if let Some(s) = session.take() {
            if machine.drop_on_disconnect() {
                tracing::warn!(session = %s.id(), "cannot answer the source ({e}); dropping this session");
                s.drop_all().await;
            }
        }
        return false;
    }
    if end {
        // Post-copy: the connection stays until the last page arrived.
        if let Some(l) = last {
            let _ = link.send(&l.finish().await).await;
        }
        if let Some(p) = peers {
            let peers = p.finish().await;
            let _ = link.send(&PeerReply::PeersResumed { peers }).await;
        }
        return false;
    }
    true
}

/// What a step answers.
enum Reply {
    Now(PeerReply),
    /// `Committed`, post-copy's wait for the last page, and the watch over the peers.
    Committed(PeerReply, Option<LastPage>, Option<session::PeersPending>),
}

fn active(session: &mut Option<DestSession>) -> Result<&mut DestSession, IncomingError> {
    session.as_mut().ok_or(IncomingError::NoSession)
}

/// Performs one action; returns the reply to send, if any.
async fn step(
    ports: &DestPorts,
    settings: &HostSettings,
    machine: &mut DestMachine,
    session: &mut Option<DestSession>,
    action: DestAction,
) -> Result<Option<Reply>, IncomingError> {
    let now = |m| Ok(Some(Reply::Now(m)));
    match action {
        DestAction::Prepare(p) => {
            let (s, need_bundle) = DestSession::prepare(ports, settings, p).await?;
            *session = Some(s);
            machine.prepared(need_bundle);
            now(PeerReply::Prepared { need_bundle })
        }
        DestAction::BeginBundleFile(entry) => {
            active(session)?.begin_bundle_file(&entry)?;
            Ok(None)
        }
        DestAction::Data(d) => {
            active(session)?.write(&d)?;
            Ok(None)
        }
        DestAction::EndFile => {
            active(session)?.end_file()?;
            Ok(None)
        }
        DestAction::StoreBundle => {
            active(session)?.store_bundle()?;
            machine.bundle_stored();
            now(PeerReply::BundleStored)
        }
        DestAction::BeginImage { name, size } => {
            active(session)?.begin_image(&name, size)?;
            Ok(None)
        }
        DestAction::StoreImages { pages_bytes } => {
            active(session)?.store_images(pages_bytes).await?;
            machine.images_stored();
            now(PeerReply::ImagesStored)
        }
        DestAction::Restore => match active(session)?.restore().await {
            Ok(stats) => {
                machine.restored();
                active(session)?.fault_after_restore();
                now(PeerReply::Restored { stats })
            }
            Err(e) => {
                if let Some(s) = session.take() {
                    s.drop_all().await;
                }
                now(PeerReply::RestoreFailed {
                    reason: e.to_string(),
                })
            }
        },
        DestAction::Commit { held } => {
            let s = session.take().ok_or(IncomingError::NoSession)?;
            let c = s.commit(held).await;
            let stats = c.stats;
            Ok(Some(Reply::Committed(
                PeerReply::Committed { stats },
                c.last,
                c.peers,
            )))
        }
        DestAction::Abort { reason } => {
            tracing::info!(reason = ?reason, "the source aborted");
            let mut why = None;
            if let Some(mut s) = session.take() {
                why = s.page_failure().await;
                s.drop_all().await;
            }
            // The source saw a broken page channel: say what broke it here.
            now(match why {
                Some(w) => PeerReply::Error {
                    message: space_hint(settings, format!("the page transfer failed: {w}")),
                },
                None => PeerReply::Aborted,
            })
        }
        DestAction::Probe { cpuinfo, paths } => now(PeerReply::Probed {
            host: ports.host.facts(cpuinfo.as_deref(), &paths),
        }),
        DestAction::Resolve { session: id } => {
            let state = ports.host.session_state(&id);
            now(PeerReply::Resolution { session: id, state })
        }
    }
}

/// Cleans up what an incoming migration that a previous run of the agent left
/// unfinished had built, as its journal says.
pub async fn recover(ports: &DestPorts, journal: &InJournal, adopted: bool) {
    if journal.phase == "committed" || adopted {
        return;
    }
    tracing::warn!(container = %journal.container, "removing what an interrupted incoming migration left");
    let ports = match ports.for_engine(journal.engine) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(container = %journal.container, "cannot remove what an interrupted incoming migration left: {e}");
            return;
        }
    };
    let _ = ports.engine.delete(&journal.container).await;
    destroy_net(&ports, &journal.container, &journal.net).await;
}

async fn destroy_net(ports: &DestPorts, container: &str, spec: &NetSpec) {
    let _ = ports.network.destroy(container, spec).await;
}
