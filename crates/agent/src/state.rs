//! What an agent holds while it runs: its configuration, its container engine, the
//! containers it manages, the sessions it takes part in, and the claims that keep two
//! operations off one container.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferry_containers::docker::DockerEngine;
use ferry_containers::podman::PodmanEngine;
use ferry_containers::RuncEngine;
use ferry_criu::bound::MemoryBound;
use ferry_engine::ports::host::HostSettings;
use ferry_transport::Stream;
use ferry_types::SessionState;

use crate::outcomes::Outcomes;
use tokio::sync::{oneshot, Semaphore};

use crate::config::AgentConfig;
pub use crate::error::Busy;
use crate::pod::PodArrivals;
use crate::registry::Registry;

/// What the agent found this host can do when it started.
#[derive(Debug, Default)]
pub struct Abilities {
    /// Lazy restores work here (userfaultfd, big enough pipes).
    pub lazy_pages: bool,
    /// The CRIU found, if it is new enough.
    pub criu_version: Option<String>,
    /// The memory bound CRIU runs in.
    pub bound: Option<Arc<MemoryBound>>,
}

/// A migration session this agent receives.
#[derive(Debug)]
pub struct SessionEntry {
    pub container: String,
    pub state: SessionState,
    /// Where the page channel goes when it arrives.
    pub pages: Option<oneshot::Sender<Stream>>,
    /// Where post-copy's urgent page channel goes when it arrives.
    pub urgent: Option<oneshot::Sender<Stream>>,
}

#[derive(Debug)]
pub struct Agent {
    pub cfg: AgentConfig,
    pub engine: Arc<RuncEngine>,
    /// Podman, when this host has it.
    pub podman: Option<Arc<PodmanEngine>>,
    /// Docker, when this host has it.
    pub docker: Option<Arc<DockerEngine>>,
    pub registry: Registry,
    /// Whether lazy restores work here (userfaultfd).
    pub lazy_pages: bool,
    /// The CRIU this agent runs, if it is new enough.
    pub criu_version: Option<String>,
    /// The memory bound CRIU runs in, if there is one.
    pub bound: Option<Arc<MemoryBound>>,
    pub sessions: Mutex<HashMap<String, SessionEntry>>,
    /// How incoming sessions ended, on disk.
    pub outcomes: Outcomes,
    busy: Mutex<HashSet<String>>,
    pub slots: Arc<Semaphore>,
    /// Containers whose memory is still being filled in by a lazy restore; each is set
    /// to true when the daemon finished.
    memory: Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>,
    /// Pods whose members are arriving.
    pub pods: PodArrivals,
    /// Held while a pod's namespace is found or built at the destination.
    pub pod_setup: Arc<tokio::sync::Mutex<()>>,
    /// This CPU's description (CRIU's `cpuinfo.img`, hex), made on first use.
    cpuinfo: std::sync::OnceLock<Option<String>>,
    /// CRIU's verdicts on source CPUs, by their description.
    cpu_checks: Mutex<HashMap<String, String>>,
    /// The standbys kept of this host's containers elsewhere.
    pub standbys: crate::standby::kept::Keeping,
}

/// Holds a container for one operation; released when dropped.
#[derive(Debug)]
pub struct Claim {
    agent: Arc<Agent>,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut b) = self.agent.busy.lock() {
            b.remove(&self.name);
        }
    }
}

/// Marks a container's memory complete when dropped.
#[derive(Debug)]
pub struct MemoryArriving {
    agent: Arc<Agent>,
    container: String,
    done: tokio::sync::watch::Sender<bool>,
}

impl Drop for MemoryArriving {
    fn drop(&mut self) {
        if let Ok(mut l) = self.agent.memory.lock() {
            l.remove(&self.container);
        }
        let _ = self.done.send(true);
    }
}

impl Agent {
    pub fn new(cfg: AgentConfig, registry: Registry, outcomes: Outcomes, can: Abilities) -> Self {
        let mut settings = cfg.runc_settings();
        settings.runc.bound = can.bound.clone();
        let engine = Arc::new(RuncEngine::new(settings));
        let podman = cfg.podman_settings().and_then(|mut p| {
            p.runc.bound = can.bound.clone();
            let e = PodmanEngine::new(p);
            e.podman().installed().then(|| Arc::new(e))
        });
        let docker = cfg.docker_settings().and_then(|mut d| {
            d.runc.bound = can.bound.clone();
            let e = DockerEngine::new(d);
            e.docker().installed().then(|| Arc::new(e))
        });
        let slots = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
        Self {
            cfg,
            engine,
            podman,
            docker,
            registry,
            lazy_pages: can.lazy_pages,
            criu_version: can.criu_version,
            bound: can.bound,
            sessions: Mutex::new(HashMap::new()),
            outcomes,
            busy: Mutex::new(HashSet::new()),
            slots,
            memory: Mutex::new(HashMap::new()),
            pods: PodArrivals::default(),
            pod_setup: Arc::new(tokio::sync::Mutex::new(())),
            standbys: crate::standby::kept::Keeping::default(),
            cpuinfo: std::sync::OnceLock::new(),
            cpu_checks: Mutex::new(HashMap::new()),
        }
    }

