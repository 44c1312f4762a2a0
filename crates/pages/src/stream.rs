//! Streaming CRIU's memory pages from a local dump to the destination, zero-copy.
//!
//! Before the dump, the source turns `pages-1.img` … `pages-N.img` in the image directory
//! into FIFOs and holds both ends. CRIU's fast local dump path then splices pages into
//! them, and a streamer thread splices them on into the page channel's TCP socket, each
//! chunk behind an 8-byte header (file id, length). The FIFOs' capacity bounds the memory
//! the source needs, whatever the container's size, and a full link slows CRIU down
//! instead of filling a tmpfs. The destination splices each chunk into
//! `pages-<id>.img` on its tmpfs. A header with id [`END`] ends the stream.
//!
//! If the channel breaks, the streamer closes the FIFOs' read ends: CRIU (which ignores
//! SIGPIPE) gets EPIPE, fails the dump cleanly and leaves the container as it was.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// How many `pages-N.img` the source turns into FIFOs. CRIU numbers them from 1, one per
/// process (and shared memory region); higher ids stay regular files and travel later.
pub const FIFOS: u32 = 64;
/// Marks the end of the stream.
pub const END: u32 = u32::MAX;
/// Largest chunk behind one header.
pub const CHUNK: usize = 4 << 20;
const F_SETPIPE_SZ: i32 = 1031;

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn header(id: u32, len: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&id.to_le_bytes());
    h[4..].copy_from_slice(&len.to_le_bytes());
    h
}

/// Writes all of `buf` to a blocking descriptor, with MSG_MORE when data follows.
fn send_all(fd: RawFd, mut buf: &[u8], more: bool) -> std::io::Result<()> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length; fd is a socket.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) };
        if n < 0 {
            let e = last_err();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Moves exactly `len` bytes from `from` to `to` with splice(2).
fn splice_exact(from: RawFd, to: RawFd, mut len: usize) -> std::io::Result<()> {
    while len > 0 {
        // SAFETY: plain splice between two valid descriptors.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE,
            )
        };
        if n < 0 {
            let e = last_err();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stream ended early",
            ));
        }
        len -= n as usize;
    }
    Ok(())
}

/// Where the streamer puts what CRIU writes into the FIFOs.
pub trait FifoSink: Send + 'static {
    /// `len` bytes (at most [`CHUNK`]) are ready to read from FIFO `id`.
    fn chunk(&mut self, id: u32, fifo: RawFd, len: usize) -> std::io::Result<()>;
    /// FIFO `id` ended: CRIU closed it and it is drained.
    fn file_done(&mut self, _id: u32) -> std::io::Result<()> {
        Ok(())
    }
    /// Every FIFO ended.
    fn finish(&mut self) -> std::io::Result<()>;
}

/// The cold stream: each chunk behind an 8-byte header, spliced into the socket.
struct SpliceSink {
    sock: OwnedFd,
}

impl FifoSink for SpliceSink {
    fn chunk(&mut self, id: u32, fifo: RawFd, len: usize) -> std::io::Result<()> {
        let s = self.sock.as_raw_fd();
        send_all(s, &header(id, len as u32), true)?;
        splice_exact(fifo, s, len)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        send_all(self.sock.as_raw_fd(), &header(END, 0), false)
    }
}

struct Fifo {
    id: u32,
    read: OwnedFd,
    /// ferry's own writer, so that the FIFO does not read as ended before CRIU opens it.
    holder: Option<OwnedFd>,
}

fn open_fd(path: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: c is a valid C string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_err());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The FIFOs of one dump, before streaming starts.
pub struct PageFifos {
    fifos: Vec<Fifo>,
    dir: PathBuf,
}

impl std::fmt::Debug for PageFifos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageFifos")
            .field("dir", &self.dir)
            .field("n", &self.fifos.len())
            .finish()
    }
}

