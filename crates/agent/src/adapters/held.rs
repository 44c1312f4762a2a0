//! Copies of what a container's lock drops, kept by a catcher in its namespace and
//! delivered where it runs on (`ferry_netns::held`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_engine::ports::network::NetworkError;
use ferry_netns::held::Catcher;
use ferry_types::{Delivered, Held, NetSpec};

/// The catcher of one container's namespace, while its lock is on.
#[derive(Debug, Clone, Default)]
pub struct Keeper(Arc<Mutex<Option<Catcher>>>);

impl Keeper {
    /// Starts keeping copies in `netns`. Copies only spare peers a retransmission, so a
    /// catcher that cannot start is a warning: the lock itself is in place.
    pub async fn start(&self, netns: PathBuf) {
        let started = tokio::task::spawn_blocking(move || Catcher::start(&netns)).await;
        match started {
            Ok(Ok(c)) => {
                let old = self.0.lock().unwrap_or_else(|e| e.into_inner()).replace(c);
                if let Some(old) = old {
                    drop(tokio::task::spawn_blocking(move || old.finish()));
                }
            }
            Ok(Err(e)) => tracing::warn!("{e}: peers will wait for their retransmissions"),
            Err(e) => tracing::warn!("the packet catcher did not start: {e}"),
        }
    }

    /// Stops keeping copies; returns them.
    pub async fn take(&self) -> Held {
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match c {
            Some(c) => tokio::task::spawn_blocking(move || c.finish())
                .await
                .unwrap_or_default(),
            None => Held::default(),
        }
    }
}

/// Delivers `held` in the namespace at `netns`, whose container has `spec`'s address.
pub async fn deliver(netns: &Path, spec: &NetSpec, held: Held) -> Result<Delivered, NetworkError> {
    let (ip, _) =
        ferry_netns::parse_cidr(&spec.address).map_err(|e| NetworkError(e.to_string()))?;
    ferry_netns::held::deliver(netns, ip, held)
        .await
        .map_err(|e| NetworkError(e.to_string()))
}
