//! The pre-copy page stream: blocks of page records on the page channel.
//!
//! During the rounds the source sends pages the destination does not hold yet, each with
//! its content hash; the destination keeps them in a content-addressed store. After the
//! freeze it sends CRIU's final page files as records too: a page the destination holds
//! travels as its hash only (a reference).
//!
//! A block is a 16-byte header and a payload, compressed or not:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | kind (see [`BlockKind`]) |
//! | 1 | flags: bit 0 = payload compressed with zstd |
//! | 2 | zero |
//! | 4 | file id: 0 for round pages, N for `pages-N.img` |
//! | 4 | payload length once decompressed (at most [`MAX_BLOCK`]) |
//! | 4 | payload length on the wire |
//!
//! A payload holds records: tag 1 = page (16-byte hash, 4096 bytes), tag 2 = reference
//! (16-byte hash).

use crate::ProtoError;

pub const BLOCK_HEADER_LEN: usize = 16;
/// Largest payload of one block, decompressed.
pub const MAX_BLOCK: usize = 1 << 20;
pub const PAGE: usize = 4096;
pub const HASH_LEN: usize = 16;
/// A page record's size.
pub const PAGE_RECORD: usize = 1 + HASH_LEN + PAGE;
/// A reference record's size.
pub const REF_RECORD: usize = 1 + HASH_LEN;
const TAG_PAGE: u8 = 1;
const TAG_REF: u8 = 2;
const FLAG_ZSTD: u8 = 1;

/// A page's content hash.
pub type PageHash = u128;

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Page records: round pages (file 0) or part of `pages-N.img` (file N).
    Records = 1,
    /// A round ended; `file` carries the round's number.
    RoundEnd = 2,
    /// `pages-N.img` is complete; `raw_len` carries its number of pages.
    FileEnd = 3,
    /// Nothing follows.
    End = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub kind: BlockKind,
    pub compressed: bool,
    pub file: u32,
    pub raw_len: u32,
    pub wire_len: u32,
}

impl BlockHeader {
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[0] = self.kind as u8;
        b[1] = if self.compressed { FLAG_ZSTD } else { 0 };
        b[4..8].copy_from_slice(&self.file.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.wire_len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; BLOCK_HEADER_LEN]) -> Result<Self, ProtoError> {
        let bad = |d: String| ProtoError::BadMessage(format!("pre-copy block: {d}"));
        let kind = match b[0] {
            1 => BlockKind::Records,
            2 => BlockKind::RoundEnd,
            3 => BlockKind::FileEnd,
            4 => BlockKind::End,
            k => return Err(bad(format!("unknown kind {k}"))),
        };
        if b[1] & !FLAG_ZSTD != 0 || b[2..4] != [0, 0] {
            return Err(bad("reserved bits set".into()));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = BlockHeader {
            kind,
            compressed: b[1] & FLAG_ZSTD != 0,
            file: u32_at(4),
            raw_len: u32_at(8),
            wire_len: u32_at(12),
        };
        if kind == BlockKind::Records {
            if h.raw_len as usize > MAX_BLOCK || h.wire_len as usize > MAX_BLOCK + 4096 {
                return Err(bad(format!("{} bytes is too large", h.raw_len)));
            }
            if !h.compressed && h.raw_len != h.wire_len {
                return Err(bad("uncompressed lengths differ".into()));
            }
        } else if h.wire_len != 0 {
            return Err(bad("a marker block has a payload".into()));
        }
        Ok(h)
    }
}

/// One record of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Page(PageHash, &'a [u8]),
    Ref(PageHash),
}

/// Appends a page record.
pub fn push_page(buf: &mut Vec<u8>, hash: PageHash, page: &[u8]) {
    debug_assert_eq!(page.len(), PAGE);
    buf.push(TAG_PAGE);
    buf.extend_from_slice(&hash.to_le_bytes());
    buf.extend_from_slice(page);
}

/// Appends a reference record.
pub fn push_ref(buf: &mut Vec<u8>, hash: PageHash) {
    buf.push(TAG_REF);
    buf.extend_from_slice(&hash.to_le_bytes());
}

/// Iterates over the records of a decompressed payload, refusing anything malformed.
pub fn records(payload: &[u8]) -> impl Iterator<Item = Result<Record<'_>, ProtoError>> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        let (&tag, tail) = rest.split_first()?;
        let need = match tag {
            TAG_PAGE => HASH_LEN + PAGE,
            TAG_REF => HASH_LEN,
            t => {
                rest = &[];
                return Some(Err(ProtoError::BadMessage(format!(
                    "pre-copy record: unknown tag {t}"
                ))));
            }
        };
        if tail.len() < need {
            rest = &[];
            return Some(Err(ProtoError::BadMessage(
                "pre-copy record: truncated".into(),
            )));
        }
        let mut h = [0u8; HASH_LEN];
        h.copy_from_slice(&tail[..HASH_LEN]);
        let hash = u128::from_le_bytes(h);
        let rec = if tag == TAG_PAGE {
            Record::Page(hash, &tail[HASH_LEN..need])
        } else {
            Record::Ref(hash)
        };
        rest = &tail[need..];
        Some(Ok(rec))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        let h = BlockHeader {
            kind: BlockKind::Records,
            compressed: true,
            file: 3,
            raw_len: 4113,
            wire_len: 40,
        };
        assert_eq!(BlockHeader::decode(&h.encode()).unwrap(), h);
        let mut b = h.encode();
        b[0] = 9;
        assert!(BlockHeader::decode(&b).is_err());
        let mut b = h.encode();
        b[1] = 2;
        assert!(BlockHeader::decode(&b).is_err());
        let big = BlockHeader {
            raw_len: (MAX_BLOCK + 1) as u32,
            ..h
        };
        assert!(BlockHeader::decode(&big.encode()).is_err());
        let plain = BlockHeader {
            compressed: false,
            ..h
        };
        assert!(
            BlockHeader::decode(&plain.encode()).is_err(),
            "lengths must agree"
        );
        let marker = BlockHeader {
            kind: BlockKind::End,
            compressed: false,
            file: 0,
            raw_len: 0,
            wire_len: 5,
        };
        assert!(BlockHeader::decode(&marker.encode()).is_err());
    }

    #[test]
    fn records_round_trip_and_truncation_is_an_error() {
        let page = [7u8; PAGE];
        let mut buf = Vec::new();
        push_page(&mut buf, 42, &page);
        push_ref(&mut buf, 43);
        assert_eq!(buf.len(), PAGE_RECORD + REF_RECORD);
        let got: Vec<_> = records(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![Record::Page(42, &page[..]), Record::Ref(43)]);
        assert!(records(&buf[..buf.len() - 1]).any(|r| r.is_err()));
        assert!(records(&[9u8, 0, 0]).any(|r| r.is_err()));
    }
}
