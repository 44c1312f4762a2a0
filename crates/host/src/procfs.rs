//! What `/proc` says about a container's processes and about this host, for the
//! preflight. Parsing is pure and tested on text; reading is best effort (a process
//! that exits meanwhile is simply not there).

use std::path::Path;

use ferry_types::{HostFacts, ProcessFacts};

/// The value of a `Key:` line of `/proc/PID/status` or `/proc/meminfo`, first field.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
}

fn kib(text: &str, key: &str) -> u64 {
    field(text, key)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The address range of a `/proc/PID/maps` or `smaps` header line, and its permissions.
fn range_of(line: &str) -> Option<(u64, &str)> {
    let mut parts = line.split_whitespace();
    let (a, b) = parts.next()?.split_once('-')?;
    let perms = parts.next()?;
    let (a, b) = (
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    );
    Some((b.checked_sub(a)?, perms))
}

/// The largest mappings of a `/proc/PID/smaps` text that a restore charges against the
/// destination's commit limit, bytes: the largest writable private one, and the largest
/// private reservation (not writable), both without `MAP_NORESERVE` (their `VmFlags`
/// lack `nr`). CRIU maps every private area writable to fill it, so a reservation is
/// charged in full unless ferry marks it `MAP_NORESERVE`, which the kernel honours under
/// its heuristic overcommit only.
pub fn largest_committed(smaps: &str) -> (u64, u64) {
    let (mut writable, mut reserved) = (0, 0);
    let mut current: Option<(u64, bool)> = None;
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some((size, w)) = current.take() {
                if !flags.split_whitespace().any(|f| f == "nr") {
                    let largest = if w { &mut writable } else { &mut reserved };
                    *largest = (*largest).max(size);
                }
            }
        } else if let Some((size, perms)) = range_of(line) {
            current = perms
                .ends_with('p')
                .then_some((size, perms.as_bytes().get(1) == Some(&b'w')));
        }
    }
    (writable, reserved)
}

/// File locks `/proc/locks` says `pid` holds (blocked waiters, `->` lines, excluded).
pub fn locks_of(locks: &str, pid: u32) -> u32 {
    locks
        .lines()
        .filter(|l| !l.contains("->"))
        .filter(|l| {
            // "1: POSIX  ADVISORY  WRITE 1234 08:01:123 0 EOF"
            l.split_whitespace()
                .nth(4)
                .and_then(|p| p.parse::<u32>().ok())
                == Some(pid)
        })
        .count() as u32
}

/// Whether any of the descriptors `fds` is an io_uring instance.
fn has_io_uring(fds: &[crate::fds::Fd]) -> bool {
    fds.iter().any(|f| f.target.contains("[io_uring]"))
}

/// One process, from its `status` and `smaps` texts and the host's `/proc/locks`.
pub fn process_from(pid: u32, status: &str, smaps: &str, locks: &str) -> ProcessFacts {
    let (largest_mapping, largest_reservation) = largest_committed(smaps);
    ProcessFacts {
        pid,
        comm: field(status, "Name:").unwrap_or("?").to_string(),
        uid: field(status, "Uid:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        file_locks: locks_of(locks, pid),
        io_uring: false,
        vm_size: kib(status, "VmSize:"),
        largest_mapping,
        largest_reservation,
        rss: kib(status, "VmRSS:"),
        external: Vec::new(),
        devices: Vec::new(),
    }
}

/// The processes `pids`, as `/proc` says now.
pub fn processes(pids: &[u32]) -> Vec<ProcessFacts> {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    // Each process's descriptors, read once for every check that looks at them.
    let tables: Vec<(u32, Vec<crate::fds::Fd>)> =
        pids.iter().map(|&p| (p, crate::fds::of(p))).collect();
    let inside: Vec<crate::ipc::Ends> = tables
        .iter()
        .map(|(pid, fds)| crate::ipc::ends_in(*pid, fds))
        .collect();
    let mut external = crate::ipc::external_of(&inside);
    tables
        .iter()
        .filter_map(|(pid, fds)| {
            let dir = Path::new("/proc").join(pid.to_string());
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let smaps = std::fs::read_to_string(dir.join("smaps")).unwrap_or_default();
            let mut p = process_from(*pid, &status, &smaps, &locks);
            p.io_uring = has_io_uring(fds);
            p.external = external.remove(pid).unwrap_or_default();
            p.devices = crate::devices::unusual_devices(fds);
            Some(p)
        })
        .collect()
}

/// This host, from `/proc/meminfo`, the overcommit setting and root's capabilities.
pub fn host(name: &str, criu_version: Option<String>, lazy_pages: bool) -> HostFacts {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let overcommit = std::fs::read_to_string("/proc/sys/vm/overcommit_memory")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    HostFacts {
        name: name.to_string(),
        criu_version,
        lazy_pages,
        cap_sys_resource: crate::doctor::probe::has_cap_sys_resource(&status),
        overcommit_memory: overcommit,
        mem_total: kib(&meminfo, "MemTotal:"),
        mem_available: kib(&meminfo, "MemAvailable:"),
        swap_total: kib(&meminfo, "SwapTotal:"),
        cpu_check: None,
        missing_paths: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_process_from_its_texts() {
        let status = "Name:\tpostgres\nUid:\t105\t105\t105\t105\nVmSize:\t 8589934592 kB\nVmRSS:\t  102400 kB\n";
        let smaps = "55d0-55e0 r-xp 0 08:01 1 /usr/bin/x\nRss: 4 kB\nVmFlags: rd ex mr mw me\n\
            7f0000000000-7f8000000000 ---p 0 00:00 0\nRss: 0 kB\nVmFlags: mr mw me\n\
            100000000000-200000000000 ---p 0 00:00 0\nVmFlags: mr mw me nr\n\
            300000000000-400000000000 rw-s 0 00:01 7 /dev/zero\nVmFlags: rd wr sh\n";
        let locks = "1: POSIX  ADVISORY  WRITE 42 08:01:123 0 EOF\n1: -> POSIX  ADVISORY  WRITE 43 08:01:123 0 EOF\n2: FLOCK  ADVISORY  WRITE 42 08:01:124 0 EOF\n";
        let p = process_from(42, status, smaps, locks);
        assert_eq!(p.comm, "postgres");
        assert_eq!(p.uid, 105);
        assert_eq!(p.file_locks, 2);
        assert_eq!(p.vm_size, 8 << 40);
        assert_eq!(p.rss, 100 << 20);
        assert_eq!(p.largest_mapping, 0, "nothing writable and private");
        assert_eq!(
            p.largest_reservation, 0x0080_0000_0000,
            "reservations without a commit charge (nr) and shared mappings do not count"
        );
        assert_eq!(locks_of(locks, 43), 0, "a blocked waiter holds nothing");
    }

    #[test]
    fn reads_this_process_and_host() {
        let me = processes(&[std::process::id()]);
        assert_eq!(me.len(), 1);
        assert!(me[0].rss > 0 && me[0].vm_size >= me[0].rss);
        let h = host("h", None, false);
        assert!(h.mem_total > 0 && h.mem_available > 0);
    }
}
