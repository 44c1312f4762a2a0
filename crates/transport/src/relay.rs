//! A plaintext descriptor for a TLS stream, for code that moves bytes with splice(2).

use std::os::fd::OwnedFd;

use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

use crate::sockopt::set_int_opt;

/// Buffer of each direction of the relay: large enough that TLS records go out full.
const RELAY_BUF: usize = 1 << 20;

/// Returns one end of a local socket pair, blocking; a task relays the other end to and
/// from `tls` until either side closes. Must be called inside a Tokio runtime.
pub(crate) fn relay(tls: TlsStream<TcpStream>) -> std::io::Result<OwnedFd> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    // Large socket buffers: fewer switches between the page threads and the relay.
    for s in [&ours, &theirs] {
        for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
            set_int_opt(s, libc::SOL_SOCKET, opt, SOCK_BUF);
        }
    }
    theirs.set_nonblocking(true)?;
    let mut theirs = tokio::net::UnixStream::from_std(theirs)?;
    let mut tls = tls;
    // Let whole relay buffers turn into TLS records before they go out, instead of
    // stopping at rustls's default 64 KiB of pending output.
    match &mut tls {
        TlsStream::Client(c) => c.get_mut().1.set_buffer_limit(Some(RELAY_BUF * 2)),
        TlsStream::Server(s) => s.get_mut().1.set_buffer_limit(Some(RELAY_BUF * 2)),
    }
    tokio::spawn(async move {
        if let Err(e) =
            tokio::io::copy_bidirectional_with_sizes(&mut tls, &mut theirs, RELAY_BUF, RELAY_BUF)
                .await
        {
            tracing::debug!("TLS page relay ended: {e}");
        }
    });
    ours.set_nonblocking(false)?;
    Ok(ours.into())
}

const SOCK_BUF: libc::c_int = 4 << 20;
