//! The destination side of a migration: one session per peer connection, driven by the
//! receiver state machine of [`ferry_engine::dest`].

mod postcopy;
mod session;

use std::sync::Arc;

use ferry_engine::dest::{DestAction, DestMachine, Input};
use ferry_proto::{PeerReply, PeerRequest};
use ferry_transport::{Conn, Incoming};

pub use postcopy::{PostcopyRun, PostcopyWait};
pub use session::{recover, DestSession};

use crate::state::Agent;

pub use ferry_types::DestStats;

/// Serves one peer connection.
pub async fn serve(agent: Arc<Agent>, mut conn: Conn) {
    let mut machine = DestMachine::new();
    let mut session: Option<DestSession> = None;
    let mut postcopy: Option<PostcopyWait> = None;
    loop {
        let input = match conn.recv::<PeerRequest>().await {
            Ok(Incoming::Message(m)) => Input::Message(m),
            Ok(Incoming::Data(d)) => Input::Data(d),
            Err(e) => {
                if let Some(s) = session.take() {
                    if machine.drop_on_disconnect() {
                        tracing::warn!(session = %s.id, "the source went away ({e}); dropping what this session built");
                        s.drop_all().await;
                    }
                }
                return;
            }
        };
        let actions = match machine.on(input) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("protocol error from {}: {e}", conn.peer_host());
                let _ = conn
                    .send(&PeerReply::Error {
                        message: e.to_string(),
                    })
                    .await;
                if let Some(s) = session.take() {
                    s.drop_all().await;
                }
                return;
            }
        };
        for action in actions {
            let reply = match step(&agent, &mut machine, &mut session, &mut postcopy, action).await
            {
                Ok(r) => r,
                Err(message) => {
                    if let Some(s) = session.take() {
                        s.drop_all().await;
                    }
                    let _ = conn.send(&PeerReply::Error { message }).await;
                    return;
                }
            };
            if let Some(r) = reply {
                let end = matches!(
                    r,
                    PeerReply::Committed { .. }
                        | PeerReply::Aborted
                        | PeerReply::RestoreFailed { .. }
                );
                if let Err(e) = conn.send(&r).await {
                    if let Some(s) = session.take() {
                        if machine.drop_on_disconnect() {
                            tracing::warn!(session = %s.id, "cannot answer the source ({e}); dropping this session");
                            s.drop_all().await;
                        }
                    }
                    return;
                }
                if end {
                    // Post-copy: the connection stays until the last page arrived.
                    if let Some(w) = postcopy.take() {
                        let _ = conn.send(&w.finish().await).await;
                    }
                    return;
                }
            }
        }
    }
}

fn active(session: &mut Option<DestSession>) -> Result<&mut DestSession, String> {
    session.as_mut().ok_or_else(|| "no session".to_string())
}

/// Performs one action; returns the reply to send, if any.
async fn step(
    agent: &Arc<Agent>,
    machine: &mut DestMachine,
    session: &mut Option<DestSession>,
    postcopy: &mut Option<PostcopyWait>,
    action: DestAction,
) -> Result<Option<PeerReply>, String> {
    Ok(match action {
        DestAction::Prepare(msg) => {
            let (s, need_bundle) = DestSession::prepare(agent, msg)
                .await
                .map_err(|e| e.to_string())?;
            *session = Some(s);
            machine.prepared(need_bundle);
            Some(PeerReply::Prepared { need_bundle })
        }
        DestAction::BeginBundleFile(entry) => {
            active(session)?
                .begin_bundle_file(&entry)
                .map_err(|e| e.to_string())?;
            None
        }
        DestAction::Data(d) => {
            active(session)?.write(&d).map_err(|e| e.to_string())?;
            None
        }
        DestAction::EndFile => {
            active(session)?.end_file().map_err(|e| e.to_string())?;
            None
        }
        DestAction::StoreBundle => {
            active(session)?.store_bundle().map_err(|e| e.to_string())?;
            machine.bundle_stored();
            Some(PeerReply::BundleStored)
        }
        DestAction::BeginImage { name, size } => {
            active(session)?
                .begin_image(&name, size)
                .map_err(|e| e.to_string())?;
            None
        }
        DestAction::StoreImages { pages_bytes } => {
            active(session)?
                .store_images(pages_bytes)
                .await
                .map_err(|e| e.to_string())?;
            machine.images_stored();
            Some(PeerReply::ImagesStored)
        }
        DestAction::Restore => match active(session)?.restore().await {
            Ok(stats) => {
                machine.restored();
                active(session)?.fault_after_restore();
                Some(PeerReply::Restored { stats })
            }
            Err(reason) => {
                if let Some(s) = session.take() {
                    s.drop_all().await;
                }
                Some(PeerReply::RestoreFailed { reason })
            }
        },
        DestAction::Commit => {
            let s = session.take().ok_or("no session")?;
            let (stats, wait) = s.commit().await;
            *postcopy = wait;
            Some(PeerReply::Committed { stats })
        }
        DestAction::Abort { reason } => {
            tracing::info!("the source aborted: {reason}");
            if let Some(s) = session.take() {
                s.drop_all().await;
            }
            Some(PeerReply::Aborted)
        }
        DestAction::Resolve { session: id } => {
            let state = agent.session_state(&id);
            Some(PeerReply::Resolution { session: id, state })
        }
    })
}
