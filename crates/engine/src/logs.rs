//! Logs of sessions that went wrong, kept after their tmpfs directory is removed.

use std::path::{Path, PathBuf};

use crate::ports::host::HostSettings;

/// Where the logs of a session are kept.
pub fn logs_dir(settings: &HostSettings, session: &str) -> PathBuf {
    settings.logs_dir.join(session)
}

/// Copies the CRIU and runc logs (`*.log`) in `dir` to the session's logs directory;
/// returns that directory.
pub fn keep_logs(settings: &HostSettings, session: &str, dir: &Path) -> PathBuf {
    let dest = logs_dir(settings, session);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return dest;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".log") {
            let _ = std::fs::create_dir_all(&dest);
            let _ = std::fs::copy(e.path(), dest.join(&name));
        }
    }
    dest
}

/// Removes a finished session's directory, keeping its logs first if the host keeps
/// every session's logs.
pub fn remove_session_dir(settings: &HostSettings, session: &str, dir: &Path) {
    if settings.keep_logs {
        keep_logs(settings, session, dir);
        keep_logs(settings, session, &dir.join("work"));
    }
    let _ = std::fs::remove_dir_all(dir);
}
