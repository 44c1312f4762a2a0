//! userfaultfd(2), as the destination's lazy-pages daemon uses it: the descriptors CRIU's
//! restore hands over, the events they deliver, and the ioctls that fill memory.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
const UFFD_EVENT_FORK: u8 = 0x13;
const UFFD_EVENT_REMAP: u8 = 0x14;
const UFFD_EVENT_REMOVE: u8 = 0x15;
const UFFD_EVENT_UNMAP: u8 = 0x16;

// _IOC(dir, 0xAA, nr, size) with dir 2 = read, 3 = read|write.
const UFFDIO_UNREGISTER: libc::c_ulong = 0x8010_AA01;
const UFFDIO_COPY: libc::c_ulong = 0xC028_AA03;
const UFFDIO_ZEROPAGE: libc::c_ulong = 0xC020_AA04;

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct UffdioZeropage {
    range: UffdioRange,
    mode: u64,
    zeropage: i64,
}

/// What a userfaultfd reports. `F` is how a forked child's descriptor is held: a raw
/// number as parsed, an owned descriptor once read from the kernel.
#[derive(Debug)]
pub enum Event<F = OwnedFd> {
    /// A thread touched a missing page and waits for it.
    PageFault {
        address: u64,
    },
    /// The process forked: the child's memory has its own descriptor.
    Fork {
        uffd: F,
    },
    /// The process moved memory (mremap).
    Remap {
        from: u64,
        to: u64,
        len: u64,
    },
    /// The process discarded memory (madvise DONTNEED): it must read back as zeros.
    Remove {
        start: u64,
        end: u64,
    },
    /// The process unmapped memory.
    Unmap {
        start: u64,
        end: u64,
    },
    Other(u8),
}

/// How a copy into the process ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    /// Every byte is in place (some pages may have been there already).
    Done,
    /// The process changed its memory map meanwhile: read its events, then try again.
    Retry { copied: u64 },
    /// The range is no longer mapped.
    Gone,
    /// The process exited.
    Exited,
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(x)
}

/// Parses one `struct uffd_msg` (32 bytes).
pub fn parse_msg(b: &[u8; 32]) -> Event<RawFd> {
    let arg = 8;
    match b[0] {
        UFFD_EVENT_PAGEFAULT => Event::PageFault {
            address: u64_at(b, arg + 8),
        },
        UFFD_EVENT_FORK => {
            let fd = u32::from_le_bytes([b[arg], b[arg + 1], b[arg + 2], b[arg + 3]]) as RawFd;
            Event::Fork { uffd: fd }
        }
        UFFD_EVENT_REMAP => Event::Remap {
            from: u64_at(b, arg),
            to: u64_at(b, arg + 8),
            len: u64_at(b, arg + 16),
        },
        UFFD_EVENT_REMOVE => Event::Remove {
            start: u64_at(b, arg),
            end: u64_at(b, arg + 8),
        },
        UFFD_EVENT_UNMAP => Event::Unmap {
            start: u64_at(b, arg),
            end: u64_at(b, arg + 8),
        },
        other => Event::Other(other),
    }
}

