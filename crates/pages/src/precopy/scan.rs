//! One pre-copy round at the source: read every dumped page of the container's
//! processes, hash it, and send the pages the destination does not hold yet.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use ferry_proto::precopy::{PageHash, PAGE};

use super::blocks::BlockWriter;
use super::hash::PageHasher;
use super::memory::ProcessMemory;

/// What one round found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundCounts {
    pub scanned: u64,
    pub changed: u64,
    pub sent: u64,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("held", &self.held.len())
            .finish()
    }
}

pub struct Scanner {
    pub hasher: PageHasher,
    /// Hashes of every page the destination holds.
    pub held: HashSet<PageHash>,
    /// Each page's hash in the previous round, by process and address.
    last: HashMap<(u32, u64), PageHash>,
    buf: Vec<u8>,
}

impl Scanner {
    pub fn new(hasher: PageHasher) -> Self {
        Self {
            hasher,
            held: HashSet::new(),
            last: HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// Scans `pids` and sends what is new as round records. A process that exits
    /// meanwhile is skipped (the dump will not see it either).
    pub fn round<W: Write>(
        &mut self,
        pids: &[u32],
        writer: &mut BlockWriter<W>,
    ) -> std::io::Result<RoundCounts> {
        let mut c = RoundCounts::default();
        let mut seen: HashMap<(u32, u64), PageHash> = HashMap::with_capacity(self.last.len());
        for &pid in pids {
            let Ok(pm) = ProcessMemory::open(pid) else {
                continue;
            };
            let Ok(regions) = pm.regions() else {
                continue;
            };
            let mut buf = std::mem::take(&mut self.buf);
            for region in &regions {
                let (hasher, held, last) = (&self.hasher, &mut self.held, &self.last);
                pm.for_each_page(region, &mut buf, &mut |addr, page| {
                    let h = hasher.hash(page);
                    c.scanned += PAGE as u64;
                    if last.get(&(pid, addr)) != Some(&h) {
                        c.changed += PAGE as u64;
                    }
                    seen.insert((pid, addr), h);
                    if held.insert(h) {
                        writer.page(0, h, page)?;
                        c.sent += PAGE as u64;
                    }
                    Ok(())
                })?;
            }
            self.buf = buf;
        }
        self.last = seen;
        Ok(c)
    }
}
