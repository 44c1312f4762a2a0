//! Delivering held packets inside the namespace where the container now runs.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::packet::{self, TcpPacket};
use super::{Delivered, Held};
use crate::NetError;

/// Hands `held`'s inbound packets to the sockets of the namespace at `netns`, whose
/// address is `local`, and sends its outbound ones on their way. Runs on a thread of its
/// own, because entering a namespace changes the calling thread for good.
pub async fn deliver(netns: &Path, local: Ipv4Addr, held: Held) -> Result<Delivered, NetError> {
    let path: PathBuf = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(deliver_blocking(&path, local, &held));
    });
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the delivering thread ended")))
        .map_err(|source| NetError::Deliver {
            netns: netns.display().to_string(),
            source,
        })
}

fn deliver_blocking(netns: &Path, local: Ipv4Addr, held: &Held) -> std::io::Result<Delivered> {
    crate::ns::enter_on_this_thread(netns)?;
    // IPPROTO_RAW sockets send whole IP packets, headers included.
    // SAFETY: plain socket(2); checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mtu = link_mtu(raw, "eth0").unwrap_or(1500);
    let mut done = Delivered::default();
    for p in &held.inbound {
        match packet::parse(&p.0) {
            Some(t) if t.dst == local => {
                let mut copy = p.0.clone();
                packet::fix_checksums(&mut copy, &t);
                send(sock.as_raw_fd(), &copy, local)?;
                done.inbound += 1;
            }
            _ => done.refused += 1,
        }
    }
    for p in &held.outbound {
        match packet::parse(&p.0) {
            Some(t) if t.src == local && !t.is_reset() => {
                for piece in packet::segment(&p.0, &t, room(mtu, &t)) {
                    send(sock.as_raw_fd(), &piece, t.dst)?;
                }
                done.outbound += 1;
            }
            _ => done.refused += 1,
        }
    }
    Ok(done)
}

/// Payload bytes one packet of `t`'s headers carries on a link of `mtu`.
fn room(mtu: usize, t: &TcpPacket) -> usize {
    mtu.saturating_sub(t.ip_len + t.tcp_len).max(1)
}

fn send(sock: RawFd, p: &[u8], to: Ipv4Addr) -> std::io::Result<()> {
    // SAFETY: sockaddr_in is plain old data; zero is a valid initial value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as u16;
    addr.sin_addr.s_addr = u32::from_ne_bytes(to.octets());
    // SAFETY: p and addr are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            sock,
            p.as_ptr().cast(),
            p.len(),
            0,
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn link_mtu(sock: RawFd, name: &str) -> Option<usize> {
    // SAFETY: ifreq is plain old data; zero is a valid initial value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: req is a valid ifreq with a NUL-terminated name.
    let r = unsafe { libc::ioctl(sock, libc::SIOCGIFMTU, std::ptr::addr_of_mut!(req)) };
    if r != 0 {
        return None;
    }
    // SAFETY: SIOCGIFMTU filled the union's mtu member.
    Some(unsafe { req.ifr_ifru.ifru_mtu } as usize)
}
