//! Reading a running process's memory without the kernel's dirty bits: the regions from
//! `/proc/PID/maps`, the present pages from `/proc/PID/pagemap`, their content from
//! `/proc/PID/mem`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use ferry_proto::precopy::PAGE;

/// A mapping whose pages CRIU would dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// Shared anonymous memory: its pages are shmem, not private.
    pub shared_anon: bool,
}

const SPECIAL: [&str; 4] = ["[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]"];

/// Parses `/proc/PID/maps`: private mappings and shared anonymous ones, without the
/// kernel's own (vdso, vvar, vsyscall).
pub fn parse_maps(text: &str) -> Vec<Region> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3).unwrap_or("");
            let (a, b) = range.split_once('-')?;
            let start = u64::from_str_radix(a, 16).ok()?;
            let end = u64::from_str_radix(b, 16).ok()?;
            if SPECIAL.contains(&path) || end <= start {
                return None;
            }
            let private = perms.as_bytes().get(3) == Some(&b'p');
            let shared_anon = !private && (path.is_empty() || path.starts_with("/dev/zero"));
            (private || shared_anon).then_some(Region {
                start,
                end,
                shared_anon,
            })
        })
        .collect()
}

const PM_PRESENT: u64 = 1 << 63;
const PM_FILE_OR_SHARED: u64 = 1 << 61;

/// Whether a pagemap entry is a page CRIU dumps: present, and private anonymous memory
/// (which includes copied-on-write pages of private file mappings) unless the region is
/// shared anonymous memory.
pub fn dumped(entry: u64, region: &Region) -> bool {
    entry & PM_PRESENT != 0 && (region.shared_anon || entry & PM_FILE_OR_SHARED == 0)
}

/// Pages read per `/proc/PID/mem` call.
const RUN: usize = 256;
/// Pagemap entries read per call.
const PM_BATCH: usize = 16384;

/// One process opened for reading.
#[derive(Debug)]
pub struct ProcessMemory {
    pid: u32,
    pagemap: File,
    mem: File,
}

impl ProcessMemory {
    pub fn open(pid: u32) -> std::io::Result<Self> {
        Ok(Self {
            pid,
            pagemap: File::open(format!("/proc/{pid}/pagemap"))?,
            mem: File::open(format!("/proc/{pid}/mem"))?,
        })
    }

    pub fn regions(&self) -> std::io::Result<Vec<Region>> {
        Ok(parse_maps(&std::fs::read_to_string(format!(
            "/proc/{}/maps",
            self.pid
        ))?))
    }

    /// Calls `f(address, page)` for every dumped page of `region`. Pages that vanish
    /// while reading (the process unmapped them) are skipped. Where the kernel has
    /// `PAGEMAP_SCAN`, only the populated parts of the region are read: a reservation
    /// of a terabyte costs what it holds, not 2 GB of page table entries.
    pub fn for_each_page(
        &self,
        region: &Region,
        buf: &mut Vec<u8>,
        f: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let ranges = super::populated::populated(&self.pagemap, region.start, region.end)
            .unwrap_or_else(|_| vec![(region.start, region.end)]);
        for (start, end) in ranges {
            let part = Region {
                start,
                end,
                shared_anon: region.shared_anon,
            };
            self.pages_of(&part, buf, f)?;
        }
        Ok(())
    }

    fn pages_of(
        &self,
        region: &Region,
        buf: &mut Vec<u8>,
        f: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let pages = ((region.end - region.start) / PAGE as u64) as usize;
        let mut entries = vec![0u8; PM_BATCH.min(pages) * 8];
        buf.resize(RUN * PAGE, 0);
        let mut done = 0usize;
        while done < pages {
            let n = (pages - done).min(PM_BATCH);
            let first = region.start / PAGE as u64 + done as u64;
            let want = &mut entries[..n * 8];
            let got = match self.pagemap.read_at(want, first * 8) {
                Ok(g) => g / 8,
                Err(_) => return Ok(()),
            };
            if got == 0 {
                return Ok(());
            }
            let present: Vec<bool> = want[..got * 8]
                .chunks_exact(8)
                .map(|c| {
                    let mut e = [0u8; 8];
                    e.copy_from_slice(c);
                    dumped(u64::from_le_bytes(e), region)
                })
                .collect();
            let mut i = 0;
            while i < got {
                if !present[i] {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j < got && j - i < RUN && present[j] {
                    j += 1;
                }
                let addr = region.start + ((done + i) * PAGE) as u64;
                let len = (j - i) * PAGE;
                match self.mem.read_at(&mut buf[..len], addr) {
                    Ok(r) if r >= PAGE => {
                        for (k, page) in buf[..r - r % PAGE].chunks_exact(PAGE).enumerate() {
                            f(addr + (k * PAGE) as u64, page)?;
                        }
                    }
                    _ => {}
                }
                i = j;
            }
            done += got;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 1234   /usr/bin/redis-server
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0      [heap]
7f0000000000-7f0000100000 rw-s 00000000 00:01 99     /dev/zero (deleted)
7f0000200000-7f0000300000 rw-s 00000000 08:01 77     /data/file
7f0000400000-7f0000500000 rw-s 00000000 00:00 0
7ffd00000000-7ffd00002000 r--p 00000000 00:00 0      [vvar]
7ffd00002000-7ffd00004000 r-xp 00000000 00:00 0      [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";

    #[test]
    fn maps_keep_private_and_shared_anonymous_memory_only() {
        let r = parse_maps(MAPS);
        assert_eq!(r.len(), 4);
        assert!(!r[0].shared_anon && !r[1].shared_anon);
        assert!(r[2].shared_anon && r[3].shared_anon);
        assert_eq!(r[1].start, 0x55d0c1000000);
    }

    #[test]
    fn only_present_private_pages_are_dumped() {
        let private = Region {
            start: 0,
            end: 4096,
            shared_anon: false,
        };
        let shared = Region {
            shared_anon: true,
            ..private
        };
        assert!(dumped(PM_PRESENT | 42, &private));
        assert!(!dumped(42, &private));
        assert!(!dumped(PM_PRESENT | PM_FILE_OR_SHARED, &private));
        assert!(dumped(PM_PRESENT | PM_FILE_OR_SHARED, &shared));
    }

    #[test]
    fn reads_its_own_memory() {
        let layout = std::alloc::Layout::from_size_align(64 * PAGE, PAGE).unwrap();
        // SAFETY: a non-zero layout; freed below with the same layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        // SAFETY: ptr is valid for 64 pages and owned here.
        let v = unsafe { std::slice::from_raw_parts_mut(ptr, 64 * PAGE) };
        for (i, b) in v.iter_mut().enumerate() {
            *b = (i / PAGE) as u8 + 1;
        }
        let base = ptr as u64;
        let pm = ProcessMemory::open(std::process::id()).unwrap();
        let regions = pm.regions().unwrap();
        let region = regions
            .iter()
            .find(|r| r.start <= base && base < r.end)
            .copied()
            .unwrap();
        let mut seen = 0;
        let mut buf = Vec::new();
        pm.for_each_page(&region, &mut buf, &mut |addr, page| {
            if addr >= base && addr < base + (64 * PAGE) as u64 {
                let idx = ((addr - base) / PAGE as u64) as usize;
                assert_eq!(page[0], idx as u8 + 1);
                seen += 1;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 64);
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(ptr, layout) };
    }
}