impl PageFifos {
    /// Creates `pages-1.img` … `pages-FIFOS.img` as FIFOs in `dir` and opens them.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        let mut fifos = Vec::new();
        for id in 1..=FIFOS {
            let path = dir.join(format!("pages-{id}.img"));
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(std::io::Error::other)?;
            // SAFETY: c is a valid C string.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(last_err());
            }
            let read = open_fd(&path, libc::O_RDONLY | libc::O_NONBLOCK)?;
            let holder = open_fd(&path, libc::O_WRONLY | libc::O_NONBLOCK)?;
            // A larger pipe means fewer wake-ups; if the limit forbids it, 64 KiB works too.
            // SAFETY: fcntl on a valid pipe descriptor.
            unsafe { libc::fcntl(read.as_raw_fd(), F_SETPIPE_SZ, CHUNK as i32) };
            fifos.push(Fifo {
                id,
                read,
                holder: Some(holder),
            });
        }
        Ok(Self {
            fifos,
            dir: dir.to_path_buf(),
        })
    }

    /// Whether `name` is one of the FIFOs (they are streamed, not shipped as files).
    pub fn is_fifo_name(name: &str) -> bool {
        name.strip_prefix("pages-")
            .and_then(|r| r.strip_suffix(".img"))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=FIFOS).contains(&n))
    }

    /// Starts streaming into `sock` on a thread of its own.
    pub fn stream(self, sock: OwnedFd) -> std::io::Result<Streamer> {
        self.stream_to(Box::new(SpliceSink { sock }))
    }

    /// Starts streaming into `sink` on a thread of its own.
    pub fn stream_to(self, sink: Box<dyn FifoSink>) -> std::io::Result<Streamer> {
        let sent = Arc::new(AtomicU64::new(0));
        let dumped = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        // SAFETY: eventfd creates a new descriptor; the result is checked.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(last_err());
        }
        // SAFETY: wake was just created and is owned here.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        let cut_after = Arc::new(AtomicU64::new(u64::MAX));
        let (s, d, c, w) = (sent.clone(), dumped.clone(), cut.clone(), wake.clone());
        let a = cut_after.clone();
        let thread = std::thread::spawn(move || run_streamer(self.fifos, sink, s, d, c, w, a));
        Ok(Streamer {
            sent,
            dumped,
            cut,
            cut_after,
            wake,
            thread: Some(thread),
            dir: self.dir,
        })
    }
}

/// A running streamer.
#[derive(Debug)]
pub struct Streamer {
    sent: Arc<AtomicU64>,
    dumped: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    /// Breaks the stream once this many bytes went (fault injection).
    cut_after: Arc<AtomicU64>,
    /// Wakes the streamer thread out of poll(2).
    wake: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<std::io::Result<u64>>>,
    dir: PathBuf,
}

fn run_streamer(
    mut fifos: Vec<Fifo>,
    mut sink: Box<dyn FifoSink>,
    sent: Arc<AtomicU64>,
    dumped: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
    cut_after: Arc<AtomicU64>,
) -> std::io::Result<u64> {
    let result = (|| -> std::io::Result<u64> {
        loop {
            if cut.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("the page stream was cut"));
            }
            if dumped.load(Ordering::Relaxed) {
                // CRIU is done: drop ferry's writers, so each FIFO ends once drained.
                for f in fifos.iter_mut() {
                    f.holder = None;
                }
            }
            if fifos.is_empty() {
                sink.finish()?;
                return Ok(sent.load(Ordering::Relaxed));
            }
            let mut pfds: Vec<libc::pollfd> = fifos
                .iter()
                .map(|f| libc::pollfd {
                    fd: f.read.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            pfds.push(libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: pfds is a valid array of pollfd for its length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 1000) };
            if n < 0 {
                let e = last_err();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut finished = Vec::new();
            pfds.pop();
            for (i, p) in pfds.iter().enumerate() {
                if p.revents == 0 {
                    continue;
                }
                let fd = fifos[i].read.as_raw_fd();
                let mut avail: libc::c_int = 0;
                // SAFETY: FIONREAD on a pipe writes one int.
                if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut avail) } < 0 {
                    return Err(last_err());
                }
                if avail > 0 {
                    let len = (avail as usize).min(CHUNK);
                    sink.chunk(fifos[i].id, fd, len)?;
                    let total = sent.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
                    if total >= cut_after.load(Ordering::Relaxed) {
                        cut.store(true, Ordering::Relaxed);
                    }
                } else if p.revents & libc::POLLHUP != 0 && fifos[i].holder.is_none() {
                    finished.push(i);
                }
            }
            for i in finished.into_iter().rev() {
                let f = fifos.remove(i);
                sink.file_done(f.id)?;
            }
        }
    })();
    // On failure, closing the read ends makes CRIU's writes fail (EPIPE).
    drop(fifos);
    result
}

