//! Frame header and payload codec: pure functions over byte slices.

use crate::ProtoError;

/// Size of an encoded frame header.
pub const HEADER_LEN: usize = 12;
/// Largest payload a `Message` frame may carry.
pub const MAX_MESSAGE_PAYLOAD: u32 = 1 << 20;
/// Largest payload a `Data` frame may carry.
pub const MAX_DATA_PAYLOAD: u32 = 4 << 20;

/// What a frame carries. `0` is reserved so that zeroed memory never decodes as a frame.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Invalid = 0,
    /// One JSON-encoded message of the connection's family ([`crate::WireMessage`]).
    Message = 1,
    /// Raw bytes of the transfer announced by the last message.
    Data = 2,
}

impl FrameKind {
    fn from_u16(v: u16) -> Result<Self, ProtoError> {
        match v {
            1 => Ok(Self::Message),
            2 => Ok(Self::Data),
            other => Err(ProtoError::BadKind(other)),
        }
    }

    /// The kind's name, in errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Invalid => "Invalid",
            Self::Message => "Message",
            Self::Data => "Data",
        }
    }

    /// The payload limit enforced at decode time.
    pub fn max_payload(self) -> u32 {
        match self {
            Self::Message => MAX_MESSAGE_PAYLOAD,
            Self::Data => MAX_DATA_PAYLOAD,
            Self::Invalid => 0,
        }
    }
}

/// A decoded, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub len: u32,
    pub crc: u32,
}

impl FrameHeader {
    /// Parses and checks a header: known kind, no reserved flags, length under the cap.
    pub fn parse(buf: &[u8; HEADER_LEN]) -> Result<Self, ProtoError> {
        let kind = FrameKind::from_u16(u16::from_le_bytes([buf[0], buf[1]]))?;
        let flags = u16::from_le_bytes([buf[2], buf[3]]);
        if flags != 0 {
            return Err(ProtoError::BadFlags(flags));
        }
        let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let max = kind.max_payload();
        if len > max {
            return Err(ProtoError::TooLarge {
                kind: kind.name(),
                len,
                max,
            });
        }
        Ok(Self { kind, len, crc })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..2].copy_from_slice(&(self.kind as u16).to_le_bytes());
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..12].copy_from_slice(&self.crc.to_le_bytes());
        out
    }

    /// Checks the payload against the header's checksum.
    pub fn verify(&self, payload: &[u8]) -> Result<(), ProtoError> {
        let actual = crc32fast::hash(payload);
        if actual != self.crc {
            return Err(ProtoError::BadChecksum {
                expected: self.crc,
                actual,
            });
        }
        Ok(())
    }

    /// The header for `payload`.
    pub fn for_payload(kind: FrameKind, payload: &[u8]) -> Result<Self, ProtoError> {
        let max = kind.max_payload();
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        if len > max {
            return Err(ProtoError::TooLarge {
                kind: kind.name(),
                len,
                max,
            });
        }
        Ok(Self {
            kind,
            len,
            crc: crc32fast::hash(payload),
        })
    }
}

/// A whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

/// Appends the encoding of one frame to `out`.
pub fn encode_frame(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let header = FrameHeader::for_payload(kind, payload)?;
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(())
}

/// Decodes one frame from the front of `buf`. Returns `Ok(None)` when more bytes are
/// needed, or the frame and the number of bytes it used.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtoError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(head);
    let header = FrameHeader::parse(&h)?;
    let end = HEADER_LEN + header.len as usize;
    let Some(payload) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    header.verify(payload)?;
    Ok(Some((
        Frame {
            kind: header.kind,
            payload: payload.to_vec(),
        },
        end,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_a_buffer() {
        let mut buf = Vec::new();
        encode_frame(FrameKind::Message, b"{\"type\":\"ping\"}", &mut buf).unwrap();
        encode_frame(FrameKind::Data, &[7u8; 1000], &mut buf).unwrap();
        let (f1, n1) = decode_frame(&buf).unwrap().unwrap();
        assert_eq!(f1.kind, FrameKind::Message);
        let (f2, n2) = decode_frame(&buf[n1..]).unwrap().unwrap();
        assert_eq!(f2.payload, vec![7u8; 1000]);
        assert_eq!(n1 + n2, buf.len());
    }

    #[test]
    fn partial_input_asks_for_more() {
        let mut buf = Vec::new();
        encode_frame(FrameKind::Data, &[1, 2, 3], &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(decode_frame(&buf[..cut]).unwrap().is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let h = FrameHeader {
            kind: FrameKind::Message,
            len: MAX_MESSAGE_PAYLOAD + 1,
            crc: 0,
        };
        let err = FrameHeader::parse(&h.encode()).unwrap_err();
        assert!(matches!(err, ProtoError::TooLarge { .. }));
    }

    #[test]
    fn kind_zero_and_unknown_kinds_are_refused() {
        for k in [0u16, 3, 0xffff] {
            let mut b = [0u8; HEADER_LEN];
            b[..2].copy_from_slice(&k.to_le_bytes());
            assert!(matches!(
                FrameHeader::parse(&b),
                Err(ProtoError::BadKind(_))
            ));
        }
    }

    #[test]
    fn corrupted_payload_fails_the_checksum() {
        let mut buf = Vec::new();
        encode_frame(FrameKind::Data, b"hello", &mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert!(matches!(
            decode_frame(&buf),
            Err(ProtoError::BadChecksum { .. })
        ));
    }

    #[test]
    fn reserved_flags_are_refused() {
        let mut buf = Vec::new();
        encode_frame(FrameKind::Data, b"x", &mut buf).unwrap();
        buf[2] = 1;
        assert!(matches!(decode_frame(&buf), Err(ProtoError::BadFlags(1))));
    }
}
