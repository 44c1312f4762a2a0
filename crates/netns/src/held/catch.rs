//! The catcher: a thread inside a namespace that reads the lock's log groups.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::nflog::{self, Msg};
use super::{Held, GROUP_IN, GROUP_OUT};
use crate::NetError;

const RECV_BUF: usize = 4 << 20;

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn check(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(last_err())
    } else {
        Ok(r)
    }
}

/// A thread inside a namespace that reads netfilter log groups into a `T` until it is
/// stopped, its deadline passes, or `on_packet` says it has seen enough.
#[derive(Debug)]
pub(crate) struct LogReader<T: Send + 'static> {
    stop: OwnedFd,
    thread: Option<JoinHandle<T>>,
}

/// What a reader does with one logged packet; true once it needs no more.
pub(crate) type OnPacket<T> = fn(&mut T, u16, &[u8]) -> bool;

impl<T: Send + Default + 'static> LogReader<T> {
    /// Starts reading `groups` in the namespace at `netns`; returns once they are bound,
    /// so every packet logged from now on is read.
    pub(crate) fn start(
        netns: &Path,
        groups: &'static [u16],
        deadline: Option<Instant>,
        init: T,
        on_packet: OnPacket<T>,
    ) -> Result<Self, NetError> {
        let err = |source| NetError::Catch {
            netns: netns.display().to_string(),
            source,
        };
        // SAFETY: plain eventfd(2); the result is checked before use.
        let stop = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }).map_err(err)?;
        // SAFETY: a fresh descriptor nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let stop_fd = stop.as_raw_fd();
        let (ready_tx, ready_rx) = mpsc::channel();
        let path: PathBuf = netns.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("ferry-catch".into())
            .spawn(move || match open(&path, groups) {
                Ok(sock) => {
                    let _ = ready_tx.send(Ok(()));
                    let mut state = init;
                    read_until_stopped(&sock, stop_fd, deadline, &mut state, on_packet);
                    state
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    T::default()
                }
            })
            .map_err(err)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(err(e)),
            Err(_) => Err(err(std::io::Error::other("the catcher thread ended"))),
        }
    }

    /// Stops reading (after what is queued) and returns what was read.
    pub(crate) fn finish(self) -> T {
        self.signal();
        self.wait()
    }

    /// Waits for the reader to end by itself (its deadline, or enough seen).
    pub(crate) fn wait(mut self) -> T {
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl<T: Send + 'static> LogReader<T> {
    fn signal(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid buffer to our own eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

impl<T: Send + 'static> Drop for LogReader<T> {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.signal();
            let _ = t.join();
        }
    }
}

/// Keeps copies of what a locked namespace drops, until [`Catcher::finish`].
#[derive(Debug)]
pub struct Catcher(LogReader<Held>);

impl Catcher {
    /// Starts catching in the namespace at `netns`; returns once both log groups are
    /// bound, so every packet the lock drops from now on is copied.
    pub fn start(netns: &Path) -> Result<Catcher, NetError> {
        let groups = &[GROUP_IN, GROUP_OUT];
        LogReader::start(netns, groups, None, Held::default(), |held, group, p| {
            super::keep(held, group == GROUP_IN, p);
            false
        })
        .map(Catcher)
    }

    /// Stops catching and returns the copies, oldest first.
    pub fn finish(self) -> Held {
        self.0.finish()
    }
}

/// Enters the namespace (this thread only) and binds `groups`.
fn open(netns: &Path, groups: &[u16]) -> std::io::Result<OwnedFd> {
    crate::ns::enter_on_this_thread(netns)?;
    // SAFETY: plain socket(2); checked before use.
    let raw = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    })?;
    // SAFETY: a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let size = RECV_BUF as libc::c_int;
    // SAFETY: the option value is a valid c_int. Root may pass the system's limit.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    // SAFETY: sockaddr_nl is plain old data; zero is a valid initial value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: addr is valid for its size.
    check(unsafe {
        libc::bind(
            raw,
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    })?;
    let mut seq = 1;
    for &group in groups {
        request(raw, &nflog::bind(seq, group), seq)?;
        seq += 1;
        request(raw, &nflog::whole_packets(seq, group, 0xffff), seq)?;
        seq += 1;
    }
    Ok(sock)
}

/// Sends one configuration request and waits for its acknowledgement.
fn request(sock: RawFd, msg: &[u8], seq: u32) -> std::io::Result<()> {
    // SAFETY: msg is valid for its length; the kernel is the default destination.
    let n = unsafe { libc::send(sock, msg.as_ptr().cast(), msg.len(), 0) };
    check(n as libc::c_int)?;
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = check(n as libc::c_int)? as usize;
        for m in nflog::parse(&buf[..n]) {
            match m {
                Msg::Ack { seq: s, errno } if s == seq => {
                    return match errno {
                        0 => Ok(()),
                        e => Err(std::io::Error::from_raw_os_error(-e)),
                    };
                }
                _ => {}
            }
        }
    }
}

/// Reads logged packets until `stop` is signalled (then drains what is queued), the
/// deadline passes, or `on_packet` has seen enough.
fn read_until_stopped<T>(
    sock: &OwnedFd,
    stop: RawFd,
    deadline: Option<Instant>,
    state: &mut T,
    on_packet: OnPacket<T>,
) {
    let mut buf = vec![0u8; 1 << 17];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left.as_millis().min(i32::MAX as u128) as i32,
                None => return,
            },
            None => -1,
        };
        // SAFETY: fds is valid for two entries.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait) };
        if r < 0 && last_err().kind() != std::io::ErrorKind::Interrupted {
            tracing::warn!("the packet catcher stopped early: {}", last_err());
            return;
        }
        let stopping = fds[1].revents != 0;
        // Read everything queued; after the stop signal this is the final drain.
        loop {
            match drain_one(sock.as_raw_fd(), &mut buf, state, on_packet) {
                Drained::More => {}
                Drained::Empty => break,
                Drained::Enough => return,
            }
        }
        if stopping {
            return;
        }
    }
}

enum Drained {
    More,
    Empty,
    Enough,
}

/// Reads one datagram without waiting.
fn drain_one<T>(sock: RawFd, buf: &mut [u8], state: &mut T, on_packet: OnPacket<T>) -> Drained {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        // ENOBUFS: the kernel dropped messages it could not queue; TCP resends those.
        if last_err().raw_os_error() == Some(libc::ENOBUFS) {
            tracing::debug!("the packet catcher lost messages the kernel could not queue");
            return Drained::More;
        }
        return Drained::Empty;
    }
    if n == 0 {
        return Drained::Empty;
    }
    for m in nflog::parse(&buf[..n as usize]) {
        if let Msg::Packet { group, payload } = m {
            if on_packet(state, group, payload) {
                return Drained::Enough;
            }
        }
    }
    Drained::More
}
