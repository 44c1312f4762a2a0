//! The post-copy page channels: fixed 32-byte headers, each followed (for chunks and
//! answers) by page data. Two authenticated connections carry them: the bulk channel
//! (`Chunk`s and `End`, source to destination) and the urgent channel (`Demand`, `Start`
//! and `Done` one way, `Answer`s the other), so that a page a process waits for never
//! queues behind background pages.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | kind (see [`PcKind`]) |
//! | 3 | zero |
//! | 4 | token: which copy of a process the pages are for (a forked copy's has [`FORKED`] set) |
//! | 4 | pid, as numbered in the images |
//! | 4 | number of 4 KiB pages |
//! | 8 | address, as in the images |
//! | 8 | zero |
//!
//! The destination sends `Demand`s for pages a process faulted on (the source answers
//! them at once, even while the restore runs), `Start` once the restore finished (the
//! source then pushes every other page as `Chunk`s, and `End` after the last), and
//! `Done` once every page is in place.

use crate::ProtoError;

pub const PC_HEADER_LEN: usize = 32;
/// Most pages one chunk or demand may cover (4 MiB).
pub const PC_MAX_PAGES: u32 = 1024;
pub const PAGE_SIZE: u64 = 4096;
/// Set in the token of a process copy that forked after the restore. Background chunks
/// go to the restored process, so only what a restored process was answered need not
/// be pushed again.
pub const FORKED: u32 = 1 << 31;

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcKind {
    /// Source → destination: page data follows.
    Chunk = 1,
    /// Source → destination: every page was sent at least once.
    End = 2,
    /// Destination → source: send these pages first.
    Demand = 3,
    /// Destination → source: every page is in place; release the source copy.
    Done = 4,
    /// Source → destination: page data answering a `Demand`.
    Answer = 5,
    /// Destination → source: the restore finished; push the other pages now.
    Start = 6,
    /// Hybrid, source → destination: a chunk as page references (see [`REF_ENTRY`]).
    ChunkRefs = 7,
    /// Hybrid, source → destination: an answer as page references.
    AnswerRefs = 8,
}

/// Hybrid migration: a `ChunkRefs` or `AnswerRefs` header is followed by one entry per
/// page — a tag (1 = the page follows, 2 = the destination holds it) and the page's
/// 16-byte hash — and then, in order, the 4 KiB of each page tagged 1.
pub const REF_ENTRY: usize = 17;
pub const REF_TAG_PAGE: u8 = 1;
pub const REF_TAG_HELD: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcHeader {
    pub kind: PcKind,
    pub token: u32,
    pub pid: u32,
    pub nr_pages: u32,
    pub vaddr: u64,
}

impl PcHeader {
    /// A header that carries no pages: `Start`, `Done`, `End`.
    pub fn control(kind: PcKind) -> Self {
        Self {
            kind,
            token: 0,
            pid: 0,
            nr_pages: 0,
            vaddr: 0,
        }
    }

    pub fn encode(&self) -> [u8; PC_HEADER_LEN] {
        let mut b = [0u8; PC_HEADER_LEN];
        b[0] = self.kind as u8;
        b[4..8].copy_from_slice(&self.token.to_le_bytes());
        b[8..12].copy_from_slice(&self.pid.to_le_bytes());
        b[12..16].copy_from_slice(&self.nr_pages.to_le_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; PC_HEADER_LEN]) -> Result<Self, ProtoError> {
        let bad = |d: &str| ProtoError::BadMessage(format!("post-copy header: {d}"));
        let kind = match b[0] {
            1 => PcKind::Chunk,
            2 => PcKind::End,
            3 => PcKind::Demand,
            4 => PcKind::Done,
            5 => PcKind::Answer,
            6 => PcKind::Start,
            7 => PcKind::ChunkRefs,
            8 => PcKind::AnswerRefs,
            k => return Err(bad(&format!("unknown kind {k}"))),
        };
        if b[1..4] != [0, 0, 0] || b[24..32] != [0u8; 8] {
            return Err(bad("reserved bytes set"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = PcHeader {
            kind,
            token: u32_at(4),
            pid: u32_at(8),
            nr_pages: u32_at(12),
            vaddr: u64::from_le_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        };
        if matches!(
            kind,
            PcKind::Chunk
                | PcKind::Answer
                | PcKind::Demand
                | PcKind::ChunkRefs
                | PcKind::AnswerRefs
        ) {
            if h.nr_pages == 0 || h.nr_pages > PC_MAX_PAGES {
                return Err(bad("page count out of range"));
            }
            if !h.vaddr.is_multiple_of(PAGE_SIZE)
                || h.vaddr
                    .checked_add(u64::from(h.nr_pages) * PAGE_SIZE)
                    .is_none()
            {
                return Err(bad("bad address"));
            }
            if h.pid == 0 {
                return Err(bad("pid 0"));
            }
        }
        Ok(h)
    }

    /// Bytes of page data that follow this header (for reference kinds: the entries;
    /// the pages they announce follow them).
    pub fn data_len(&self) -> usize {
        match self.kind {
            PcKind::Chunk | PcKind::Answer => self.nr_pages as usize * PAGE_SIZE as usize,
            PcKind::ChunkRefs | PcKind::AnswerRefs => self.nr_pages as usize * REF_ENTRY,
            _ => 0,
        }
    }

    /// The plain kind a reference kind stands for.
    pub fn plain_kind(&self) -> PcKind {
        match self.kind {
            PcKind::ChunkRefs => PcKind::Chunk,
            PcKind::AnswerRefs => PcKind::Answer,
            k => k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_nonsense() {
        let h = PcHeader {
            kind: PcKind::Chunk,
            token: 3,
            pid: 1,
            nr_pages: 256,
            vaddr: 0x7f00_0000_0000,
        };
        let b = h.encode();
        assert_eq!(PcHeader::decode(&b).unwrap(), h);
        assert_eq!(h.data_len(), 256 * 4096);
        let mut bad = b;
        bad[0] = 9;
        assert!(PcHeader::decode(&bad).is_err());
        let mut bad = b;
        bad[16] = 1;
        assert!(PcHeader::decode(&bad).is_err(), "unaligned");
        let big = PcHeader {
            nr_pages: PC_MAX_PAGES + 1,
            ..h
        };
        assert!(PcHeader::decode(&big.encode()).is_err());
        let zero = PcHeader { nr_pages: 0, ..h };
        assert!(PcHeader::decode(&zero.encode()).is_err());
        let done = PcHeader {
            kind: PcKind::Done,
            token: 0,
            pid: 0,
            nr_pages: 0,
            vaddr: 0,
        };
        assert_eq!(PcHeader::decode(&done.encode()).unwrap().data_len(), 0);
    }
}
