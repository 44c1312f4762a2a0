//! The standbys an agent keeps of its containers: one task each, a round every period,
//! until stopped or until the container is no longer here.

use std::sync::Arc;
use std::time::Duration;

use ferry_transport::Endpoint;
use ferry_types::standby::{StandbyRound, StandbyStatus};

pub use super::kept::Keeping;
use super::source::{round, Keeper};
use super::StandbyError;
use crate::state::Agent;

/// The shortest period between rounds.
pub const MIN_EVERY_MS: u64 = 1000;

/// Starts keeping a standby of `container` at `dest` every `every_ms`; returns once the
/// first checkpoint is stored there (and keeps nothing if it could not be).
pub async fn start(
    agent: &Arc<Agent>,
    container: &str,
    dest: &str,
    every_ms: u64,
) -> Result<StandbyRound, StandbyError> {
    if every_ms < MIN_EVERY_MS {
        return Err(StandbyError::TooOften(every_ms));
    }
    let endpoint: Endpoint = dest.parse()?;
    if let Some(s) = agent
        .standbys
        .list()
        .into_iter()
        .find(|s| s.container == container)
    {
        return Err(StandbyError::AlreadyKept {
            container: container.to_string(),
            to: s.to,
        });
    }
    let mut keeper = Keeper::new()?;
    let first = round(agent, container, &endpoint, &mut keeper).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let status = StandbyStatus {
        container: container.to_string(),
        to: dest.to_string(),
        every_ms,
        rounds: 1,
        last: Some(first.clone()),
        last_error: None,
    };
    agent.standbys.insert(status, tx);
    tokio::spawn(keep(
        agent.clone(),
        container.to_string(),
        endpoint,
        every_ms,
        keeper,
        rx,
    ));
    tracing::info!(container, dest, every_ms, "keeping a standby");
    Ok(first)
}

/// Stops keeping the standby of `container`.
pub fn stop(agent: &Agent, container: &str) -> Result<(), StandbyError> {
    if agent.standbys.remove(container) {
        Ok(())
    } else {
        Err(StandbyError::NotKept {
            container: container.to_string(),
            host: agent.cfg.name.clone(),
        })
    }
}

async fn keep(
    agent: Arc<Agent>,
    container: String,
    dest: Endpoint,
    every_ms: u64,
    mut keeper: Keeper,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Checkpoints are taken at a fixed rate from the first one, so that the newest is
    // never older than the period plus one round's time; a round longer than the period
    // is followed by the next at once.
    let period = Duration::from_millis(every_ms);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        match round(&agent, &container, &dest, &mut keeper).await {
            Ok(r) => agent.standbys.update(&container, |s| {
                s.rounds += 1;
                s.last = Some(r);
                s.last_error = None;
            }),
            Err(e) if e.container_gone() => {
                tracing::info!(
                    container,
                    "the container is no longer here: its standby ends"
                );
                agent.standbys.remove(&container);
                return;
            }
            Err(e) => {
                tracing::warn!(
                    container,
                    "a standby round failed (the next one tries again): {e}"
                );
                let why = e.to_string();
                agent
                    .standbys
                    .update(&container, |s| s.last_error = Some(why));
            }
        }
    }
}
