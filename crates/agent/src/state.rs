//! What an agent holds while it runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferry_criu::plan::NetworkLock;
use ferry_runtime::Runc;
use ferry_transport::Stream;
use ferry_types::SessionState;
use tokio::sync::{oneshot, Semaphore};

use crate::config::AgentConfig;
use crate::pod::PodArrivals;
use crate::registry::Registry;

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
    pub runc: Runc,
    pub registry: Registry,
    pub network_lock: NetworkLock,
    /// Whether lazy restores work here (userfaultfd).
    pub lazy_pages: bool,
    pub sessions: Mutex<HashMap<String, SessionEntry>>,
    busy: Mutex<HashSet<String>>,
    pub slots: Arc<Semaphore>,
    /// Containers whose memory is still being filled in by a lazy restore; each is set
    /// to true when the daemon finished.
    lazy: Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>,
    /// Pods whose members are arriving.
    pub pods: PodArrivals,
    /// Held while a pod's namespace is found or built at the destination.
    pub pod_setup: tokio::sync::Mutex<()>,
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

impl Agent {
    pub fn new(
        cfg: AgentConfig,
        registry: Registry,
        network_lock: NetworkLock,
        lazy_pages: bool,
    ) -> Self {
        let runc = Runc {
            binary: cfg.runc.clone(),
            root: cfg.runtime_root.clone(),
            criu: cfg.criu.clone(),
        };
        let slots = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
        Self {
            cfg,
            runc,
            registry,
            network_lock,
            lazy_pages,
            sessions: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
            slots,
            lazy: Mutex::new(HashMap::new()),
            pods: PodArrivals::default(),
            pod_setup: tokio::sync::Mutex::new(()),
        }
    }

    /// Records that `container`'s memory is still arriving; the returned sender says
    /// when it is complete.
    pub fn lazy_started(&self, container: &str) -> tokio::sync::watch::Sender<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        if let Ok(mut l) = self.lazy.lock() {
            l.insert(container.to_string(), rx);
        }
        tx
    }

    pub fn lazy_finished(&self, container: &str) {
        if let Ok(mut l) = self.lazy.lock() {
            l.remove(container);
        }
    }

    /// Waits until `container` holds all its memory (a checkpoint before that would miss
    /// the pages not yet installed). Returns false on timeout.
    pub async fn wait_memory_complete(&self, container: &str, limit: std::time::Duration) -> bool {
        let rx = self
            .lazy
            .lock()
            .ok()
            .and_then(|l| l.get(container).cloned());
        let Some(mut rx) = rx else { return true };
        tokio::time::timeout(limit, rx.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Claims `name` for one operation, or says another one is running.
    pub fn claim(self: &Arc<Self>, name: &str) -> Result<Claim, String> {
        let mut b = self
            .busy
            .lock()
            .map_err(|_| "agent state poisoned".to_string())?;
        if !b.insert(name.to_string()) {
            return Err(format!(
                "another operation on '{name}' is in progress on {}; wait for it to finish",
                self.cfg.name
            ));
        }
        Ok(Claim {
            agent: self.clone(),
            name: name.to_string(),
        })
    }

    pub fn set_session(&self, id: &str, state: SessionState) {
        if let Ok(mut s) = self.sessions.lock() {
            if let Some(e) = s.get_mut(id) {
                e.state = state;
            }
        }
    }

    pub fn session_state(&self, id: &str) -> SessionState {
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(id).map(|e| e.state))
            .unwrap_or(SessionState::Unknown)
    }
}
