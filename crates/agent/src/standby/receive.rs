//! The standby host receiving one checkpoint on a [`ferry_proto::Role::Standby`]
//! connection: everything the peer sends is checked before it lands (names, sizes,
//! references), and a checkpoint becomes the newest only once complete.

use std::io::Write;
use std::sync::Arc;

use ferry_engine::ports::container::{ContainerEngine, ShipmentSink};
use ferry_proto::{PeerReply, PeerRequest};
use ferry_transport::{Conn, Incoming as Frame};

use super::store::{Incoming, Meta, Store};
use super::StandbyError;
use crate::state::Agent;

/// Serves one standby connection; a failure is told to the peer in one sentence.
pub async fn serve(agent: Arc<Agent>, mut conn: Conn) {
    if let Err(e) = receive(&agent, &mut conn).await {
        tracing::warn!(peer = %conn.peer_host().escape_debug(), "a standby checkpoint was refused: {e}");
        let _ = conn
            .send(&PeerReply::Error {
                message: e.to_string(),
            })
            .await;
    }
}

async fn data(conn: &mut Conn) -> Result<Vec<u8>, StandbyError> {
    match conn.recv::<PeerRequest>().await? {
        Frame::Data(d) => Ok(d),
        Frame::Message(m) => Err(StandbyError::Protocol(format!(
            "a {} where data was due",
            ferry_proto::WireMessage::name(&m)
        ))),
    }
}

/// Reads `size` bytes of data frames into `out`.
async fn copy(conn: &mut Conn, size: u64, out: &mut impl Write) -> Result<(), StandbyError> {
    let mut left = size;
    while left > 0 {
        let d = data(conn).await?;
        if d.len() as u64 > left {
            return Err(StandbyError::Protocol(
                "a file got more bytes than announced".into(),
            ));
        }
        out.write_all(&d)?;
        left -= d.len() as u64;
    }
    Ok(())
}

async fn receive(agent: &Arc<Agent>, conn: &mut Conn) -> Result<(), StandbyError> {
    let PeerRequest::Standby {
        container,
        net,
        digest,
        known,
    } = conn.recv_msg::<PeerRequest>().await?
    else {
        return Err(StandbyError::Protocol(
            "the first message was not a standby".into(),
        ));
    };
    if !crate::config::valid_name(&container, 40) {
        return Err(crate::Refusal::BadName(container).into());
    }
    if agent.engine.exists(&container).await {
        return Err(StandbyError::RunsHere {
            container,
            host: agent.cfg.name.clone(),
        });
    }
    let _claim = agent.claim(&container)?;
    let store = Store::open(&agent.cfg.state_dir, &container);
    let held = store.latest().map(|(m, _)| m);
    // One host's standby never replaces another's of a container of the same name.
    if let Some(m) = held.as_ref().filter(|m| m.source != conn.peer_host()) {
        return Err(StandbyError::OtherSource {
            container,
            host: agent.cfg.name.clone(),
            from: m.source.clone(),
        });
    }
    let latest = held.map(|m| m.seq);
    let need_bundle = !agent.engine.has_shipment(&container, &digest);
    conn.send(&PeerReply::StandbyReady {
        known: latest,
        need_bundle,
    })
    .await?;
    let netns = crate::adapters::network::container_net(agent, &container, &net)?.netns_path();
    let mut inc = store.begin(known.filter(|k| Some(*k) == latest))?;
    let mut sink: Option<Box<dyn ShipmentSink>> = None;
    let mut budget = agent.cfg.max_bundle_bytes;
    loop {
        match conn.recv_msg::<PeerRequest>().await? {
            PeerRequest::BundleFile { entry } => {
                let s = match sink.as_mut() {
                    Some(s) => s,
                    None => sink.insert(agent.engine.receive(&container, &digest)?),
                };
                budget = budget
                    .checked_sub(entry.size)
                    .ok_or(StandbyError::TooBig(agent.cfg.max_bundle_bytes))?;
                s.begin(&entry)?;
                let mut w = SinkWriter(s.as_mut());
                copy(conn, entry.size, &mut w).await?;
                s.end_file()?;
            }
            PeerRequest::BundleDone => {
                if let Some(s) = sink.take() {
                    s.store(&netns)?;
                }
            }
            PeerRequest::ImageFile { name, size } => {
                budget = budget
                    .checked_sub(size)
                    .ok_or(StandbyError::TooBig(agent.cfg.max_bundle_bytes))?;
                let mut w = inc.create(&name)?;
                copy(conn, size, &mut w).await?;
                w.into_inner().map_err(|e| e.into_error())?.sync_data()?;
                inc.count(size);
            }
            PeerRequest::StandbyPages { name, pages } => {
                budget = budget
                    .checked_sub(pages.saturating_mul(super::pagewire::PAGE as u64))
                    .ok_or(StandbyError::TooBig(agent.cfg.max_bundle_bytes))?;
                receive_pages(conn, &mut inc, &name, pages).await?;
            }
            PeerRequest::StandbyDone { seq, taken_unix_ms } => {
                let meta = Meta {
                    container: container.clone(),
                    seq,
                    source: conn.peer_host().to_string(),
                    taken_unix_ms,
                    bytes: 0,
                    net: net.clone(),
                    digest: digest.clone(),
                };
                return finish(conn, inc, meta, latest).await;
            }
            PeerRequest::Abort { .. } => return Ok(()),
            other => {
                return Err(StandbyError::Protocol(format!(
                    "a {} inside a standby checkpoint",
                    ferry_proto::WireMessage::name(&other)
                )))
            }
        }
    }
}

/// Stores the checkpoint as the newest, and says so.
async fn finish(
    conn: &mut Conn,
    inc: Incoming,
    meta: Meta,
    latest: Option<u64>,
) -> Result<(), StandbyError> {
    let seq = meta.seq;
    if seq <= latest.unwrap_or(0) {
        return Err(StandbyError::Protocol(format!(
            "checkpoint {seq} is not newer than the one held ({})",
            latest.unwrap_or(0)
        )));
    }
    let container = meta.container.clone();
    let bytes = tokio::task::spawn_blocking(move || inc.finish(meta))
        .await
        .map_err(|e| StandbyError::Protocol(e.to_string()))??;
    tracing::info!(container, seq, bytes, "standby checkpoint stored");
    conn.send(&PeerReply::StandbyStored { seq, bytes }).await?;
    Ok(())
}

async fn receive_pages(
    conn: &mut Conn,
    inc: &mut Incoming,
    name: &str,
    pages: u64,
) -> Result<(), StandbyError> {
    let mut f = inc.page_file(name, pages)?;
    while f.written < f.expected {
        let d = data(conn).await?;
        super::pagewire::decode(&d, |h, p| inc.page(&mut f, h, p))?;
    }
    inc.end_pages(f)?;
    Ok(())
}

/// A shipment sink as a writer.
struct SinkWriter<'a>(&'a mut dyn ShipmentSink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write(buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
