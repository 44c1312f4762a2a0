//! IPv4 TCP packets as the lock caught them: checked, their checksums made whole again,
//! and cut to the link's size before they go out.

use std::net::Ipv4Addr;

const TCP: u8 = 6;
const RST: u8 = 0x04;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;

/// What ferry needs to know of one caught packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// Length of the IP header.
    pub ip_len: usize,
    /// Length of the TCP header, options included.
    pub tcp_len: usize,
    pub flags: u8,
}

impl TcpPacket {
    pub fn is_reset(&self) -> bool {
        self.flags & RST != 0
    }
}

/// Parses `p` as one whole IPv4 TCP packet, or says no.
pub fn parse(p: &[u8]) -> Option<TcpPacket> {
    parse_as(p, true)
}

/// Parses the headers of an IPv4 TCP packet of which `p` may be only the start.
pub fn parse_headers(p: &[u8]) -> Option<TcpPacket> {
    parse_as(p, false)
}

fn parse_as(p: &[u8], whole: bool) -> Option<TcpPacket> {
    if p.len() < 40 || p[0] >> 4 != 4 {
        return None;
    }
    let ip_len = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let length_ok = if whole {
        total == p.len()
    } else {
        total >= p.len()
    };
    // A fragment cannot be put back alone.
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if ip_len < 20 || !length_ok || p[9] != TCP || frag & 0x3fff != 0 {
        return None;
    }
    let tcp = p.get(ip_len..)?;
    if tcp.len() < 20 {
        return None;
    }
    let tcp_len = usize::from(tcp[12] >> 4) * 4;
    if tcp_len < 20 || tcp_len > tcp.len() {
        return None;
    }
    Some(TcpPacket {
        src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
        dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
        src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        ip_len,
        tcp_len,
        flags: tcp[13],
    })
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Writes both checksums of a packet [`parse`] accepted. A packet caught on its way out
/// carries only the pseudo-header's sum (the card was to finish it), and one the kernel
/// merged on its way in carries its first segment's: either is whole again after this.
pub fn fix_checksums(p: &mut [u8], t: &TcpPacket) {
    p[10] = 0;
    p[11] = 0;
    let ip = fold(sum(&p[..t.ip_len], 0));
    p[10..12].copy_from_slice(&ip.to_be_bytes());
    let tcp_at = t.ip_len;
    p[tcp_at + 16] = 0;
    p[tcp_at + 17] = 0;
    let seg_len = (p.len() - tcp_at) as u32;
    let mut acc = sum(&p[12..20], 0);
    acc += u32::from(TCP) + seg_len;
    let tcp = fold(sum(&p[tcp_at..], acc));
    p[tcp_at + 16..tcp_at + 18].copy_from_slice(&tcp.to_be_bytes());
}

/// Whether both checksums of `p` are right (used by the tests).
pub fn checksums_hold(p: &[u8], t: &TcpPacket) -> bool {
    let mut copy = p.to_vec();
    fix_checksums(&mut copy, t);
    copy == p
}

/// Cuts a packet whose payload exceeds `max_payload` into packets that do not, as the
/// kernel's segmentation would: same headers, sequence numbers advanced, FIN and PSH on
/// the last piece only, IP identifiers counted up, checksums whole.
pub fn segment(p: &[u8], t: &TcpPacket, max_payload: usize) -> Vec<Vec<u8>> {
    let head = t.ip_len + t.tcp_len;
    let payload = &p[head..];
    if payload.len() <= max_payload || max_payload == 0 {
        let mut one = p.to_vec();
        fix_checksums(&mut one, t);
        return vec![one];
    }
    let seq0 = u32::from_be_bytes([
        p[t.ip_len + 4],
        p[t.ip_len + 5],
        p[t.ip_len + 6],
        p[t.ip_len + 7],
    ]);
    let id0 = u16::from_be_bytes([p[4], p[5]]);
    let pieces = payload.chunks(max_payload).count();
    payload
        .chunks(max_payload)
        .enumerate()
        .map(|(i, chunk)| {
            let mut s = Vec::with_capacity(head + chunk.len());
            s.extend_from_slice(&p[..head]);
            s.extend_from_slice(chunk);
            let total = s.len() as u16;
            s[2..4].copy_from_slice(&total.to_be_bytes());
            s[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            let seq = seq0.wrapping_add((i * max_payload) as u32);
            s[t.ip_len + 4..t.ip_len + 8].copy_from_slice(&seq.to_be_bytes());
            if i + 1 < pieces {
                s[t.ip_len + 13] &= !(FIN | PSH);
            }
            fix_checksums(&mut s, t);
            s
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TCP packet from `src` to `dst` with `payload`, checksums whole.
    pub(crate) fn packet(src: [u8; 4], dst: [u8; 4], flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = TCP;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&6379u16.to_be_bytes());
        p[24..28].copy_from_slice(&1000u32.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&512u16.to_be_bytes());
        p.extend_from_slice(payload);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let t = parse(&p).unwrap();
        fix_checksums(&mut p, &t);
        p
    }

    #[test]
    fn parses_a_tcp_packet_and_refuses_what_is_not_one() {
        let p = packet([10, 0, 0, 1], [10, 0, 0, 2], 0x18, b"INCR k\r\n");
        let t = parse(&p).unwrap();
        assert_eq!(t.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            (t.src_port, t.dst_port, t.ip_len, t.tcp_len),
            (40000, 6379, 20, 20)
        );
        assert!(!t.is_reset());
        assert!(
            parse(&p[..p.len() - 1]).is_none(),
            "length disagrees with the header"
        );
        let mut udp = p.clone();
        udp[9] = 17;
        assert!(parse(&udp).is_none());
        let mut frag = p.clone();
        frag[7] = 1;
        assert!(parse(&frag).is_none());
        let mut v6 = p.clone();
        v6[0] = 0x60;
        assert!(parse(&v6).is_none());
        assert!(parse(&[0x45; 12]).is_none());
    }

    #[test]
    fn checksums_are_those_of_rfc_1071() {
        // A known header: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        let mut h = [
            0x45u8, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0,
            0xc7,
        ];
        let c = fold(sum(&h, 0));
        assert_eq!(c, 0xb861);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(fold(sum(&h, 0)), 0);
        let p = packet([10, 0, 0, 1], [10, 0, 0, 2], 0x18, b"odd");
        assert!(checksums_hold(&p, &parse(&p).unwrap()));
        let mut broken = p.clone();
        broken[38] ^= 1;
        assert!(!checksums_hold(&broken, &parse(&broken).unwrap()));
    }

    #[test]
    fn a_large_packet_is_cut_like_the_kernel_would() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let p = packet([10, 0, 0, 2], [10, 0, 0, 1], 0x19, &payload); // ACK PSH FIN
        let t = parse(&p).unwrap();
        let parts = segment(&p, &t, 1400);
        assert_eq!(parts.len(), 3);
        let mut joined = Vec::new();
        for (i, s) in parts.iter().enumerate() {
            let st = parse(s).expect("each piece is a packet");
            assert!(checksums_hold(s, &st));
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 1000 + 1400 * i as u32);
            let last = i == 2;
            assert_eq!(st.flags & (FIN | PSH) != 0, last, "piece {i}");
            joined.extend_from_slice(&s[40..]);
        }
        assert_eq!(joined, payload);
        assert_eq!(segment(&p, &t, 4000).len(), 1);
    }
}
