//! The netfilter log protocol (`nfnetlink_log`), as much as ferry uses: bind a log
//! group, ask for whole packets one by one, read them.

/// The log subsystem of `NETLINK_NETFILTER`.
const SUBSYS_ULOG: u16 = 4;
const MSG_PACKET: u16 = 0;
const MSG_CONFIG: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

const CFG_CMD: u16 = 1;
const CFG_MODE: u16 = 2;
const CFG_TIMEOUT: u16 = 4;
const CFG_QTHRESH: u16 = 5;
const CMD_BIND: u8 = 1;
const COPY_PACKET: u8 = 2;
const ATTR_PAYLOAD: u16 = 9;
/// Attribute types carry two flag bits above their number.
const ATTR_TYPE_MASK: u16 = 0x3fff;

const NLMSG_HDR: usize = 16;
const NFGEN_HDR: usize = 4;

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One configuration request for log group `group`, asking for an acknowledgement.
fn config(seq: u32, group: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = vec![0u8; NLMSG_HDR];
    // nfgenmsg: family unspecified, version 0, the group in network order.
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&group.to_be_bytes());
    for (kind, data) in attrs {
        let len = 4 + data.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(data);
        m.resize(align(m.len()), 0);
    }
    let total = m.len() as u32;
    m[0..4].copy_from_slice(&total.to_ne_bytes());
    m[4..6].copy_from_slice(&((SUBSYS_ULOG << 8) | MSG_CONFIG).to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

/// Binds `group` to the asking socket.
pub(crate) fn bind(seq: u32, group: u16) -> Vec<u8> {
    config(seq, group, &[(CFG_CMD, vec![CMD_BIND])])
}

/// Asks for whole packets up to `range` bytes, each sent at once.
pub(crate) fn whole_packets(seq: u32, group: u16, range: u32) -> Vec<u8> {
    let mut mode = range.to_be_bytes().to_vec();
    mode.extend_from_slice(&[COPY_PACKET, 0]);
    config(
        seq,
        group,
        &[
            (CFG_MODE, mode),
            (CFG_QTHRESH, 1u32.to_be_bytes().to_vec()),
            (CFG_TIMEOUT, 1u32.to_be_bytes().to_vec()),
        ],
    )
}

/// One message read from the socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Msg<'a> {
    /// A logged packet of `group`, from its IP header on.
    Packet {
        group: u16,
        payload: &'a [u8],
    },
    /// The answer to request `seq`: 0, or a negative errno.
    Ack {
        seq: u32,
        errno: i32,
    },
    Other,
}

/// Splits a datagram into its messages; a malformed tail ends the list.
pub(crate) fn parse(buf: &[u8]) -> Vec<Msg<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() >= at + NLMSG_HDR {
        let h = &buf[at..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDR || len > h.len() {
            break;
        }
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let body = &h[NLMSG_HDR..len];
        out.push(match kind {
            NLMSG_ERROR if body.len() >= 4 + NLMSG_HDR => Msg::Ack {
                errno: i32::from_ne_bytes([body[0], body[1], body[2], body[3]]),
                seq: u32::from_ne_bytes([body[12], body[13], body[14], body[15]]),
            },
            k if k == (SUBSYS_ULOG << 8) | MSG_PACKET && body.len() >= NFGEN_HDR => {
                let group = u16::from_be_bytes([body[2], body[3]]);
                match payload_of(&body[NFGEN_HDR..]) {
                    Some(payload) => Msg::Packet { group, payload },
                    None => Msg::Other,
                }
            }
            _ => Msg::Other,
        });
        at += align(len);
    }
    out
}

fn payload_of(mut attrs: &[u8]) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & ATTR_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == ATTR_PAYLOAD {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut a = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(data);
        a.resize(align(a.len()), 0);
        a
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = ((NLMSG_HDR + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m.resize(align(m.len()), 0);
        m
    }

    #[test]
    fn config_requests_are_laid_out_as_the_kernel_reads_them() {
        let b = bind(7, 17920);
        assert_eq!(b.len(), 16 + 4 + 8);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x0401);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 5);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        assert_eq!(&b[18..20], &17920u16.to_be_bytes());
        assert_eq!(&b[20..25], &[5, 0, 1, 0, 1]);
        let w = whole_packets(8, 1, 0xffff);
        // mode (4 + 6, padded to 12), queue threshold (8), timeout (8).
        assert_eq!(w.len(), 16 + 4 + 12 + 8 + 8);
        assert_eq!(&w[24..30], &[0, 0, 0xff, 0xff, 2, 0]);
    }

    #[test]
    fn packets_and_acks_are_read_and_junk_is_not() {
        let mut body = vec![2, 0];
        body.extend_from_slice(&17921u16.to_be_bytes());
        body.extend(attr(1, &[0; 4]));
        body.extend(attr(ATTR_PAYLOAD | 0x4000, b"ip-packet"));
        let mut buf = message(0x0400, &body);
        let mut err = (-1i32).to_ne_bytes().to_vec();
        err.extend_from_slice(&[0; 8]);
        err.extend_from_slice(&9u32.to_ne_bytes());
        err.extend_from_slice(&[0; 4]);
        buf.extend(message(NLMSG_ERROR, &err));
        buf.extend(message(0x0400, &[2, 0, 0, 1, 200, 0])); // attribute longer than itself
        let msgs = parse(&buf);
        assert_eq!(
            msgs,
            vec![
                Msg::Packet {
                    group: 17921,
                    payload: b"ip-packet"
                },
                Msg::Ack { seq: 9, errno: -1 },
                Msg::Other
            ]
        );
        assert!(parse(&[0xff; 40]).is_empty());
        assert!(parse(&buf[..10]).is_empty());
    }
}
