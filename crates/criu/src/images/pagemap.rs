//! `pagemap-*.img`: which virtual ranges of a process have pages, and where they are.

use super::format::{entries, write_image, ImageError, Magic};

#[derive(Clone, PartialEq, prost::Message)]
struct PagemapHead {
    #[prost(uint32, required, tag = "1")]
    pages_id: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PagemapEntryPb {
    #[prost(uint64, required, tag = "1")]
    vaddr: u64,
    #[prost(uint32, required, tag = "2")]
    compat_nr_pages: u32,
    #[prost(bool, optional, tag = "3")]
    in_parent: Option<bool>,
    #[prost(uint32, optional, tag = "4")]
    flags: Option<u32>,
    #[prost(uint64, optional, tag = "5")]
    nr_pages: Option<u64>,
}

/// Pages are in the parent image set.
pub const PE_PARENT: u32 = 1 << 0;
/// Pages may be restored lazily.
pub const PE_LAZY: u32 = 1 << 1;
/// Pages are in this image set's `pages-<id>.img`.
pub const PE_PRESENT: u32 = 1 << 2;

/// One run of pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagemapEntry {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub flags: u32,
}

/// A parsed pagemap image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pagemap {
    pub pages_id: u32,
    pub entries: Vec<PagemapEntry>,
}

impl Pagemap {
    /// Pages stored in this image set's pages file.
    pub fn present_pages(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.flags & PE_PRESENT != 0)
            .map(|e| e.nr_pages)
            .sum()
    }
}

/// Largest number of pages one entry may claim (1 TiB of 4 KiB pages).
const MAX_PAGES_PER_ENTRY: u64 = 1 << 28;

pub fn read_pagemap(buf: &[u8], what: &str) -> Result<Pagemap, ImageError> {
    let items = entries(buf, Magic::Pagemap, what)?;
    let invalid = |detail: &str| ImageError::Invalid {
        what: what.into(),
        detail: detail.into(),
    };
    let (head, rest) = items
        .split_first()
        .ok_or_else(|| invalid("no pagemap head"))?;
    let head: PagemapHead = prost::Message::decode(*head).map_err(|source| ImageError::Decode {
        what: what.into(),
        source,
    })?;
    let mut out = Vec::with_capacity(rest.len());
    for item in rest {
        let e: PagemapEntryPb =
            prost::Message::decode(*item).map_err(|source| ImageError::Decode {
                what: what.into(),
                source,
            })?;
        let nr_pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        if nr_pages == 0 || nr_pages > MAX_PAGES_PER_ENTRY {
            return Err(invalid("an entry has an impossible page count"));
        }
        if !e.vaddr.is_multiple_of(4096) {
            return Err(invalid("an entry is not page aligned"));
        }
        let mut flags = e.flags.unwrap_or(0);
        if e.in_parent == Some(true) {
            flags |= PE_PARENT;
        }
        out.push(PagemapEntry {
            vaddr: e.vaddr,
            nr_pages,
            flags,
        });
    }
    Ok(Pagemap {
        pages_id: head.pages_id,
        entries: out,
    })
}

/// Encodes a pagemap image, as CRIU 4.x writes it.
pub fn write_pagemap(map: &Pagemap) -> Vec<u8> {
    let mut items = vec![prost::Message::encode_to_vec(&PagemapHead {
        pages_id: map.pages_id,
    })];
    for e in &map.entries {
        let pb = PagemapEntryPb {
            vaddr: e.vaddr,
            compat_nr_pages: u32::try_from(e.nr_pages).unwrap_or(u32::MAX),
            in_parent: None,
            flags: Some(e.flags),
            nr_pages: Some(e.nr_pages),
        };
        items.push(prost::Message::encode_to_vec(&pb));
    }
    write_image(Magic::Pagemap, &items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first bytes of a real `pagemap-1.img` (head and two entries).
    const REAL: &[u8] = &[
        0x19, 0x43, 0x56, 0x54, 0x25, 0x40, 0x08, 0x56, 0x04, 0x00, 0x00, 0x00, 0x08, 0x81, 0x80,
        0x04, 0x0e, 0x00, 0x00, 0x00, 0x08, 0x80, 0xc0, 0xc8, 0x97, 0xda, 0xab, 0x15, 0x10, 0x00,
        0x20, 0x04, 0x28, 0x01, 0x0e, 0x00, 0x00, 0x00, 0x08, 0x80, 0xc0, 0xab, 0x98, 0xda, 0xab,
        0x15, 0x10, 0x00, 0x20, 0x04, 0x28, 0x5d,
    ];

    #[test]
    fn reads_a_real_pagemap() {
        let m = read_pagemap(REAL, "pagemap-1.img").unwrap();
        assert_eq!(m.pages_id, 65537);
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.entries[0].nr_pages, 1);
        assert_eq!(m.entries[1].nr_pages, 0x5d);
        assert!(m.entries.iter().all(|e| e.flags == PE_PRESENT));
        assert_eq!(m.present_pages(), 94);
    }

    #[test]
    fn write_then_read_round_trips() {
        let m = Pagemap {
            pages_id: 3,
            entries: vec![
                PagemapEntry {
                    vaddr: 0x1000,
                    nr_pages: 4,
                    flags: PE_PRESENT,
                },
                PagemapEntry {
                    vaddr: 0x9000,
                    nr_pages: 2,
                    flags: PE_PRESENT | PE_LAZY,
                },
            ],
        };
        assert_eq!(read_pagemap(&write_pagemap(&m), "x").unwrap(), m);
    }

    #[test]
    fn refuses_unaligned_and_empty_runs() {
        let bad = Pagemap {
            pages_id: 1,
            entries: vec![PagemapEntry {
                vaddr: 0x1001,
                nr_pages: 1,
                flags: PE_PRESENT,
            }],
        };
        assert!(read_pagemap(&write_pagemap(&bad), "x").is_err());
        let empty = Pagemap {
            pages_id: 1,
            entries: vec![PagemapEntry {
                vaddr: 0x1000,
                nr_pages: 0,
                flags: PE_PRESENT,
            }],
        };
        assert!(read_pagemap(&write_pagemap(&empty), "x").is_err());
    }
}
