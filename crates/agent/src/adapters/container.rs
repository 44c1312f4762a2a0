//! The container port: runc (`ferry-containers`), with the agent's own record of each
//! container kept in step.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_engine::ports::container::{ContainerError, DumpPlan, LazyDump, Shipment, Subject};

use crate::engines::Found;
use crate::state::Agent;

/// A container being moved: runc's (or Podman's, when Podman runs it), and the agent's
/// record of it, which goes with it.
#[derive(Debug)]
pub struct Managed {
    pub found: Found,
    pub agent: Arc<Agent>,
}

impl Managed {
    fn engine_subject(&self) -> &dyn Subject {
        self.found.subject()
    }
}

#[async_trait]
impl Subject for Managed {
    fn name(&self) -> &str {
        self.engine_subject().name()
    }
    fn engine(&self) -> ferry_types::EngineKind {
        self.engine_subject().engine()
    }
    fn processes(&self) -> Vec<u32> {
        self.found.runc.processes()
    }
    fn resident_bytes(&self) -> u64 {
        self.found.runc.resident_bytes()
    }
    fn freeze(&self) -> Result<(), ContainerError> {
        self.found.runc.freeze()
    }
    fn thaw(&self) -> Result<(), ContainerError> {
        self.found.runc.thaw()
    }
    fn release_sockets(&self) -> Result<u32, ContainerError> {
        self.found.runc.release_sockets()
    }
    fn kill_frozen(&self) {
        self.found.runc.kill_frozen()
    }
    fn alive(&self) -> Result<(), ContainerError> {
        self.found.runc.alive()
    }
    fn shipment(&self) -> Result<Shipment, ContainerError> {
        self.engine_subject().shipment()
    }
    fn shipped(&self, digest: &str) {
        self.engine_subject().shipped(digest)
    }
    fn shipment_changes(
        &self,
        images: &std::path::Path,
    ) -> Result<ferry_engine::ports::container::ShipmentChanges, ContainerError> {
        self.engine_subject().shipment_changes(images)
    }
    async fn checkpoint(&self, plan: &DumpPlan) -> Result<(), ContainerError> {
        self.found.runc.checkpoint(plan).await
    }
    fn checkpoint_lazy(&self, plan: DumpPlan, page_socket: OwnedFd) -> LazyDump {
        self.found.runc.checkpoint_lazy(plan, page_socket)
    }
    async fn remove(&self) -> Result<(), ContainerError> {
        let r = self.engine_subject().remove().await;
        self.agent.registry.remove(self.name());
        r
    }
}
