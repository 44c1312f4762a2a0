//! Sockets CRIU left in TCP repair mode.
//!
//! CRIU puts each established TCP connection it dumps into repair mode and takes it out
//! again when the dump ends, or when it fails and unwinds. A CRIU that is killed (by the
//! OOM killer at its memory bound, or by a signal) unwinds nothing: the container's
//! sockets stay in repair mode, where every `read` fails with `EPERM` and every `write`
//! with `EINVAL`, and the application closes its connections as soon as it runs again.
//! Before ferry thaws a container after a failed dump it takes them out itself.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const TCP_REPAIR: libc::c_int = 19;
/// Leave repair mode and send a window probe, so that the peer hears from us at once.
const TCP_REPAIR_OFF: libc::c_int = 0;

/// Takes every TCP socket of processes `pids` out of repair mode; returns how many were
/// in it. Processes that vanish meanwhile are skipped.
pub fn release_repair(pids: &[u32]) -> io::Result<u32> {
    let mut seen = BTreeSet::new();
    let mut released = 0;
    for &pid in pids {
        let Ok(pidfd) = pidfd_open(pid) else {
            continue;
        };
        for (fd, inode) in socket_fds(pid) {
            if !seen.insert(inode) {
                continue;
            }
            let Ok(sock) = pidfd_getfd(&pidfd, fd) else {
                continue;
            };
            if is_tcp(&sock) && get_int(&sock, libc::IPPROTO_TCP, TCP_REPAIR)? == 1 {
                set_int(&sock, libc::IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF)?;
                released += 1;
            }
        }
    }
    Ok(released)
}

/// The descriptors of `pid` that are sockets, with the socket's inode.
fn socket_fds(pid: u32) -> Vec<(i32, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            let inode = socket_inode(target.to_str()?)?;
            Some((fd, inode))
        })
        .collect()
}

/// The inode of a `socket:[N]` link target.
pub(crate) fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd(2) duplicates another process's descriptor into ours.
    let n = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above: a new descriptor of ours.
    Ok(unsafe { OwnedFd::from_raw_fd(n as i32) })
}

fn is_tcp(sock: &OwnedFd) -> bool {
    let domain = get_int(sock, libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(-1);
    let proto = get_int(sock, libc::SOL_SOCKET, libc::SO_PROTOCOL).unwrap_or(-1);
    (domain == libc::AF_INET || domain == libc::AF_INET6) && proto == libc::IPPROTO_TCP
}

fn get_int(sock: &OwnedFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

fn set_int(
    sock: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt(2) reads `len` bytes from `v`.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_name_their_inode() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn a_connection_left_in_repair_mode_is_taken_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(
            release_repair(&[std::process::id()]).unwrap(),
            0,
            "none in repair"
        );
        let fd: OwnedFd = s.try_clone().unwrap().into();
        if set_int(&fd, libc::IPPROTO_TCP, TCP_REPAIR, 1).is_err() {
            eprintln!("skipped: repair mode needs CAP_NET_ADMIN");
            return;
        }
        assert_eq!(release_repair(&[std::process::id()]).unwrap(), 1);
        assert_eq!(get_int(&fd, libc::IPPROTO_TCP, TCP_REPAIR).unwrap(), 0);
        drop(c);
    }
}
