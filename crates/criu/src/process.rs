//! CRIU's helper processes, and passing descriptors down to CRIU.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Makes the child see each `(target, fd)` pair's descriptor at number `target`, without
/// close-on-exec. The descriptors must stay open until the child has been spawned.
pub fn inherit_fds(cmd: &mut Command, fds: &[(i32, OwnedFd)]) {
    let pairs: Vec<(i32, i32)> = fds.iter().map(|(t, fd)| (*t, fd.as_raw_fd())).collect();
    if pairs.is_empty() {
        return;
    }
    // SAFETY: the closure runs in the forked child before exec and calls only dup2 and
    // fcntl, which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for (target, src) in &pairs {
                if *src == *target {
                    let flags = libc::fcntl(*target, libc::F_GETFD);
                    libc::fcntl(*target, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                    continue;
                }
                if libc::dup2(*src, *target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// The OOM score CRIU and ferry's other helpers run with: the most killable, so that when
/// memory runs short the kernel kills a dump, never the container it dumps.
pub const HELPER_OOM_SCORE_ADJ: &[u8] = b"1000";

/// Makes the command's process (and what it starts: runc's CRIU) the first the OOM killer
/// picks.
pub fn prefer_for_oom_killer(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only open,
    // write and close on a constant path, which are async-signal-safe; it allocates
    // nothing.
    unsafe {
        cmd.pre_exec(|| {
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(
                    fd,
                    HELPER_OOM_SCORE_ADJ.as_ptr().cast(),
                    HELPER_OOM_SCORE_ADJ.len(),
                );
                libc::close(fd);
            }
            Ok(())
        });
    }
}

/// Makes the command's process (and what it starts) join the cgroup whose
/// `cgroup.procs` is `procs` before it execs: its memory counts against that cgroup's
/// limit from its first allocation. If it cannot join, it does not start.
pub fn join_cgroup(cmd: &mut Command, procs: &Path) {
    let Ok(path) = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: the closure runs in the forked child before exec and calls only open,
    // write and close on a string allocated before the fork, which are
    // async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
            Ok(())
        });
    }
}

/// The descriptor number CRIU helpers receive their socket at.
pub const HELPER_SOCKET_FD: i32 = 100;

/// Starts `criu page-server` on an already-connected socket: it writes the pages it
/// receives into `images` as `pagemap-*.img` and `pages-*.img`, and exits when the
/// dumping CRIU closes the session.
pub fn spawn_page_server(
    criu: &Path,
    images: &Path,
    work: &Path,
    socket: OwnedFd,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(criu);
    cmd.arg("page-server")
        .arg("--ps-socket")
        .arg(HELPER_SOCKET_FD.to_string())
        .arg("--images-dir")
        .arg(images)
        .arg("--work-dir")
        .arg(work)
        .args(["-o", "page-server.log", "-v4"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let fds = [(HELPER_SOCKET_FD, socket)];
    inherit_fds(&mut cmd, &fds);
    let child = cmd.spawn();
    drop(fds);
    child
}

/// A running `criu lazy-pages` daemon, serving a lazy restore from local images.
#[derive(Debug)]
pub struct LazyPagesDaemon {
    pub child: Child,
    pub work: PathBuf,
}

/// Starts `criu lazy-pages` over the images in `images` and waits until its socket in
/// `work` exists (the restore connects to it).
pub async fn spawn_lazy_pages(
    criu: &Path,
    images: &Path,
    work: &Path,
) -> std::io::Result<LazyPagesDaemon> {
    let socket = work.join("lazy-pages.socket");
    let _ = std::fs::remove_file(&socket);
    // Not the OOM killer's first choice: the restored processes wait on this daemon for
    // their memory.
    let mut child = Command::new(criu)
        .arg("lazy-pages")
        .arg("--images-dir")
        .arg(images)
        .arg("--work-dir")
        .arg(work)
        .args(["-o", "lazy-pages.log", "-v4"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let start = Instant::now();
    while !socket.exists() {
        if let Some(status) = child.try_wait()? {
            return Err(std::io::Error::other(format!(
                "criu lazy-pages exited ({status}) before listening; see {}",
                work.join("lazy-pages.log").display()
            )));
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.start_kill();
            return Err(std::io::Error::other(
                "criu lazy-pages did not start within 10 s",
            ));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    Ok(LazyPagesDaemon {
        child,
        work: work.to_path_buf(),
    })
}
