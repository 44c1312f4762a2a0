//! How each incoming migration ended, kept on disk (`STATE/sessions/SESSION`), so that
//! a destination that restarts still tells its source the truth: a session it
//! committed stays committed, and one it was still building when it stopped was
//! dropped (its recovery removes what it built). Each record is replaced whole.

use std::path::{Path, PathBuf};

use ferry_types::SessionState;

use crate::config::valid_session;

/// Most records kept; the oldest go first.
pub const MAX_RECORDS: usize = 4096;

#[derive(Debug, Clone)]
pub struct Outcomes {
    dir: PathBuf,
}

fn word(state: SessionState) -> Option<&'static str> {
    match state {
        SessionState::Committed => Some("committed"),
        SessionState::Dropped => Some("dropped"),
        SessionState::Pending => Some("pending"),
        SessionState::Unknown => None,
    }
}

fn parse(text: &str) -> Option<SessionState> {
    match text.trim() {
        "committed" => Some(SessionState::Committed),
        "dropped" => Some(SessionState::Dropped),
        "pending" => Some(SessionState::Pending),
        _ => None,
    }
}

impl Outcomes {
    /// The records under `state_dir` (created, mode 0700).
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = state_dir.join("sessions");
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self { dir })
    }

    /// Records how `id` stands, durably, before anyone is told.
    pub fn record(&self, id: &str, state: SessionState) -> std::io::Result<()> {
        let (true, Some(w)) = (valid_session(id), word(state)) else {
            return Ok(());
        };
        ferry_engine::durable::write_atomic(&self.dir.join(id), w.as_bytes())
    }

    /// How `id` stands, if it was recorded.
    pub fn get(&self, id: &str) -> Option<SessionState> {
        if !valid_session(id) {
            return None;
        }
        parse(&std::fs::read_to_string(self.dir.join(id)).ok()?)
    }

    /// At start: what the previous run was still building it dropped (its recovery
    /// removes it), and the oldest records beyond [`MAX_RECORDS`] go.
    pub fn after_restart(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut all: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for e in rd.filter_map(Result::ok) {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if self.get(&name) == Some(SessionState::Pending) {
                if let Err(e) = self.record(&name, SessionState::Dropped) {
                    tracing::error!(session = %name, "cannot record the session as dropped: {e}");
                }
            }
            let when = e.metadata().and_then(|m| m.modified());
            all.push((when.unwrap_or(std::time::UNIX_EPOCH), path));
        }
        if all.len() > MAX_RECORDS {
            all.sort();
            for (_, p) in &all[..all.len() - MAX_RECORDS] {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_survive_a_restart_and_pending_ones_become_dropped() {
        let d = tempfile::tempdir().unwrap();
        let o = Outcomes::open(d.path()).unwrap();
        o.record("redis-00ff", SessionState::Pending).unwrap();
        o.record("web-1", SessionState::Committed).unwrap();
        o.record("db-2", SessionState::Dropped).unwrap();
        o.record("gone", SessionState::Unknown).unwrap();
        let again = Outcomes::open(d.path()).unwrap();
        assert_eq!(again.get("redis-00ff"), Some(SessionState::Pending));
        again.after_restart();
        assert_eq!(again.get("redis-00ff"), Some(SessionState::Dropped));
        assert_eq!(again.get("web-1"), Some(SessionState::Committed));
        assert_eq!(again.get("db-2"), Some(SessionState::Dropped));
        assert_eq!(again.get("gone"), None);
    }

    #[test]
    fn hostile_session_ids_touch_nothing() {
        let d = tempfile::tempdir().unwrap();
        let o = Outcomes::open(d.path()).unwrap();
        for id in ["../x", "a/b", ".hidden", "", &"x".repeat(300)] {
            o.record(id, SessionState::Committed).unwrap();
            assert_eq!(o.get(id), None, "{id}");
        }
        assert_eq!(
            std::fs::read_dir(d.path().join("sessions"))
                .unwrap()
                .count(),
            0
        );
        assert!(!d.path().join("x").exists());
    }
}
