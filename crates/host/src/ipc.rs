//! Pipes and UNIX sockets that join a container's processes to processes outside it.
//!
//! CRIU moves both ends of a pipe or a UNIX connection when both are in the container.
//! With one end outside, a UNIX connection fails the dump (after the freeze), and a
//! pipe is restored with nobody at the other end: the process reads end-of-file or dies
//! of `SIGPIPE`. The preflight finds both before anything is frozen.
//!
//! Pipes are matched by inode across every process's descriptors; a UNIX socket's peer
//! comes from the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`, `UDIAG_SHOW_PEER`),
//! asked inside the container's network namespace.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What a descriptor (`/proc/PID/fd/N`) is, when it matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// A pipe or a named FIFO: its device and inode.
    Pipe(u64, u64),
    /// A socket: its inode.
    Socket(u64),
}

impl End {
    /// From the descriptor's file type, device and inode (what `stat` says through the
    /// `/proc/PID/fd/N` link).
    pub fn of(meta: &std::fs::Metadata) -> Option<End> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let t = meta.file_type();
        if t.is_fifo() {
            Some(End::Pipe(meta.dev(), meta.ino()))
        } else if t.is_socket() {
            Some(End::Socket(meta.ino()))
        } else {
            None
        }
    }
}

/// One process's pipes and sockets, with the descriptor numbers they are at.
#[derive(Debug, Clone, Default)]
pub struct Ends {
    pub pid: u32,
    pub comm: String,
    pub ends: Vec<(i32, End)>,
}

/// The ends of the container's processes that lead outside, as sentences per pid.
///
/// `peers` maps a UNIX socket's inode to its peer's. The container's first process's
/// standard descriptors (0–2), and the same files wherever its children inherited them,
/// are exempt: runc gives them to the container, and the restore connects them to the
/// destination's.
pub fn external(
    inside: &[Ends],
    outside: &[Ends],
    peers: &HashMap<u64, u64>,
) -> BTreeMap<u32, Vec<String>> {
    let mut holders: HashMap<End, (u32, &str)> = HashMap::new();
    for o in outside {
        for &(_, e) in &o.ends {
            holders.entry(e).or_insert((o.pid, &o.comm));
        }
    }
    let init = inside.iter().map(|p| p.pid).min();
    let stdio: Vec<End> = inside
        .iter()
        .filter(|p| Some(p.pid) == init)
        .flat_map(|p| p.ends.iter().filter(|(fd, _)| (0..=2).contains(fd)))
        .map(|&(_, e)| e)
        .collect();
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for p in inside {
        for &(fd, e) in &p.ends {
            if stdio.contains(&e) {
                continue;
            }
            let (what, far) = match e {
                End::Pipe(d, i) => ("a pipe", End::Pipe(d, i)),
                End::Socket(i) => match peers.get(&i) {
                    Some(&peer) if peer != 0 => ("a UNIX socket connected", End::Socket(peer)),
                    _ => continue,
                },
            };
            if let Some((pid, comm)) = holders.get(&far) {
                let s = format!(
                    "{what} (descriptor {fd}) to process {pid} ({comm}) outside the container"
                );
                let list = out.entry(p.pid).or_default();
                if !list.contains(&s) {
                    list.push(s);
                }
            }
        }
    }
    out
}

/// The pipes and sockets among process `pid`'s descriptors `fds`.
pub fn ends_in(pid: u32, fds: &[crate::fds::Fd]) -> Ends {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let ends = fds
        .iter()
        .filter_map(|f| Some((f.num, End::of(f.meta.as_ref()?)?)))
        .collect();
    Ends { pid, comm, ends }
}

/// The pipes and sockets of process `pid`, from `/proc`.
pub fn ends_of(pid: u32) -> Ends {
    ends_in(pid, &crate::fds::of(pid))
}

/// Every process of this host except `skip`.
pub fn others(skip: &[u32]) -> Vec<Ends> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !skip.contains(pid) && *pid != std::process::id())
        .map(ends_of)
        .filter(|e| !e.ends.is_empty())
        .collect()
}

/// The sentences for the container whose processes have the ends `inside` (the lowest
/// pid's network namespace is the container's).
pub fn external_of(inside: &[Ends]) -> BTreeMap<u32, Vec<String>> {
    let pids: Vec<u32> = inside.iter().map(|e| e.pid).collect();
    let has_sockets = inside
        .iter()
        .any(|p| p.ends.iter().any(|(_, e)| matches!(e, End::Socket(_))));
    let peers = match pids.iter().min() {
        Some(&pid) if has_sockets => unix_peers(pid).unwrap_or_default(),
        _ => HashMap::new(),
    };
    external(inside, &others(&pids), &peers)
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_PEER: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;

/// Every UNIX socket in `pid`'s network namespace, by inode, with its peer's inode.
pub fn unix_peers(pid: u32) -> io::Result<HashMap<u64, u64>> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    // A netlink socket answers for the namespace it was made in: make it in a thread
    // that entered the container's (the agent's own threads stay where they are).
    let sock = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on this thread only, with a namespace descriptor we hold.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: socket(2); the result is checked and owned below.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    libc::NETLINK_SOCK_DIAG,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a new descriptor of ours.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
    })?;
    send_request(&sock)?;
    read_replies(&sock)
}

