//! What an agent records of the standbys it keeps: their status, and how to stop each.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use ferry_types::standby::StandbyStatus;

#[derive(Debug)]
struct Kept {
    status: StandbyStatus,
    stop: tokio::sync::watch::Sender<bool>,
}

/// The standbys being kept, by container, and the containers a round holds frozen now.
#[derive(Debug, Default)]
pub struct Keeping {
    kept: Mutex<HashMap<String, Kept>>,
    frozen: Mutex<HashSet<String>>,
}

impl Keeping {
    pub fn list(&self) -> Vec<StandbyStatus> {
        let map = self
            .kept
            .lock()
            .map(|m| m.values().map(|k| k.status.clone()).collect::<Vec<_>>());
        let mut v = map.unwrap_or_default();
        v.sort_by(|a, b| a.container.cmp(&b.container));
        v
    }

    pub(super) fn update(&self, container: &str, f: impl FnOnce(&mut StandbyStatus)) {
        if let Ok(mut m) = self.kept.lock() {
            if let Some(k) = m.get_mut(container) {
                f(&mut k.status);
            }
        }
    }

    /// Whether a standby of `container` is kept.
    pub fn keeps(&self, container: &str) -> bool {
        self.kept.lock().is_ok_and(|m| m.contains_key(container))
    }

    /// Whether a round holds `container` frozen for its checkpoint: for a moment, and
    /// to its users it still runs.
    pub fn frozen_for_round(&self, container: &str) -> bool {
        self.frozen.lock().is_ok_and(|f| f.contains(container))
    }

    pub(super) fn set_frozen(&self, container: &str, frozen: bool) {
        if let Ok(mut f) = self.frozen.lock() {
            if frozen {
                f.insert(container.to_string());
            } else {
                f.remove(container);
            }
        }
    }

    pub(super) fn insert(&self, status: StandbyStatus, stop: tokio::sync::watch::Sender<bool>) {
        if let Ok(mut m) = self.kept.lock() {
            m.insert(status.container.clone(), Kept { status, stop });
        }
    }

    pub(super) fn remove(&self, container: &str) -> bool {
        self.kept
            .lock()
            .ok()
            .and_then(|mut m| m.remove(container))
            .map(|k| k.stop.send(true))
            .is_some()
    }
}
