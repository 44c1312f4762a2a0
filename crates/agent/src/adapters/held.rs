//! Copies of what a container's lock drops, kept by a catcher in its namespace and
//! delivered where it runs on (`ferry_netns::held`).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferry_engine::ports::network::{NetworkError, PeerWatch};
use ferry_netns::held::watch::{established, Conn, Watch};
use ferry_netns::held::{packet, Catcher};
use ferry_types::{Delivered, Held, NetSpec, PeerResumed};

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

/// How long a destination watches the restored connections for their peers.
pub const WATCH_FOR: Duration = Duration::from_secs(1);
/// Connections watched at most (the report lists each).
const WATCH_AT_MOST: usize = 256;

/// Starts watching the established connections in `netns`; the peers whose packets
/// `delivered` held count as back at once.
pub async fn watch(netns: &Path, delivered: &Held) -> Option<Box<dyn PeerWatch>> {
    let mut conns = match established(netns).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot list the restored connections: {e}");
            return None;
        }
    };
    conns.truncate(WATCH_AT_MOST);
    if conns.is_empty() {
        return None;
    }
    let came: HashSet<(Ipv4Addr, u16, u16)> = delivered
        .inbound
        .iter()
        .filter_map(|p| packet::parse(&p.0))
        .map(|t| (t.src, t.src_port, t.dst_port))
        .collect();
    let (held, wait): (Vec<Conn>, Vec<Conn>) = conns
        .into_iter()
        .partition(|c| came.contains(&(*c.peer.ip(), c.peer.port(), c.local.port())));
    let watch = if wait.is_empty() {
        None
    } else {
        match Watch::start(netns, wait, WATCH_FOR).await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("cannot watch the restored connections: {e}");
                return None;
            }
        }
    };
    Some(Box::new(AgentWatch { held, watch }))
}

/// The peers that came back through held packets, and the watch over the others.
#[derive(Debug)]
struct AgentWatch {
    held: Vec<Conn>,
    watch: Option<Watch>,
}

fn resumed(c: &Conn, first_packet_ms: Option<f64>, held: bool) -> PeerResumed {
    PeerResumed {
        peer: c.peer.to_string(),
        local_port: c.local.port(),
        first_packet_ms,
        held,
    }
}

#[async_trait]
impl PeerWatch for AgentWatch {
    fn watching(&self) -> u32 {
        (self.held.len() + self.watch.as_ref().map_or(0, Watch::len)) as u32
    }

    async fn finish(self: Box<Self>) -> Vec<PeerResumed> {
        let mut out: Vec<PeerResumed> = self
            .held
            .iter()
            .map(|c| resumed(c, Some(0.0), true))
            .collect();
        if let Some(w) = self.watch {
            for (c, at) in w.finish().await {
                out.push(resumed(&c, at.map(ferry_types::ms), false));
            }
        }
        out
    }
}
