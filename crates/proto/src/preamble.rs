//! The fixed preamble each side sends first, and version negotiation.

use std::sync::atomic::{AtomicU16, Ordering};

use crate::ProtoError;

/// Magic bytes at the start of every ferry connection.
pub const MAGIC: [u8; 8] = *b"FERRY\r\n\x1a";
/// Size of the encoded preamble.
pub const PREAMBLE_LEN: usize = 16;
/// The newest protocol version this build speaks.
pub const VERSION_CURRENT: u16 = 3;
/// The oldest protocol version this build still accepts.
pub const VERSION_MIN: u16 = 3;

/// `MAGIC`, then the highest and the lowest version the sender speaks (little endian),
/// then four reserved zero bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub max_version: u16,
    pub min_version: u16,
}

static SPOKEN_MIN: AtomicU16 = AtomicU16::new(VERSION_MIN);
static SPOKEN_MAX: AtomicU16 = AtomicU16::new(VERSION_CURRENT);

/// Makes this process announce other protocol versions than it speaks (tests: a peer of
/// an incompatible version). Nothing else changes.
pub fn announce_versions(min: u16, max: u16) {
    SPOKEN_MIN.store(min, Ordering::Relaxed);
    SPOKEN_MAX.store(max, Ordering::Relaxed);
}

impl Default for Preamble {
    fn default() -> Self {
        Self {
            max_version: VERSION_CURRENT,
            min_version: VERSION_MIN,
        }
    }
}

impl Preamble {
    /// What this process announces to peers over the network (see
    /// [`announce_versions`]); local control connections always use the real versions.
    pub fn announced() -> Self {
        Self {
            max_version: SPOKEN_MAX.load(Ordering::Relaxed),
            min_version: SPOKEN_MIN.load(Ordering::Relaxed),
        }
    }
}

impl Preamble {
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&self.max_version.to_le_bytes());
        out[10..12].copy_from_slice(&self.min_version.to_le_bytes());
        out
    }

    pub fn decode(buf: &[u8; PREAMBLE_LEN]) -> Result<Self, ProtoError> {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&buf[..8]);
        if magic != MAGIC {
            return Err(ProtoError::BadMagic(magic));
        }
        let max_version = u16::from_le_bytes([buf[8], buf[9]]);
        let min_version = u16::from_le_bytes([buf[10], buf[11]]);
        if min_version > max_version || min_version == 0 {
            return Err(ProtoError::IncompatibleVersion {
                peer_min: min_version,
                peer_max: max_version,
                ours_min: VERSION_MIN,
                ours_max: VERSION_CURRENT,
            });
        }
        Ok(Self {
            max_version,
            min_version,
        })
    }
}

/// The version both sides use: the highest one both speak.
pub fn negotiate(ours: Preamble, peer: Preamble) -> Result<u16, ProtoError> {
    let chosen = ours.max_version.min(peer.max_version);
    if chosen < ours.min_version || chosen < peer.min_version {
        return Err(ProtoError::IncompatibleVersion {
            peer_min: peer.min_version,
            peer_max: peer.max_version,
            ours_min: ours.min_version,
            ours_max: ours.max_version,
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Preamble {
            max_version: 7,
            min_version: 3,
        };
        assert_eq!(Preamble::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut b = Preamble::default().encode();
        b[0] = b'G';
        assert!(matches!(Preamble::decode(&b), Err(ProtoError::BadMagic(_))));
    }

    #[test]
    fn picks_highest_common_version() {
        let ours = Preamble {
            max_version: 3,
            min_version: 1,
        };
        let peer = Preamble {
            max_version: 2,
            min_version: 2,
        };
        assert_eq!(negotiate(ours, peer).unwrap(), 2);
    }

    #[test]
    fn disjoint_ranges_are_incompatible() {
        let ours = Preamble {
            max_version: 2,
            min_version: 1,
        };
        let peer = Preamble {
            max_version: 9,
            min_version: 5,
        };
        let err = negotiate(ours, peer).unwrap_err();
        assert!(err.to_string().contains("incompatible protocol version"));
    }

    #[test]
    fn inverted_range_is_refused() {
        let p = Preamble {
            max_version: 1,
            min_version: 4,
        };
        assert!(Preamble::decode(&p.encode()).is_err());
    }
}
