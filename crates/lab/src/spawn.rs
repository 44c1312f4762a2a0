//! Starting the lab's daemons (the agents, Docker's daemons).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::LabError;

/// Starts `cmd` as a daemon: in a session of its own (a signal to the terminal that ran
/// `ferry lab up` does not reach it), no input, both outputs into a new `log`. Returns
/// its pid; `what` names it and its log in errors.
pub(crate) fn daemon(mut cmd: Command, log: &Path, what: &str) -> Result<u32, LabError> {
    let out = std::fs::File::create(log).map_err(|e| LabError::io(format!("{what} log"), e))?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io(format!("{what} log"), e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid in the child before exec; async-signal-safe, no allocation.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("starting {what}"), e))?;
    Ok(child.id())
}
