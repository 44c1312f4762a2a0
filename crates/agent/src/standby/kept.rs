//! What an agent records of the standbys it keeps: their status, and how to stop each.

use std::collections::HashMap;
use std::sync::Mutex;

use ferry_types::standby::StandbyStatus;

#[derive(Debug)]
struct Kept {
    status: StandbyStatus,
    stop: tokio::sync::watch::Sender<bool>,
}

/// The standbys being kept, by container.
#[derive(Debug, Default)]
pub struct Keeping(Mutex<HashMap<String, Kept>>);

impl Keeping {
    pub fn list(&self) -> Vec<StandbyStatus> {
        let map = self
            .0
            .lock()
            .map(|m| m.values().map(|k| k.status.clone()).collect::<Vec<_>>());
        let mut v = map.unwrap_or_default();
        v.sort_by(|a, b| a.container.cmp(&b.container));
        v
    }

    pub(super) fn update(&self, container: &str, f: impl FnOnce(&mut StandbyStatus)) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(k) = m.get_mut(container) {
                f(&mut k.status);
            }
        }
    }

    /// Whether a standby of `container` is kept.
    pub fn keeps(&self, container: &str) -> bool {
        self.0.lock().is_ok_and(|m| m.contains_key(container))
    }

    pub(super) fn insert(&self, status: StandbyStatus, stop: tokio::sync::watch::Sender<bool>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(status.container.clone(), Kept { status, stop });
        }
    }

    pub(super) fn remove(&self, container: &str) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|mut m| m.remove(container))
            .map(|k| k.stop.send(true))
            .is_some()
    }
}
