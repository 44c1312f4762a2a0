//! `pstree.img` (the process tree) and `mm-<pid>.img` (a process's memory areas).

use super::format::{entries, ImageError, Magic};

#[derive(Clone, PartialEq, prost::Message)]
struct PstreeEntry {
    #[prost(uint32, required, tag = "1")]
    pid: u32,
    #[prost(uint32, required, tag = "2")]
    ppid: u32,
    #[prost(uint32, required, tag = "3")]
    pgid: u32,
    #[prost(uint32, required, tag = "4")]
    sid: u32,
    #[prost(uint32, repeated, packed = "false", tag = "5")]
    threads: Vec<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct VmaEntry {
    #[prost(uint64, required, tag = "1")]
    start: u64,
    #[prost(uint64, required, tag = "2")]
    end: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MmEntry {
    #[prost(message, repeated, tag = "14")]
    vmas: Vec<VmaEntry>,
}

/// The pids (as numbered in the images) of the dumped processes, in tree order.
pub fn read_pstree(buf: &[u8], what: &str) -> Result<Vec<u32>, ImageError> {
    let items = entries(buf, Magic::Pstree, what)?;
    let mut pids = Vec::with_capacity(items.len());
    for item in items {
        let e: PstreeEntry = prost::Message::decode(item).map_err(|source| ImageError::Decode {
            what: what.into(),
            source,
        })?;
        pids.push(e.pid);
    }
    if pids.is_empty() {
        return Err(ImageError::Invalid {
            what: what.into(),
            detail: "no process".into(),
        });
    }
    Ok(pids)
}

/// A process's memory areas, `(start, end)`, sorted and checked.
pub fn read_vmas(buf: &[u8], what: &str) -> Result<Vec<(u64, u64)>, ImageError> {
    let items = entries(buf, Magic::Mm, what)?;
    let first = items.first().ok_or_else(|| ImageError::Invalid {
        what: what.into(),
        detail: "no mm entry".into(),
    })?;
    let mm: MmEntry = prost::Message::decode(*first).map_err(|source| ImageError::Decode {
        what: what.into(),
        source,
    })?;
    let mut v: Vec<(u64, u64)> = mm.vmas.iter().map(|e| (e.start, e.end)).collect();
    v.sort_unstable();
    for (s, e) in &v {
        if s >= e || s % 4096 != 0 || e % 4096 != 0 {
            return Err(ImageError::Invalid {
                what: what.into(),
                detail: "a memory area is empty or unaligned".into(),
            });
        }
    }
    if v.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err(ImageError::Invalid {
            what: what.into(),
            detail: "memory areas overlap".into(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::format::write_image;

    #[test]
    fn reads_what_it_writes() {
        let e = PstreeEntry {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            threads: vec![1, 7, 8],
        };
        let e2 = PstreeEntry {
            pid: 12,
            ppid: 1,
            pgid: 1,
            sid: 1,
            threads: vec![12],
        };
        let img = write_image(
            Magic::Pstree,
            &[
                prost::Message::encode_to_vec(&e),
                prost::Message::encode_to_vec(&e2),
            ],
        );
        assert_eq!(read_pstree(&img, "pstree.img").unwrap(), vec![1, 12]);
        let mm = MmEntry {
            vmas: vec![
                VmaEntry {
                    start: 0x2000,
                    end: 0x4000,
                },
                VmaEntry {
                    start: 0x1000,
                    end: 0x2000,
                },
            ],
        };
        let img = write_image(Magic::Mm, &[prost::Message::encode_to_vec(&mm)]);
        assert_eq!(
            read_vmas(&img, "mm-1.img").unwrap(),
            vec![(0x1000, 0x2000), (0x2000, 0x4000)]
        );
        let bad = MmEntry {
            vmas: vec![
                VmaEntry {
                    start: 0x1000,
                    end: 0x3000,
                },
                VmaEntry {
                    start: 0x2000,
                    end: 0x4000,
                },
            ],
        };
        let img = write_image(Magic::Mm, &[prost::Message::encode_to_vec(&bad)]);
        assert!(read_vmas(&img, "mm-1.img").is_err());
    }
}
