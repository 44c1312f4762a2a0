//! The framing shared by all protobuf image files.

use thiserror::Error;

/// Images written by CRIU for a process tree start with this, then their own magic.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// Service files (`stats-*`, `irmap-cache`) start with this, then their own magic.
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// Largest single entry ferry accepts.
pub const MAX_ENTRY: u32 = 16 << 20;

/// The image types ferry reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    Inventory,
    Stats,
    Pagemap,
    Pstree,
    Mm,
}

impl Magic {
    pub fn value(self) -> u32 {
        match self {
            Magic::Inventory => 0x5831_3116,
            Magic::Stats => 0x5709_3306,
            Magic::Pagemap => 0x5608_4025,
            Magic::Pstree => 0x5027_3030,
            Magic::Mm => 0x5749_2820,
        }
    }

    /// The prefix magic written before this image's own magic, if any.
    fn head(self) -> Option<u32> {
        match self {
            Magic::Inventory => None,
            Magic::Stats => Some(IMG_SERVICE_MAGIC),
            Magic::Pagemap | Magic::Pstree | Magic::Mm => Some(IMG_COMMON_MAGIC),
        }
    }
}

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("cannot read {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{what} is not a CRIU {expected:?} image (magic {found:#010x})")]
    BadMagic {
        what: String,
        expected: Magic,
        found: u32,
    },
    #[error("{what} is truncated")]
    Truncated { what: String },
    #[error("{what} has an entry of {len} bytes, over the limit")]
    EntryTooLarge { what: String, len: u32 },
    #[error("{what} is {len} bytes, over the limit for a metadata image")]
    TooLarge { what: String, len: u64 },
    #[error("{what} has a malformed entry: {source}")]
    Decode {
        what: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Checks the magic of `buf` and returns its entries' payloads.
pub fn entries<'a>(buf: &'a [u8], magic: Magic, what: &str) -> Result<Vec<&'a [u8]>, ImageError> {
    let truncated = || ImageError::Truncated {
        what: what.to_string(),
    };
    let mut at = 0;
    if let Some(head) = magic.head() {
        let found = read_u32(buf, at).ok_or_else(truncated)?;
        if found != head {
            return Err(ImageError::BadMagic {
                what: what.to_string(),
                expected: magic,
                found,
            });
        }
        at += 4;
    }
    let found = read_u32(buf, at).ok_or_else(truncated)?;
    if found != magic.value() {
        return Err(ImageError::BadMagic {
            what: what.to_string(),
            expected: magic,
            found,
        });
    }
    at += 4;
    let mut out = Vec::new();
    while at < buf.len() {
        let len = read_u32(buf, at).ok_or_else(truncated)?;
        if len > MAX_ENTRY {
            return Err(ImageError::EntryTooLarge {
                what: what.to_string(),
                len,
            });
        }
        at += 4;
        let end = at.checked_add(len as usize).ok_or_else(truncated)?;
        out.push(buf.get(at..end).ok_or_else(truncated)?);
        at = end;
    }
    Ok(out)
}

/// Encodes an image file: magic(s), then each encoded entry with its length.
pub fn write_image(magic: Magic, encoded_entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(head) = magic.head() {
        out.extend_from_slice(&head.to_le_bytes());
    }
    out.extend_from_slice(&magic.value().to_le_bytes());
    for body in encoded_entries {
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_wrong_magic() {
        let buf = [0u8; 12];
        assert!(matches!(
            entries(&buf, Magic::Stats, "x"),
            Err(ImageError::BadMagic { .. })
        ));
    }

    #[test]
    fn refuses_oversized_entry_without_allocating() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&Magic::Inventory.value().to_le_bytes());
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            entries(&buf, Magic::Inventory, "x"),
            Err(ImageError::EntryTooLarge { .. })
        ));
    }

    #[test]
    fn refuses_truncated_entry() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&Magic::Inventory.value().to_le_bytes());
        buf.extend_from_slice(&10u32.to_le_bytes());
        buf.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            entries(&buf, Magic::Inventory, "x"),
            Err(ImageError::Truncated { .. })
        ));
    }

    #[test]
    fn empty_image_has_no_entries() {
        let buf = Magic::Inventory.value().to_le_bytes();
        assert!(entries(&buf, Magic::Inventory, "x").unwrap().is_empty());
    }
}