/// Reads one event; `None` when there is none (the descriptor is non-blocking) or the
/// process is gone.
pub fn read_event(fd: RawFd) -> std::io::Result<Option<Event>> {
    let mut b = [0u8; 32];
    // SAFETY: reading at most 32 bytes into a 32-byte buffer.
    let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    if n == 0 {
        return Ok(None);
    }
    if n != 32 {
        return Err(std::io::Error::other("short userfaultfd message"));
    }
    Ok(Some(match parse_msg(&b) {
        Event::Fork { uffd } => Event::Fork {
            // SAFETY: the kernel installed this descriptor in our table with the message
            // it just gave us; nobody else owns it.
            uffd: unsafe { OwnedFd::from_raw_fd(uffd) },
        },
        Event::PageFault { address } => Event::PageFault { address },
        Event::Remap { from, to, len } => Event::Remap { from, to, len },
        Event::Remove { start, end } => Event::Remove { start, end },
        Event::Unmap { start, end } => Event::Unmap { start, end },
        Event::Other(k) => Event::Other(k),
    }))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Copies `data` to address `dst` of the process behind `fd`, skipping pages that are
/// already there.
pub fn copy(fd: &impl AsRawFd, dst: u64, data: &[u8]) -> std::io::Result<Fill> {
    let mut done = 0u64;
    let total = data.len() as u64;
    while done < total {
        let mut c = UffdioCopy {
            dst: dst + done,
            src: data[done as usize..].as_ptr() as u64,
            len: total - done,
            mode: 0,
            copy: 0,
        };
        // SAFETY: the source buffer is valid for `len` bytes; the kernel checks `dst`.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_COPY, &mut c) };
        if r == 0 {
            return Ok(Fill::Done);
        }
        let copied = if c.copy > 0 { c.copy as u64 } else { 0 };
        done += copied;
        match errno() {
            // A page is already there (the process wrote it, or another copy won): skip it.
            libc::EEXIST => done += 4096,
            libc::EAGAIN => return Ok(Fill::Retry { copied: done }),
            libc::ENOENT => return Ok(Fill::Gone),
            libc::ESRCH | libc::ENOSPC => return Ok(Fill::Exited),
            _ => return Err(std::io::Error::last_os_error()),
        }
    }
    Ok(Fill::Done)
}

/// Maps zero pages at `[start, start+len)`; pages already there are fine.
pub fn zeropage(fd: &impl AsRawFd, start: u64, len: u64) -> std::io::Result<Fill> {
    let mut z = UffdioZeropage {
        range: UffdioRange { start, len },
        mode: 0,
        zeropage: 0,
    };
    // SAFETY: plain ioctl on a userfaultfd with a valid argument struct.
    if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_ZEROPAGE, &mut z) } == 0 {
        return Ok(Fill::Done);
    }
    match errno() {
        libc::EEXIST => Ok(Fill::Done),
        libc::EAGAIN => Ok(Fill::Retry { copied: 0 }),
        libc::ENOENT => Ok(Fill::Gone),
        libc::ESRCH | libc::ENOSPC => Ok(Fill::Exited),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Stops handling faults in a range (after the process discarded it).
pub fn unregister(fd: &impl AsRawFd, start: u64, len: u64) -> std::io::Result<()> {
    let r = UffdioRange { start, len };
    // SAFETY: plain ioctl with a valid argument struct.
    if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_UNREGISTER, &r) } == 0 {
        return Ok(());
    }
    match errno() {
        // The process is gone: nothing to unregister.
        libc::ENOMEM | libc::ESRCH | libc::EINVAL => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events() {
        let mut b = [0u8; 32];
        b[0] = UFFD_EVENT_PAGEFAULT;
        b[16..24].copy_from_slice(&0x7f00_0000_1234u64.to_le_bytes());
        assert!(matches!(
            parse_msg(&b),
            Event::PageFault {
                address: 0x7f00_0000_1234
            }
        ));
        b[0] = UFFD_EVENT_REMAP;
        b[8..16].copy_from_slice(&1u64.to_le_bytes());
        b[16..24].copy_from_slice(&2u64.to_le_bytes());
        b[24..32].copy_from_slice(&3u64.to_le_bytes());
        assert!(matches!(
            parse_msg(&b),
            Event::Remap {
                from: 1,
                to: 2,
                len: 3
            }
        ));
        b[0] = UFFD_EVENT_REMOVE;
        assert!(matches!(parse_msg(&b), Event::Remove { start: 1, end: 2 }));
        b[0] = 0x77;
        assert!(matches!(parse_msg(&b), Event::Other(0x77)));
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        let ioc = |dir: u64, nr: u64, size: u64| (dir << 30) | (size << 16) | (0xAA << 8) | nr;
        assert_eq!(UFFDIO_UNREGISTER, ioc(2, 1, 16) as libc::c_ulong);
        assert_eq!(
            UFFDIO_COPY,
            ioc(3, 3, std::mem::size_of::<UffdioCopy>() as u64) as libc::c_ulong
        );
        assert_eq!(
            UFFDIO_ZEROPAGE,
            ioc(3, 4, std::mem::size_of::<UffdioZeropage>() as u64) as libc::c_ulong
        );
    }
}