fn send_request(sock: &OwnedFd) -> io::Result<()> {
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.push(libc::AF_UNIX as u8); // sdiag_family
    req.push(0); // sdiag_protocol
    req.extend_from_slice(&0u16.to_ne_bytes()); // pad
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // udiag_ino
    req.extend_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]); // cookie
                                      // SAFETY: send(2) from a buffer we own.
    let n = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn read_replies(sock: &OwnedFd) -> io::Result<HashMap<u64, u64>> {
    let mut peers = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv(2) into a buffer we own, at most its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if parse_replies(&buf[..n as usize], &mut peers)? {
            return Ok(peers);
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads one datagram of replies into `peers`; true once the dump is done.
fn parse_replies(mut b: &[u8], peers: &mut HashMap<u64, u64>) -> io::Result<bool> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a malformed sock_diag reply");
    while b.len() >= 16 {
        let len = u32_at(b, 0).ok_or_else(bad)? as usize;
        let kind = u16_at(b, 4).ok_or_else(bad)?;
        if len < 16 || len > b.len() {
            return Err(bad());
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => return Err(io::Error::other("sock_diag refused the request")),
            _ => {
                // unix_diag_msg: family, type, state, pad, ino, cookie[2]; then attributes.
                let msg = &b[16..len];
                let ino = u32_at(msg, 4).ok_or_else(bad)?;
                let mut attrs = msg.get(16..).unwrap_or_default();
                while attrs.len() >= 4 {
                    let alen = u16_at(attrs, 0).ok_or_else(bad)? as usize;
                    let akind = u16_at(attrs, 2).ok_or_else(bad)?;
                    if alen < 4 || alen > attrs.len() {
                        return Err(bad());
                    }
                    if akind == UNIX_DIAG_PEER {
                        let peer = u32_at(attrs, 4).ok_or_else(bad)?;
                        peers.insert(u64::from(ino), u64::from(peer));
                    }
                    attrs = &attrs[(alen + 3) & !3..];
                }
            }
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(pid: u32, comm: &str, ends: &[(i32, End)]) -> Ends {
        Ends {
            pid,
            comm: comm.into(),
            ends: ends.to_vec(),
        }
    }

    #[test]
    fn descriptors_are_told_apart_by_their_type() {
        let (r, _w) = std::io::pipe().unwrap();
        let p = End::of(&std::fs::metadata(format!("/proc/self/fd/{}", r.as_raw_fd())).unwrap());
        assert!(matches!(p, Some(End::Pipe(_, _))), "{p:?}");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let s = End::of(&std::fs::metadata(format!("/proc/self/fd/{}", a.as_raw_fd())).unwrap());
        assert!(matches!(s, Some(End::Socket(_))), "{s:?}");
        assert_eq!(End::of(&std::fs::metadata("/dev/null").unwrap()), None);
    }

    #[test]
    fn ends_outside_the_container_are_named_and_inner_ones_are_not() {
        let inside = [
            ends(10, "init", &[(1, End::Pipe(9, 1)), (5, End::Pipe(9, 2))]),
            ends(
                11,
                "worker",
                &[
                    (1, End::Pipe(9, 1)),
                    (3, End::Pipe(9, 2)),
                    (4, End::Socket(20)),
                    (6, End::Pipe(9, 3)),
                ],
            ),
        ];
        let outside = [
            ends(900, "agent", &[(9, End::Pipe(9, 1))]),
            ends(901, "logger", &[(2, End::Pipe(9, 3)), (7, End::Socket(21))]),
        ];
        let peers = HashMap::from([(20, 21)]);
        let found = external(&inside, &outside, &peers);
        assert!(
            !found.contains_key(&10),
            "init's stdout and the inner pipe: {found:?}"
        );
        // The worker inherited init's stdout: exempt too.
        let w = &found[&11];
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("a UNIX socket connected (descriptor 4) to process 901 (logger)"));
        assert!(w[1].starts_with("a pipe (descriptor 6) to process 901 (logger)"));
    }

    #[test]
    fn a_socketpair_of_this_process_has_a_peer_in_its_namespace() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let Ok(peers) = unix_peers(std::process::id()) else {
            eprintln!("skipped: sock_diag is not available here");
            return;
        };
        use std::os::unix::fs::MetadataExt;
        let ia = std::fs::metadata(format!("/proc/self/fd/{}", a.as_raw_fd()))
            .unwrap()
            .ino();
        let ib = std::fs::metadata(format!("/proc/self/fd/{}", b.as_raw_fd()))
            .unwrap()
            .ino();
        assert_eq!(peers.get(&ia), Some(&ib));
        // The same pair, seen as inside and outside ends, is named.
        let me = ends_of(std::process::id());
        let inside = [Ends {
            pid: 1_000_000,
            ..me.clone()
        }];
        let found = external(&inside, &[me], &peers);
        assert!(!found.is_empty());
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let mut peers = HashMap::new();
        assert!(parse_replies(&[0xff; 20], &mut peers).is_err());
        let mut done = vec![0u8; 16];
        done[0] = 16;
        done[4] = NLMSG_DONE as u8;
        assert!(parse_replies(&done, &mut peers).unwrap());
    }
}
