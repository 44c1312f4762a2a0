//! What an agent holds while it runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferry_criu::plan::NetworkLock;
use ferry_proto::SessionState;
use ferry_runtime::Runc;
use ferry_transport::Stream;
use tokio::sync::{oneshot, Semaphore};

use crate::config::AgentConfig;
use crate::registry::Registry;

/// A migration session this agent receives.
#[derive(Debug)]
pub struct SessionEntry {
    pub container: String,
    pub state: SessionState,
    /// Where the page channel goes when it arrives.
    pub pages: Option<oneshot::Sender<Stream>>,
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
        }
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
