//! `ferry failover NAME --on HOST`: the standby host restores the newest complete
//! checkpoint it holds, with the container's address, as a container of its own. Its
//! TCP connections are restored closed: their peers moved on while it kept running at
//! the source, so they reconnect.

use std::sync::Arc;
use std::time::Instant;

use ferry_criu::plan::RestoreSpec;
use ferry_engine::ports::container::{ContainerEngine, RestorePlan};
use ferry_types::standby::{Failover, StandbyCheckpoint};
use ferry_types::{Operation, Outcome, Report};

use super::store::{Meta, Store};
use super::StandbyError;
use crate::registry::ContainerRecord;
use crate::state::Agent;

/// What this host holds of `meta`, now.
pub fn checkpoint_of(meta: &Meta) -> StandbyCheckpoint {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    StandbyCheckpoint {
        container: meta.container.clone(),
        seq: meta.seq,
        source: meta.source.clone(),
        taken_unix_ms: meta.taken_unix_ms,
        age_ms: now.saturating_sub(meta.taken_unix_ms),
        bytes: meta.bytes,
    }
}

/// Restores `container` from its newest standby checkpoint here.
pub async fn failover(agent: &Arc<Agent>, container: &str) -> Result<Failover, StandbyError> {
    if !crate::config::valid_name(container, 40) {
        return Err(crate::Refusal::BadName(container.to_string()).into());
    }
    let _claim = agent.claim(container)?;
    crate::containers::forget_if_gone(agent, container).await;
    if agent.engine.exists(container).await || agent.registry.get(container).is_some() {
        return Err(StandbyError::RunsHere {
            container: container.to_string(),
            host: agent.cfg.name.clone(),
        });
    }
    let store = Store::open(&agent.cfg.state_dir, container);
    let (meta, dir) = store.latest().ok_or_else(|| StandbyError::NoCheckpoint {
        container: container.to_string(),
        host: agent.cfg.name.clone(),
    })?;
    if !agent.engine.has_shipment(container, &meta.digest) {
        return Err(StandbyError::NoBundle(container.to_string()));
    }
    let checkpoint = checkpoint_of(&meta);
    let t = Instant::now();
    // CRIU's image files, from the checkpoint and its pool; the restore changes them
    // (and CRIU writes beside them), and the checkpoint stays as it came.
    let work = agent.cfg.images_dir().join(format!("failover-{container}"));
    let _ = std::fs::remove_dir_all(&work);
    super::store::materialize(&dir, &work)?;
    let net = crate::adapters::network::container_net(agent, container, &meta.net)?;
    net.create().await?;
    net.up().await?;
    let plan = RestorePlan {
        images: work.clone(),
        work: work.clone(),
        criu: RestoreSpec {
            tcp_established: true,
            file_locks: false,
            lazy_pages: false,
            network_lock: ferry_criu::features::host_network_lock(),
            tcp_close: true,
        },
    };
    if let Err(e) = agent.engine.restore(container, &plan).await {
        let _ = net.destroy().await;
        let _ = std::fs::remove_dir_all(&work);
        return Err(StandbyError::Restore(e.to_string()));
    }
    let restore_ms = ferry_types::ms(t.elapsed());
    let _ = net.announce().await;
    agent
        .registry
        .put(&ContainerRecord {
            name: container.to_string(),
            bundle: agent.cfg.bundles_dir().join(container),
            net: Some(meta.net.clone()),
            group: None,
        })
        .map_err(StandbyError::Io)?;
    let mut restore = Report::new(Operation::Restore, container);
    restore.outcome = Outcome::Restored;
    restore.destination = Some(agent.cfg.name.clone());
    restore.total_ms = restore_ms;
    restore.criu.restore = ferry_criu::images::Stats::read(&work.join("stats-restore"))
        .ok()
        .and_then(|s| s.restore);
    restore.notes.push(format!(
        "restored checkpoint {} of {}, taken {:.1} s before; its TCP connections were restored closed",
        meta.seq,
        meta.source,
        checkpoint.age_ms as f64 / 1000.0
    ));
    let _ = std::fs::remove_dir_all(&work);
    // It runs here now: its checkpoints must never start it a second time.
    store.remove();
    tracing::info!(
        container,
        seq = meta.seq,
        age_ms = checkpoint.age_ms,
        "failed over"
    );
    Ok(Failover {
        container: container.to_string(),
        on: agent.cfg.name.clone(),
        checkpoint,
        restore,
    })
}