impl Streamer {
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// A handle to read progress from another task.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.sent.clone()
    }

    /// Breaks the stream as soon as `bytes` were sent (fault injection): CRIU's next
    /// write then fails.
    pub fn cut_after(&self, bytes: u64) {
        self.cut_after.store(bytes, Ordering::Relaxed);
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to an eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), std::ptr::addr_of!(one).cast(), 8) };
    }

    /// The dump finished: drain what is left, end the stream, and return the bytes sent.
    pub async fn finish(mut self) -> std::io::Result<u64> {
        self.dumped.store(true, Ordering::Relaxed);
        self.wake();
        let t = self.thread.take();
        let r = tokio::task::spawn_blocking(move || match t {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the page streamer panicked"))),
            None => Ok(0),
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        self.remove_fifos();
        r
    }

    /// Stops streaming (the dump failed); CRIU, if still writing, sees EPIPE.
    pub async fn abort(mut self) {
        self.cut.store(true, Ordering::Relaxed);
        self.dumped.store(true, Ordering::Relaxed);
        self.wake();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        self.remove_fifos();
    }

    fn remove_fifos(&self) {
        for id in 1..=FIFOS {
            let p = self.dir.join(format!("pages-{id}.img"));
            if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_file()) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Largest page file the destination accepts from one stream (16 TiB).
const MAX_FILE: u64 = 16 << 40;

/// Receives a page stream from `sock` into `dir/pages-<id>.img`. Returns the bytes
/// received.
pub fn receive(sock: OwnedFd, dir: &Path) -> std::io::Result<u64> {
    let s = sock.as_raw_fd();
    let mut pipe = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_err());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (pr, pw) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    // SAFETY: fcntl on a valid pipe.
    unsafe { libc::fcntl(pw.as_raw_fd(), F_SETPIPE_SZ, CHUNK as i32) };
    let mut files: std::collections::HashMap<u32, (std::fs::File, u64)> =
        std::collections::HashMap::new();
    let mut total = 0u64;
    loop {
        let mut h = [0u8; 8];
        read_exact(s, &mut h)?;
        let id = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if id == END {
            return Ok(total);
        }
        if id == 0 || id > FIFOS || len == 0 || len > CHUNK {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad page chunk header (id {id}, {len} bytes)"),
            ));
        }
        let entry = match files.entry(id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let f = std::fs::File::create(dir.join(format!("pages-{id}.img")))?;
                v.insert((f, 0))
            }
        };
        entry.1 += len as u64;
        if entry.1 > MAX_FILE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "page file too large",
            ));
        }
        let mut left = len;
        while left > 0 {
            let chunk = left.min(CHUNK);
            // SAFETY: splice from the socket into our pipe, then into the file.
            let n = unsafe {
                libc::splice(
                    s,
                    std::ptr::null_mut(),
                    pw.as_raw_fd(),
                    std::ptr::null_mut(),
                    chunk,
                    libc::SPLICE_F_MOVE,
                )
            };
            if n < 0 {
                let e = last_err();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the page stream ended early",
                ));
            }
            splice_exact(pr.as_raw_fd(), entry.0.as_raw_fd(), n as usize)?;
            left -= n as usize;
        }
        total += len as u64;
    }
}

fn read_exact(fd: RawFd, mut buf: &mut [u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = last_err();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the page stream ended early",
            ));
        }
        buf = &mut std::mem::take(&mut buf)[n as usize..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tcp_pair() -> (OwnedFd, OwnedFd) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c.into(), s.into())
    }

    #[tokio::test]
    async fn fifos_stream_into_files_on_the_other_side() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let fifos = PageFifos::create(src.path()).unwrap();
        let (a, b) = tcp_pair();
        let dst_path = dst.path().to_path_buf();
        let receiver = std::thread::spawn(move || receive(b, &dst_path));
        let streamer = fifos.stream(a).unwrap();
        // What CRIU does: open FIFOs for writing and write pages.
        let data1: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        let data3 = vec![7u8; 12_345];
        let (p1, p3) = (
            src.path().join("pages-1.img"),
            src.path().join("pages-3.img"),
        );
        let (d1, d3) = (data1.clone(), data3.clone());
        std::thread::spawn(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p1)
                .unwrap()
                .write_all(&d1)
                .unwrap()
        })
        .join()
        .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p3)
            .unwrap()
            .write_all(&d3)
            .unwrap();
        let sent = streamer.finish().await.unwrap();
        let got = receiver.join().unwrap().unwrap();
        assert_eq!(sent, (data1.len() + data3.len()) as u64);
        assert_eq!(got, sent);
        assert_eq!(
            std::fs::read(dst.path().join("pages-1.img")).unwrap(),
            data1
        );
        assert_eq!(
            std::fs::read(dst.path().join("pages-3.img")).unwrap(),
            data3
        );
        assert!(
            !dst.path().join("pages-2.img").exists(),
            "unused FIFOs send nothing"
        );
        assert!(
            !src.path().join("pages-1.img").exists(),
            "the FIFOs are removed"
        );
    }

    #[tokio::test]
    async fn a_broken_channel_makes_the_writer_fail_instead_of_hanging() {
        let src = tempfile::tempdir().unwrap();
        let fifos = PageFifos::create(src.path()).unwrap();
        let (a, b) = tcp_pair();
        drop(b);
        let streamer = fifos.stream(a).unwrap();
        let p1 = src.path().join("pages-1.img");
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(p1).unwrap();
            let chunk = vec![1u8; 1 << 20];
            for _ in 0..200 {
                if f.write_all(&chunk).is_err() {
                    return true;
                }
            }
            false
        });
        let failed = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        assert!(failed, "the writer saw an error");
        assert!(streamer.finish().await.is_err());
    }

    #[test]
    fn bad_headers_are_refused() {
        let dst = tempfile::tempdir().unwrap();
        let (a, b) = tcp_pair();
        let mut s: std::net::TcpStream = a.into();
        s.write_all(&header(FIFOS + 1, 10)).unwrap();
        assert!(receive(b, dst.path()).is_err());
        assert!(PageFifos::is_fifo_name("pages-1.img"));
        assert!(!PageFifos::is_fifo_name("pages-65.img"));
        assert!(!PageFifos::is_fifo_name("pagemap-1.img"));
    }
}
