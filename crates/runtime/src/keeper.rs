//! Post-copy's guard against the death of the process that serves the pages.
//!
//! During post-copy the agent holds the restored container's userfaultfds. If the agent
//! died with them, the kernel would unregister the ranges and the container would read
//! the pages still missing as zeros. So the agent starts a keeper (`ferry keeper`), a
//! small process of its own session, and hands it a copy of every userfaultfd over a
//! socket. While the keeper holds them, the ranges stay registered and a faulting thread
//! waits. When the agent says it is done, the keeper lets go and exits; when the socket
//! closes without that word (the agent died), the keeper kills every process of the
//! container's cgroup, then exits. The source's frozen copy is then the container.

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::freezer::Freezer;

/// A descriptor follows.
const HOLD: u8 = b'F';
/// Every page is in place (or the agent stopped the container itself): let go.
const DONE: u8 = b'D';

/// The agent's end of a keeper.
#[derive(Debug)]
pub struct Keeper {
    sock: UnixStream,
    child: std::sync::Mutex<Option<Child>>,
}

impl Keeper {
    /// Starts `ferry keeper --cgroup CGROUP` (`ferry` is `program`), where `cgroup` is the
    /// container's cgroup path as runc names it.
    pub fn spawn(program: &Path, cgroup: &str) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let (ours, theirs) = UnixStream::pair()?;
        let child = Command::new(program)
            .args(["keeper", "--cgroup", cgroup])
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            // Its own process group: a signal to the agent's group does not reach it.
            .process_group(0)
            .spawn()?;
        Ok(Self {
            sock: ours,
            child: std::sync::Mutex::new(Some(child)),
        })
    }

    /// Hands the keeper a copy of `fd`.
    pub fn hold(&self, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        ferry_criu::fdpass::send(self.sock.as_raw_fd(), HOLD, fd.as_raw_fd())
    }

    /// Tells the keeper to let go, and reaps it in the background. Dropped without this,
    /// the keeper stops the container.
    pub fn release(&self) {
        let _ = (&self.sock).write_all(&[DONE]);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
    }
}

/// What arrived on the keeper's socket.
enum Word {
    Hold(Option<OwnedFd>),
    Done,
    /// The socket closed (or failed) without `DONE`.
    Gone,
}

fn receive(sock: RawFd) -> Word {
    match ferry_criu::fdpass::recv(sock) {
        Ok(Some((HOLD, fd))) => Word::Hold(fd),
        Ok(Some((DONE, _))) => Word::Done,
        _ => Word::Gone,
    }
}

/// The keeper itself (`ferry keeper`): holds what arrives on standard input until told
/// to let go (exit code 0), or kills the container of `cgroup` when its agent is gone
/// (exit code 1).
pub fn watch(cgroup: &str) -> i32 {
    let mut held = Vec::new();
    loop {
        match receive(0) {
            Word::Hold(fd) => held.extend(fd),
            Word::Done => return 0,
            Word::Gone => break,
        }
    }
    let held_count = held.len();
    // Several passes: a process may fork while it is being killed.
    let mut killed = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let procs = Freezer::for_cgroup(cgroup)
            .map(|f| f.procs())
            .unwrap_or_default();
        if procs.is_empty() {
            break;
        }
        killed.extend(procs.iter().copied());
        for pid in procs {
            // SAFETY: kill(2) on the processes of the container's own cgroup.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(held);
    // To the agent's log, which the keeper shares.
    eprintln!(
        "ferry keeper: the agent died during post-copy; killed {} processes of cgroup {cgroup} before letting go of {held_count} userfaultfds",
        killed.len()
    );
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_and_the_last_word_cross_the_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        ferry_criu::fdpass::send(a.as_raw_fd(), HOLD, file.as_raw_fd()).unwrap();
        match receive(b.as_raw_fd()) {
            Word::Hold(Some(fd)) => assert_ne!(fd.as_raw_fd(), file.as_raw_fd()),
            _ => panic!("no descriptor"),
        }
        (&a).write_all(&[DONE]).unwrap();
        assert!(matches!(receive(b.as_raw_fd()), Word::Done));
        drop(a);
        assert!(matches!(receive(b.as_raw_fd()), Word::Gone));
    }
}
