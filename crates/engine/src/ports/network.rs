//! The network: a container's address, locked and handed from one host to the other.
//!
//! The source locks the container's network when it freezes it, detaches its link once
//! the dump is over, and releases it once the destination runs it. The destination
//! prepares the container's namespace unreachable and locked, attaches and announces it
//! before the restore (so that no packet waits for an ARP retry), and unlocks it at
//! `Commit`. Every step here undoes itself: a failed migration rolls back by them.
//! While locked, a network may keep copies of what its lock drops; the copies go to
//! wherever the container runs on (the destination at `Commit`, the source after a
//! rollback), so its peers need not wait for their retransmission timers.

use std::path::PathBuf;

use async_trait::async_trait;
use ferry_types::{Delivered, Held, NetSpec, PeerResumed};
use thiserror::Error;

/// A network step failed; the sentence names the command or hook and what it said.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct NetworkError(pub String);

/// One container's network on this host.
#[async_trait]
pub trait ContainerNetwork: Send + Sync {
    /// The identity that travels with the container.
    fn spec(&self) -> &NetSpec;
    /// The namespace the container joins here.
    fn netns_path(&self) -> PathBuf;
    /// Installs ferry's lock: nothing enters or leaves but ARP.
    async fn lock(&self) -> Result<(), NetworkError>;
    async fn unlock(&self) -> Result<(), NetworkError>;
    /// Connects the container's link to this host's network.
    async fn attach(&self) -> Result<(), NetworkError>;
    async fn detach(&self) -> Result<(), NetworkError>;
    /// Tells the network the address lives here now (gratuitous ARP).
    async fn announce(&self) -> Result<(), NetworkError>;
    /// Removes the namespace here (a pod's goes with its last member).
    async fn release(&self) -> Result<(), NetworkError>;
    /// Stops keeping copies of the packets the lock drops, and returns them (a network
    /// that keeps none returns nothing).
    async fn take_held(&self) -> Held {
        Held::default()
    }
    /// Delivers copies of held packets once the container runs here for good, after
    /// `unlock`: its peers' to its sockets, its own onwards.
    async fn deliver(&self, _held: Held) -> Result<Delivered, NetworkError> {
        Ok(Delivered::default())
    }
    /// Right after `deliver`: starts watching the container's established connections for
    /// their peers' first packets (`delivered`'s peers came back already). `None`: this
    /// network cannot watch, or there is nothing to watch.
    async fn watch_peers(&self, _delivered: &Held) -> Option<Box<dyn PeerWatch>> {
        None
    }
}

/// Delivers `held` (if any) through `net` and logs what became of it, `when` naming the
/// moment. Copies only spare peers a retransmission, so a failure is logged, not
/// returned. True if something was delivered.
pub async fn deliver_and_log(net: &dyn ContainerNetwork, held: Held, when: &str) -> bool {
    if held.is_empty() {
        return false;
    }
    match net.deliver(held).await {
        Ok(d) => {
            tracing::info!(
                "delivered held packets {when}: {} from peers, {} of its own, {} refused",
                d.inbound,
                d.outbound,
                d.refused
            );
            true
        }
        Err(e) => {
            tracing::warn!("cannot deliver held packets {when}: {e}");
            false
        }
    }
}

/// A watch over a restored container's connections.
#[async_trait]
pub trait PeerWatch: Send {
    /// The connections watched.
    fn watching(&self) -> u32;
    /// Waits until every peer was heard from, or the watch's end; `first_packet_ms`
    /// counts from the start of the watch.
    async fn finish(self: Box<Self>) -> Vec<PeerResumed>;
}

/// This host's networks, for containers arriving.
#[async_trait]
pub trait Network: Send + Sync {
    /// Builds `container`'s namespace with the identity `spec`, unreachable and locked;
    /// `join` when it joins a pod's namespace another member already built here.
    async fn prepare(
        &self,
        container: &str,
        spec: &NetSpec,
        join: bool,
    ) -> Result<Box<dyn ContainerNetwork>, NetworkError>;
    /// Removes what a previous run of the agent left of `container`'s namespace.
    async fn destroy(&self, container: &str, spec: &NetSpec) -> Result<(), NetworkError>;
}
