//! Fakes of the destination's ports: its engine, networks, host and page channels.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_proto::Prepare;
use ferry_types::{FileEntry, NetSpec, PostcopyStats, SessionState};

use super::source::FakeNetwork;
use super::{Config, Step};
use crate::ports::container::{
    ContainerEngine, ContainerError, RestorePlan, ShipmentSink, Subject,
};
use crate::ports::host::{Admission, AdmitError, DestHost};
use crate::ports::network::{ContainerNetwork, Network, NetworkError};
use crate::ports::pages::{HeldPages, LazyDaemon, LocalLazy, PageTask, PagesError, SessionPages};

/// The destination's container engine.
pub struct FakeEngine(pub Arc<Config>);

struct FakeSink(Arc<Config>);

impl ShipmentSink for FakeSink {
    fn begin(&mut self, entry: &FileEntry) -> Result<(), ContainerError> {
        self.0.log(format!("dst bundle file {}", entry.path));
        Ok(())
    }
    fn write(&mut self, _data: &[u8]) -> Result<(), ContainerError> {
        Ok(())
    }
    fn end_file(&mut self) -> Result<(), ContainerError> {
        Ok(())
    }
    fn store(self: Box<Self>, _netns: &Path) -> Result<(), ContainerError> {
        self.0.log("dst bundle stored");
        Ok(())
    }
}

#[async_trait]
impl ContainerEngine for FakeEngine {
    async fn inspect(&self, name: &str) -> Result<Box<dyn Subject>, ContainerError> {
        Err(ContainerError::NotFound {
            name: name.into(),
            host: "dst".into(),
        })
    }
    async fn exists(&self, _name: &str) -> bool {
        false
    }
    fn has_shipment(&self, _name: &str, _digest: &str) -> bool {
        self.0.dest_has_bundle
    }
    fn receive(&self, _name: &str, _digest: &str) -> Result<Box<dyn ShipmentSink>, ContainerError> {
        Ok(Box::new(FakeSink(self.0.clone())))
    }
    async fn restore(&self, _name: &str, plan: &RestorePlan) -> Result<(), ContainerError> {
        self.0
            .log(format!("dst restore lazy={}", plan.criu.lazy_pages));
        self.0.restores.lock().unwrap().push(plan.criu.clone());
        if self.0.fault(Step::Restore) {
            std::fs::write(
                plan.work.join("restore.log"),
                "(00.2) Error (criu/cr-restore.c:1): Unable to map ANON_VMA: Cannot allocate memory\n",
            )
            .unwrap();
            return Err(ContainerError::Failed("criu failed".into()));
        }
        Ok(())
    }
    fn kill(&self, _name: &str) {
        self.0.log("dst kill");
    }
    async fn delete(&self, _name: &str) -> Result<(), ContainerError> {
        self.0.log("dst delete");
        Ok(())
    }
}

/// The destination's networks.
pub struct FakeNetworks(pub Arc<Config>);

#[async_trait]
impl Network for FakeNetworks {
    async fn prepare(
        &self,
        _container: &str,
        _spec: &NetSpec,
        _join: bool,
    ) -> Result<Box<dyn ContainerNetwork>, NetworkError> {
        if self.0.fault(Step::DestNetwork) {
            self.0.log("dst net prepare failed");
            return Err(NetworkError("ip link add: File exists".into()));
        }
        self.0.log("dst net prepare");
        Ok(Box::new(FakeNetwork::new(self.0.clone(), "dst")))
    }
    async fn destroy(&self, _container: &str, _spec: &NetSpec) -> Result<(), NetworkError> {
        self.0.log("dst net destroy");
        Ok(())
    }
}

/// The destination's host: its sessions, its records.
pub struct FakeHost {
    cfg: Arc<Config>,
    sessions: Mutex<HashMap<String, SessionState>>,
}

