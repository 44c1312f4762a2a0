//! The populated parts of an address range, from the kernel's `PAGEMAP_SCAN` (Linux 6.7
//! and newer): a terabyte reserved and untouched is one empty answer instead of 268
//! million page table entries read one by one.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;
const PAGE_IS_PRESENT: u64 = 1 << 3;
/// Regions asked for per call.
const VEC: usize = 512;

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// The ranges of `[start, end)` whose pages are present, in order; an error where the
/// kernel has no `PAGEMAP_SCAN` (the caller then reads the whole range).
pub fn populated(pagemap: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut regions = vec![PageRegion::default(); VEC];
    let mut at = start;
    while at < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            start: at,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: VEC as u64,
            category_mask: PAGE_IS_PRESENT,
            return_mask: PAGE_IS_PRESENT,
            ..Default::default()
        };
        // SAFETY: the kernel writes at most `vec_len` regions into `regions`, and
        // `walk_end` into `arg`, both ours and alive for the call.
        let n = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for r in &regions[..n as usize] {
            match out.last_mut() {
                Some(last) if last.1 == r.start => last.1 = r.end,
                _ => out.push((r.start, r.end)),
            }
        }
        if arg.walk_end <= at {
            break;
        }
        at = arg.walk_end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_touched_pages_of_a_reservation_are_populated() {
        let len = 1usize << 30;
        // SAFETY: a fresh anonymous mapping of our own, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = p as u64;
        // SAFETY: writes inside the mapping.
        unsafe {
            *(p as *mut u8).add(4096 * 3) = 1;
            *(p as *mut u8).add(4096 * 4) = 1;
            *(p as *mut u8).add(len - 4096) = 1;
        }
        let pm = File::open("/proc/self/pagemap").unwrap();
        match populated(&pm, base, base + len as u64) {
            Ok(r) => assert_eq!(
                r,
                vec![
                    (base + 3 * 4096, base + 5 * 4096),
                    (base + len as u64 - 4096, base + len as u64)
                ]
            ),
            Err(e) => eprintln!("skipped: no PAGEMAP_SCAN here ({e})"),
        }
        // SAFETY: unmapping what we mapped.
        unsafe { libc::munmap(p, len) };
    }
}
