//! Gratuitous ARP, sent from inside a container's namespace.
//!
//! After an address moves to another host, peers and bridges still map it to the old
//! port. One broadcast ARP request and reply for the address, sent from its new home,
//! updates their caches and forwarding tables at once instead of after a timeout.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::NetError;

const ETH_P_ARP: u16 = 0x0806;

/// Builds one ARP frame announcing `ip` at `mac` (`op` 1 = request, 2 = reply).
pub fn arp_frame(mac: [u8; 6], ip: Ipv4Addr, op: u16) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    if op == 2 {
        f[32..38].copy_from_slice(&[0xff; 6]);
    }
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Sends a gratuitous ARP request and reply for `ip` on `ifname` in the namespace at
/// `netns`. Runs on a thread of its own, because entering a namespace changes the calling
/// thread for good.
pub async fn send_gratuitous_arp(
    netns: &Path,
    ifname: &str,
    mac: [u8; 6],
    ip: Ipv4Addr,
) -> Result<(), NetError> {
    let netns: PathBuf = netns.to_path_buf();
    let ifname = ifname.to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ns_name = netns.display().to_string();
    std::thread::spawn(move || {
        let _ = tx.send(send_blocking(&netns, &ifname, mac, ip));
    });
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("ARP thread ended")))
        .map_err(|source| NetError::Arp {
            netns: ns_name,
            source,
        })
}

fn send_blocking(netns: &Path, ifname: &str, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    crate::ns::enter_on_this_thread(netns)?;
    let cname = std::ffi::CString::new(ifname).map_err(std::io::Error::other)?;
    // SAFETY: cname is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a freshly created descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain old data; zero is a valid initial value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ARP.to_be();
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for op in [1u16, 2u16] {
        let frame = arp_frame(mac, ip, op);
        // SAFETY: frame and addr are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_matches_rfc_5227_announcements() {
        let mac = [2, 0x42, 10, 77, 1, 10];
        let ip = Ipv4Addr::new(10, 77, 1, 10);
        let req = arp_frame(mac, ip, 1);
        assert_eq!(&req[0..6], &[0xff; 6]);
        assert_eq!(&req[12..14], &[0x08, 0x06]);
        assert_eq!(&req[20..22], &[0, 1]);
        assert_eq!(&req[28..32], &[10, 77, 1, 10]);
        assert_eq!(&req[38..42], &[10, 77, 1, 10]);
        let rep = arp_frame(mac, ip, 2);
        assert_eq!(&rep[20..22], &[0, 2]);
    }
}
