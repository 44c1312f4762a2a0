//! Where to connect or listen, and the stream type that covers both kinds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::sockopt::{get_int_opt, set_int_opt};
use crate::TransportError;

/// A TCP address or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = TransportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with('/') || s.starts_with("./") {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        s.parse::<SocketAddr>()
            .map(Endpoint::Tcp)
            .map_err(|_| TransportError::BadEndpoint(s.to_string()))
    }
}

impl Endpoint {
    pub async fn connect(&self) -> Result<Stream, TransportError> {
        let err = |cause| TransportError::Connect {
            endpoint: self.to_string(),
            cause,
        };
        match self {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a).await.map_err(err)?;
                tune_tcp(&s);
                Ok(Stream::Tcp(s))
            }
            Endpoint::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p).await.map_err(err)?)),
        }
    }
}

/// How long sent data may stay unacknowledged, and an idle peer silent, before the
/// connection counts as lost (a cut link, a host gone): 15 s.
const TCP_USER_TIMEOUT_MS: libc::c_int = 15_000;
const KEEPALIVE: [(libc::c_int, libc::c_int); 3] = [
    (libc::TCP_KEEPIDLE, 5),
    (libc::TCP_KEEPINTVL, 2),
    (libc::TCP_KEEPCNT, 5),
];

/// Sets what every ferry TCP connection uses: no Nagle delay, and a lost peer noticed
/// within [`TCP_USER_TIMEOUT_MS`] instead of the kernel's many minutes.
pub fn tune_tcp(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let set = |level, opt, v| set_int_opt(s, level, opt, v);
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    for (opt, v) in KEEPALIVE {
        set(libc::IPPROTO_TCP, opt, v);
    }
    set(
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        TCP_USER_TIMEOUT_MS,
    );
}

/// What a connection carries, for the queues on its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Pages a process waits for: ahead of everything else.
    Urgent,
    /// Pages nobody waits for yet: behind everything else.
    Bulk,
}

impl Traffic {
    /// `SO_PRIORITY` (this host's queues: a `prio` qdisc puts 6 in its first band and 2
    /// in its last) and the DSCP (the network's: EF and CS1).
    fn marks(self) -> (libc::c_int, libc::c_int) {
        match self {
            Traffic::Urgent => (6, 46 << 2),
            Traffic::Bulk => (2, 8 << 2),
        }
    }
}

/// A connected byte stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Mutual TLS over TCP.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// Marks the connection's packets as `t` (nothing on a Unix socket).
    pub fn mark(&self, t: Traffic) {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.get_ref().0.as_raw_fd(),
            Stream::Unix(_) => return,
        };
        // SAFETY: the stream holds `fd` open for the duration of this call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let (priority, tos) = t.marks();
        // IP_TOS sets the priority from the TOS too: the explicit priority comes after.
        set_int_opt(&fd, libc::IPPROTO_IP, libc::IP_TOS, tos);
        set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_PRIORITY, priority);
    }

    /// The uid of the peer process (Unix sockets only).
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            Stream::Unix(u) => u.peer_cred().ok().map(|c| c.uid()),
            Stream::Tcp(_) | Stream::Tls(_) => None,
        }
    }

    /// Turns the stream into a plain blocking descriptor, for the threads that splice
    /// pages. A TLS stream cannot be spliced: its descriptor is one end of a local socket
    /// pair whose other end a relay task encrypts into the TLS stream (and decrypts from
    /// it). Must be called inside a Tokio runtime.
    pub fn into_blocking_fd(self) -> std::io::Result<std::os::fd::OwnedFd> {
        match self {
            Stream::Tls(t) => crate::relay::relay(*t),
            Stream::Tcp(t) => {
                let s = t.into_std()?;
                s.set_nonblocking(false)?;
                Ok(s.into())
            }
            Stream::Unix(u) => {
                let s = u.into_std()?;
                s.set_nonblocking(false)?;
                Ok(s.into())
            }
        }
    }

    /// The reverse of [`Stream::into_blocking_fd`]: a stream again, for the async side.
    /// Must be called inside a Tokio runtime.
    pub fn from_blocking_fd(fd: std::os::fd::OwnedFd) -> std::io::Result<Self> {
        let domain = get_int_opt(&fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
        if domain == libc::AF_UNIX {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(Stream::Unix(UnixStream::from_std(s)?))
        } else {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(Stream::Tcp(TcpStream::from_std(s)?))
        }
    }

    pub fn peer(&self) -> String {
        match self {
            Stream::Tcp(t) => t
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Stream::Tls(t) => t
                .get_ref()
                .0
                .peer_addr()
                .map(|a| format!("{a} (TLS)"))
                .unwrap_or_else(|_| "?".into()),
            Stream::Unix(_) => "local socket".into(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            "10.0.0.1:7070".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("10.0.0.1:7070".parse().unwrap())
        );
        assert_eq!(
            "/run/ferry/agent.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/ferry/agent.sock".into())
        );
        assert!("nowhere".parse::<Endpoint>().is_err());
    }

    fn int_opt(fd: &impl std::os::fd::AsRawFd, level: libc::c_int, opt: libc::c_int) -> i32 {
        get_int_opt(fd, level, opt).unwrap()
    }

    #[tokio::test]
    async fn marks_set_the_priority_and_the_dscp() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        let (a, b) = (Stream::Tcp(a), Stream::Tcp(b));
        a.mark(Traffic::Urgent);
        b.mark(Traffic::Bulk);
        let (Stream::Tcp(a), Stream::Tcp(b)) = (a, b) else {
            unreachable!()
        };
        assert_eq!(int_opt(&a, libc::SOL_SOCKET, libc::SO_PRIORITY), 6);
        assert_eq!(int_opt(&a, libc::IPPROTO_IP, libc::IP_TOS), 0xb8);
        assert_eq!(int_opt(&b, libc::SOL_SOCKET, libc::SO_PRIORITY), 2);
        assert_eq!(int_opt(&b, libc::IPPROTO_IP, libc::IP_TOS), 0x20);
    }
}