impl FakeHost {
    pub fn new(cfg: Arc<Config>) -> Self {
        Self {
            cfg,
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl DestHost for FakeHost {
    async fn admit(&self, p: &Prepare) -> Result<Admission, AdmitError> {
        self.cfg.log(format!("dst admit {}", p.strategy));
        if self.cfg.fault(Step::Admit) {
            return Err(AdmitError::Exists {
                name: p.container.clone(),
                host: "dst".into(),
            });
        }
        self.set_session(&p.session, SessionState::Pending);
        Ok(Admission {
            guard: Box::new(()),
            pod: None,
            join: false,
            setup: None,
            pages: Box::new(FakeSessionPages(self.cfg.clone())),
        })
    }
    fn set_session(&self, session: &str, state: SessionState) {
        self.cfg.log(format!("dst session {state:?}"));
        self.sessions
            .lock()
            .unwrap()
            .insert(session.to_string(), state);
    }
    fn session_state(&self, session: &str) -> SessionState {
        self.sessions
            .lock()
            .unwrap()
            .get(session)
            .copied()
            .unwrap_or(SessionState::Unknown)
    }
    fn adopt(&self, _container: &str, _spec: &NetSpec, _group: Option<&str>) {
        self.cfg.log("dst adopt");
    }
    fn memory_arriving(&self, _container: &str) -> Box<dyn Send> {
        Box::new(())
    }
    fn forget(&self, _container: &str) {
        self.cfg.log("dst forget");
    }
    fn facts(&self, _cpuinfo: Option<&str>, _paths: &[String]) -> ferry_types::HostFacts {
        ferry_types::HostFacts {
            name: "dst".into(),
            lazy_pages: self.cfg.lazy_pages,
            ..Default::default()
        }
    }
}

/// One session's page channels at the destination.
struct FakeSessionPages(Arc<Config>);

fn files_task(cfg: Arc<Config>, what: &'static str) -> PageTask<u64> {
    tokio::spawn(async move {
        cfg.log(format!("dst {what}"));
        if cfg.fault(Step::DestPages) {
            return Err(PagesError::NoChannel);
        }
        Ok(cfg.pages_bytes)
    })
}

#[async_trait]
impl SessionPages for FakeSessionPages {
    fn receive_stream(&mut self, _images: &Path) -> PageTask<u64> {
        files_task(self.0.clone(), "page stream")
    }
    fn receive_precopy(&mut self, _images: &Path) -> PageTask<u64> {
        files_task(self.0.clone(), "pre-copy stream")
    }
    fn receive_rounds(&mut self, _images: &Path) -> PageTask<Box<dyn HeldPages>> {
        let cfg = self.0.clone();
        tokio::spawn(async move {
            cfg.log("dst rounds");
            Ok(Box::new(FakeHeld(cfg)) as Box<dyn HeldPages>)
        })
    }
    async fn postcopy(
        &mut self,
        _images: &Path,
        _work: &Path,
        on_loss: Box<dyn FnOnce() + Send>,
    ) -> Result<Box<dyn LazyDaemon>, PagesError> {
        self.0.log("dst daemon");
        Ok(Box::new(FakeDaemon {
            cfg: self.0.clone(),
            on_loss: Mutex::new(Some(on_loss)),
        }))
    }
    async fn lazy_from_images(
        &mut self,
        _images: &Path,
        _work: &Path,
    ) -> Result<Option<Box<dyn LocalLazy>>, PagesError> {
        self.0.log("dst lazy from images");
        Ok(Some(Box::new(FakeLocal(self.0.clone()))))
    }
}

/// What hybrid's rounds left.
struct FakeHeld(Arc<Config>);

#[async_trait]
impl HeldPages for FakeHeld {
    async fn postcopy(
        self: Box<Self>,
        _images: &Path,
        _work: &Path,
        on_loss: Box<dyn FnOnce() + Send>,
    ) -> Result<Box<dyn LazyDaemon>, PagesError> {
        self.0.log("dst daemon with store");
        Ok(Box::new(FakeDaemon {
            cfg: self.0,
            on_loss: Mutex::new(Some(on_loss)),
        }))
    }
}

struct FakeDaemon {
    cfg: Arc<Config>,
    on_loss: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

#[async_trait]
impl LazyDaemon for FakeDaemon {
    fn pages_total(&self) -> u64 {
        10
    }
    fn go(&mut self) {
        self.cfg.log("dst go");
    }
    fn has_failed(&self) -> bool {
        false
    }
    async fn wait(self: Box<Self>) -> Result<PostcopyStats, PagesError> {
        if self.cfg.fault(Step::Daemon) {
            let loss = self.on_loss.lock().unwrap().take();
            if let Some(f) = loss {
                f();
            }
            return Err(PagesError::Failed("the source is gone".into()));
        }
        Ok(PostcopyStats {
            pages_total: 10,
            pages_pushed: 6,
            pages_on_demand: 4,
            faults: 4,
            zero_pages: 0,
        })
    }
    fn abort(self: Box<Self>) {
        self.cfg.log("dst daemon abort");
    }
}

struct FakeLocal(Arc<Config>);

#[async_trait]
impl LocalLazy for FakeLocal {
    async fn wait(self: Box<Self>) -> Result<(), PagesError> {
        self.0.log("dst memory complete");
        Ok(())
    }
    async fn kill(self: Box<Self>) {
        self.0.log("dst lazy killed");
    }
}