    /// What this host can take, as the preflight asks.
    pub fn host_facts(&self) -> ferry_types::HostFacts {
        ferry_host::procfs::host(&self.cfg.name, self.criu_version.clone(), self.lazy_pages)
    }

    /// This CPU's description for a destination to check (CRIU's `cpuinfo.img`, hex),
    /// made once.
    pub fn cpuinfo(&self) -> Option<String> {
        self.cpuinfo
            .get_or_init(|| {
                let dir = self.cfg.state_dir.join("cpuinfo");
                match ferry_criu::cpuinfo::dump(&self.cfg.criu, &dir) {
                    Ok(img) => Some(hex::encode(img)),
                    Err(e) => {
                        tracing::warn!("cannot describe this CPU for the preflight: {e}");
                        None
                    }
                }
            })
            .clone()
    }

    /// CRIU's check of the source CPU `hex` against this one: "" when compatible, else
    /// why not. One check per source CPU, remembered (concurrent probes wait for it).
    pub fn cpu_check(&self, hex: &str) -> String {
        if hex.len() > 128 << 10 {
            return "the source's CPU description is too large".into();
        }
        let Ok(img) = hex::decode(hex) else {
            return "the source's CPU description is not hex".into();
        };
        let Ok(mut known) = self.cpu_checks.lock() else {
            return "the CPU check is unavailable".into();
        };
        if let Some(r) = known.get(hex) {
            return r.clone();
        }
        let dir = self.cfg.state_dir.join("cpuinfo-check");
        let r = match ferry_criu::cpuinfo::check(&self.cfg.criu, &dir, &img) {
            Ok(()) => String::new(),
            Err(why) => why,
        };
        if known.len() < 64 {
            known.insert(hex.to_string(), r.clone());
        }
        r
    }

    /// What the engine's drivers need to know of this host.
    pub fn host_settings(&self) -> HostSettings {
        HostSettings {
            name: self.cfg.name.clone(),
            images_dir: self.cfg.images_dir(),
            logs_dir: self.cfg.state_dir.join("logs"),
            keep_logs: self.cfg.keep_logs,
            allow_fault_injection: self.cfg.allow_fault_injection,
            lazy_pages: self.lazy_pages,
            resolve_for: ferry_engine::source::RESOLVE_FOR,
            idle_timeout: std::time::Duration::from_secs(self.cfg.session_idle_timeout),
            images_size: self.cfg.images_size.clone(),
        }
    }

    /// Records that `container`'s memory is still arriving, until the guard is dropped.
    pub fn memory_arriving(self: &Arc<Self>, container: &str) -> MemoryArriving {
        let (tx, rx) = tokio::sync::watch::channel(false);
        if let Ok(mut l) = self.memory.lock() {
            l.insert(container.to_string(), rx);
        }
        MemoryArriving {
            agent: self.clone(),
            container: container.to_string(),
            done: tx,
        }
    }

    /// Waits until `container` holds all its memory (a checkpoint before that would miss
    /// the pages not yet installed). Returns false on timeout.
    pub async fn wait_memory_complete(&self, container: &str, limit: std::time::Duration) -> bool {
        let rx = self
            .memory
            .lock()
            .ok()
            .and_then(|l| l.get(container).cloned());
        let Some(mut rx) = rx else { return true };
        tokio::time::timeout(limit, rx.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Claims `name` for one operation, or says another one is running.
    pub fn claim(self: &Arc<Self>, name: &str) -> Result<Claim, Busy> {
        let busy = || Busy {
            name: name.to_string(),
            host: self.cfg.name.clone(),
        };
        let mut b = self.busy.lock().map_err(|_| busy())?;
        if !b.insert(name.to_string()) {
            return Err(busy());
        }
        Ok(Claim {
            agent: self.clone(),
            name: name.to_string(),
        })
    }

    /// Claims `name`, waiting up to `limit` while a standby round holds it (a round ends
    /// by itself within seconds); any other operation holding it is [`Busy`] at once.
    pub async fn claim_after_standby(
        self: &Arc<Self>,
        name: &str,
        limit: std::time::Duration,
    ) -> Result<Claim, Busy> {
        let start = std::time::Instant::now();
        loop {
            match self.claim(name) {
                Err(_) if self.standbys.keeps(name) && start.elapsed() < limit => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Records how an incoming session stands: on disk first, then for the living.
    pub fn set_session(&self, id: &str, state: SessionState) {
        if let Err(e) = self.outcomes.record(id, state) {
            tracing::error!(session = %id, "cannot record the session's outcome ({state:?}): {e}");
        }
        if let Ok(mut s) = self.sessions.lock() {
            if let Some(e) = s.get_mut(id) {
                e.state = state;
            }
        }
    }

    /// How an incoming session stands: as this run knows it, else as recorded.
    pub fn session_state(&self, id: &str) -> SessionState {
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(id).map(|e| e.state))
            .or_else(|| self.outcomes.get(id))
            .unwrap_or(SessionState::Unknown)
    }
}
