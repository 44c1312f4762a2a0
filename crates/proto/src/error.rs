use thiserror::Error;

/// Everything that can be wrong with bytes received from a peer.
#[derive(Debug, Error)]
pub enum ProtoError {
    #[error("the peer is not a ferry process (bad magic {0:02x?})")]
    BadMagic([u8; 8]),
    #[error("incompatible protocol version: the peer speaks {peer_min}..={peer_max}, this ferry speaks {ours_min}..={ours_max}; upgrade the older side")]
    IncompatibleVersion {
        peer_min: u16,
        peer_max: u16,
        ours_min: u16,
        ours_max: u16,
    },
    #[error("invalid frame kind {0}")]
    BadKind(u16),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes for {kind} frames")]
    TooLarge {
        /// The frame kind's name.
        kind: &'static str,
        len: u32,
        max: u32,
    },
    #[error("frame checksum mismatch (expected {expected:08x}, got {actual:08x})")]
    BadChecksum { expected: u32, actual: u32 },
    #[error("reserved frame flags set: {0:#x}")]
    BadFlags(u16),
    #[error("malformed message: {0}")]
    BadMessage(String),
    #[error("unexpected message {got} while {state}")]
    Unexpected { got: String, state: String },
}
