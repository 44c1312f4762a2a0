//! Descriptors passed over Unix sockets (`SCM_RIGHTS`), one per one-byte message: how
//! CRIU's restore hands its userfaultfds to a lazy-pages daemon, and how ferry's agent
//! hands copies of them to its post-copy keeper.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Room for one descriptor's control message.
fn space() -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
}

/// Sends the byte `tag` with a copy of `fd` on the socket `sock`.
pub fn send(sock: RawFd, tag: u8, fd: RawFd) -> std::io::Result<()> {
    let mut byte = [tag];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = vec![0u8; space()];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len() as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one message from `sock`: its byte, and the descriptor that came with it if
/// one did (close-on-exec). `None` when the peer closed the socket.
pub fn recv(sock: RawFd) -> std::io::Result<Option<(u8, Option<OwnedFd>)>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = vec![0u8; space()];
    // SAFETY: msghdr points at live buffers of the lengths given; a descriptor the
    // kernel installed for this process is owned from here on.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len() as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(None);
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        let fd = (!cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS).then(|| {
            OwnedFd::from_raw_fd(std::ptr::read_unaligned(
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
            ))
        });
        Ok(Some((byte[0], fd)))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn a_descriptor_crosses_with_its_byte_and_a_closed_socket_ends_it() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        send(a.as_raw_fd(), b'F', r.as_raw_fd()).unwrap();
        let (tag, fd) = recv(b.as_raw_fd()).unwrap().unwrap();
        assert_eq!(tag, b'F');
        assert_ne!(fd.unwrap().as_raw_fd(), r.as_raw_fd());
        drop(a);
        assert!(recv(b.as_raw_fd()).unwrap().is_none());
    }
}
