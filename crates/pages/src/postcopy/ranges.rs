//! Which pages of a restored process are still missing: a sorted set of runs, each with
//! its current address and its address in the images (they differ after `mremap`).

/// One run of missing pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Current start address in the process.
    pub start: u64,
    /// Exclusive end of the current range.
    pub end: u64,
    /// Where `start` was at dump time (the address the source knows the pages by).
    pub img_start: u64,
}

impl Run {
    fn len(&self) -> u64 {
        self.end - self.start
    }
    fn img_end(&self) -> u64 {
        self.img_start + self.len()
    }
}

/// A piece of an incoming chunk to install: copy `len` bytes from `offset` in the chunk to
/// address `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub dst: u64,
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    runs: Vec<Run>,
}

impl Missing {
    /// Builds the set from the lazy runs of the pagemap, split at memory-area boundaries
    /// (one copy into the process may not cross two areas).
    pub fn from_pagemap(lazy: &[(u64, u64)], vmas: &[(u64, u64)]) -> Self {
        let mut runs = Vec::new();
        for &(start, nr_pages) in lazy {
            let mut s = start;
            // The pagemap came from the peer: an entry past the end of the address
            // space ends there.
            let end = start.saturating_add(nr_pages.saturating_mul(4096));
            for &(vs, ve) in vmas {
                if s >= end {
                    break;
                }
                if ve <= s || vs >= end {
                    continue;
                }
                let a = s.max(vs);
                let b = end.min(ve);
                if a < b {
                    runs.push(Run {
                        start: a,
                        end: b,
                        img_start: a,
                    });
                }
                s = b;
            }
        }
        runs.sort_by_key(|r| r.start);
        Self { runs }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| r.len() / 4096).sum()
    }

    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The missing run holding the current address `addr`.
    pub fn find(&self, addr: u64) -> Option<Run> {
        self.runs
            .iter()
            .copied()
            .find(|r| r.start <= addr && addr < r.end)
    }

    /// Forgets the current range `[start, start+len)` (installed, unmapped or discarded).
    pub fn remove(&mut self, start: u64, len: u64) {
        let end = start + len;
        let mut out = Vec::with_capacity(self.runs.len() + 1);
        for r in self.runs.drain(..) {
            if r.end <= start || r.start >= end {
                out.push(r);
                continue;
            }
            if r.start < start {
                out.push(Run {
                    start: r.start,
                    end: start,
                    img_start: r.img_start,
                });
            }
            if r.end > end {
                out.push(Run {
                    start: end,
                    end: r.end,
                    img_start: r.img_start + (end - r.start),
                });
            }
        }
        self.runs = out;
    }

    /// The process moved `[from, from+len)` to `to` (mremap).
    pub fn remap(&mut self, from: u64, to: u64, len: u64) {
        let end = from + len;
        let mut moved = Vec::new();
        let mut keep = Vec::with_capacity(self.runs.len());
        for r in self.runs.drain(..) {
            if r.end <= from || r.start >= end {
                keep.push(r);
                continue;
            }
            if r.start < from {
                keep.push(Run {
                    start: r.start,
                    end: from,
                    img_start: r.img_start,
                });
            }
            if r.end > end {
                keep.push(Run {
                    start: end,
                    end: r.end,
                    img_start: r.img_start + (end - r.start),
                });
            }
            let a = r.start.max(from);
            let b = r.end.min(end);
            moved.push(Run {
                start: a - from + to,
                end: b - from + to,
                img_start: r.img_start + (a - r.start),
            });
        }
        keep.extend(moved);
        keep.sort_by_key(|r| r.start);
        self.runs = keep;
    }

    /// Where the pages of a chunk (image address `img`, `len` bytes) go, for the parts
    /// still missing.
    pub fn place(&self, img: u64, len: u64) -> Vec<Placement> {
        let img_end = img + len;
        self.runs
            .iter()
            .filter(|r| r.img_start < img_end && r.img_end() > img)
            .map(|r| {
                let a = r.img_start.max(img);
                let b = r.img_end().min(img_end);
                Placement {
                    dst: r.start + (a - r.img_start),
                    offset: a - img,
                    len: b - a,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn runs_split_at_memory_areas() {
        let m = Missing::from_pagemap(&[(0x10000, 8)], &[(0x10000, 0x13000), (0x13000, 0x20000)]);
        assert_eq!(m.runs().len(), 2);
        assert_eq!(m.pages(), 8);
        assert_eq!(m.runs()[0].end, 0x13000);
    }

    #[test]
    fn a_pagemap_entry_past_the_address_space_ends_there() {
        let top = u64::MAX - 0xfff;
        let m = Missing::from_pagemap(&[(top - 0x1000, u64::MAX / 2)], &[(top - 0x1000, top)]);
        assert_eq!(m.runs().len(), 1);
        let m = Missing::from_pagemap(&[(u64::MAX, u64::MAX)], &[(0, 0x1000)]);
        assert!(m.runs().is_empty());
    }

    #[test]
    fn removing_the_middle_splits_a_run() {
        let mut m = Missing::from_pagemap(&[(0x10000, 10)], &[(0, 0x100000)]);
        m.remove(0x10000 + 2 * P, 3 * P);
        assert_eq!(m.pages(), 7);
        assert_eq!(m.runs()[1].img_start, 0x10000 + 5 * P);
        assert!(m.find(0x10000 + 3 * P).is_none());
        assert!(m.find(0x10000 + 6 * P).is_some());
    }

    #[test]
    fn chunks_land_at_the_current_address_after_a_remap() {
        let mut m = Missing::from_pagemap(&[(0x10000, 4)], &[(0, 0x100000)]);
        m.remap(0x10000, 0x90000, 4 * P);
        assert!(m.find(0x10000).is_none());
        let r = m.find(0x90000).unwrap();
        assert_eq!(r.img_start, 0x10000);
        let p = m.place(0x10000 + P, 2 * P);
        assert_eq!(
            p,
            vec![Placement {
                dst: 0x90000 + P,
                offset: 0,
                len: 2 * P
            }]
        );
    }

    #[test]
    fn chunks_skip_what_is_no_longer_missing() {
        let mut m = Missing::from_pagemap(&[(0x10000, 4)], &[(0, 0x100000)]);
        m.remove(0x10000 + P, P);
        let p = m.place(0x10000, 4 * P);
        assert_eq!(
            p,
            vec![
                Placement {
                    dst: 0x10000,
                    offset: 0,
                    len: P
                },
                Placement {
                    dst: 0x10000 + 2 * P,
                    offset: 2 * P,
                    len: 2 * P
                },
            ]
        );
        for pl in &p {
            m.remove(pl.dst, pl.len);
        }
        assert!(m.is_empty());
    }
}
