//! Which image a magic number names, the message type of its entries, and the raw data
//! that follows an entry in some images. The numbers are CRIU's image format.

use super::tree::Message;

pub const TCP_STREAM: u32 = 0x5146_5506;
const PAGEMAP: u32 = 0x5608_4025;
const PIPES_DATA: u32 = 0x5645_3709;
const FIFO_DATA: u32 = 0x5933_3054;
const SK_QUEUES: u32 = 0x5626_4026;
const BPFMAP_DATA: u32 = 0x6432_4033;
const GHOST_FILE: u32 = 0x5258_3605;

/// (magic, name, entry type); an empty type: entries shown by field number.
const MAGICS: &[(u32, &str, &str)] = &[
    (0x5831_3116, "INVENTORY", "inventory_entry"),
    (0x5027_3030, "PSTREE", "pstree_entry"),
    (0x5621_3732, "FDINFO", "fdinfo_entry"),
    (PAGEMAP, "PAGEMAP", "pagemap_entry"),
    (0x5505_3847, "CORE", "core_entry"),
    (0x5443_2030, "IDS", "task_kobj_ids_entry"),
    (0x5412_3737, "VMAS", "vma_entry"),
    (0x5651_3555, "PIPES", "pipe_entry"),
    (PIPES_DATA, "PIPES_DATA", "pipe_data_entry"),
    (0x5836_4939, "FIFO", "fifo_entry"),
    (FIFO_DATA, "FIFO_DATA", "pipe_data_entry"),
    (0x5534_4201, "SIGACT", "sa_entry"),
    (0x5437_3943, "UNIXSK", "unix_sk_entry"),
    (0x5644_3851, "INETSK", "inet_sk_entry"),
    (0x6045_4618, "PACKETSK", ""),
    (0x5746_4056, "ITIMERS", "itimer_entry"),
    (0x5260_3957, "POSIX_TIMERS", "posix_timer_entry"),
    (SK_QUEUES, "SK_QUEUES", "sk_packet_entry"),
    (0x5447_3203, "UTSNS", ""),
    (0x5402_3547, "CREDS", "creds_entry"),
    (0x5311_5007, "IPC_VAR", ""),
    (0x4628_3044, "IPCNS_SHM", ""),
    (0x5545_3737, "IPCNS_MSG", ""),
    (0x5957_3019, "IPCNS_SEM", ""),
    (0x5036_3636, "REG_FILES", "reg_file_entry"),
    (0x5925_5641, "EXT_FILES", "ext_file_entry"),
    (0x5140_3912, "FS", ""),
    (0x5749_2820, "MM", "mm_entry"),
    (0x5913_3954, "REMAP_FPATH", ""),
    (GHOST_FILE, "GHOST_FILE", "ghost_file_entry"),
    (TCP_STREAM, "TCP_STREAM", "tcp_stream_entry"),
    (0x4452_3722, "EVENTFD_FILE", "eventfd_file_entry"),
    (0x4502_3858, "EVENTPOLL_FILE", "eventpoll_file_entry"),
    (0x4443_3746, "EVENTPOLL_TFD", "eventpoll_tfd_entry"),
    (0x5732_3820, "SIGNALFD", "signalfd_entry"),
    (0x4842_4431, "INOTIFY_FILE", ""),
    (0x5456_2009, "INOTIFY_WD", ""),
    (0x5556_3928, "MNTS", ""),
    (0x5737_3951, "NETDEV", ""),
    (0x5593_3752, "NETNS", ""),
    (0x5943_3025, "TTY_FILES", "tty_file_entry"),
    (0x5945_3036, "TTY_INFO", "tty_info_entry"),
    (0x5941_3026, "TTY_DATA", "tty_data_entry"),
    (0x5432_3616, "FILE_LOCKS", ""),
    (0x5711_3925, "RLIMIT", "rlimit_entry"),
    (0x5509_6122, "FANOTIFY_FILE", ""),
    (0x5650_6035, "FANOTIFY_MARK", ""),
    (0x5925_5647, "SIGNAL", "siginfo_entry"),
    (0x5800_5614, "NETLINK_SK", "netlink_sk_entry"),
    (0x6139_4011, "NS_FILES", "ns_file_entry"),
    (0x5714_3751, "TUNFILE", ""),
    (0x5938_3330, "CGROUP", ""),
    (0x5049_3712, "TIMERFD", "timerfd_entry"),
    (0x6140_4013, "CPUINFO", ""),
    (0x5547_4906, "USERNS", ""),
    (0x6441_3049, "SECCOMP", ""),
    (0x6734_3323, "BINFMT_MISC", ""),
    (0x4935_3943, "AUTOFS", ""),
    (0x5630_3138, "FILES", "file_entry"),
    (0x4845_3499, "MEMFD_INODE", "memfd_inode_entry"),
    (0x4311_4433, "TIMENS", ""),
    (0x6115_7326, "PIDNS", ""),
    (0x5750_6142, "BPFMAP_FILE", ""),
    (BPFMAP_DATA, "BPFMAP_DATA", "bpfmap_data_entry"),
    (0x5942_3047, "APPARMOR", ""),
    (0x5443_5556, "PIDFD", ""),
    (0x5709_3306, "STATS", "stats_entry"),
    (0x5700_4059, "IRMAP_CACHE", ""),
];

pub fn magic_name(magic: u32) -> String {
    MAGICS
        .iter()
        .find(|m| m.0 == magic)
        .map(|m| m.1.to_string())
        .unwrap_or_else(|| format!("{magic:#010x}"))
}

/// The message type of entry `index` of an image with `magic`.
pub fn entry_type(magic: u32, index: usize) -> Option<&'static str> {
    if magic == PAGEMAP && index == 0 {
        return Some("pagemap_head");
    }
    MAGICS
        .iter()
        .find(|m| m.0 == magic)
        .map(|m| m.2)
        .filter(|t| !t.is_empty())
}

/// How many raw bytes follow `entry` in an image with `magic`; none when the rest of the
/// file is not a sequence of entries (a ghost file's contents).
pub fn payload_len(magic: u32, entry: &Message) -> Option<u64> {
    let f = |n| entry.varint(n).unwrap_or(0);
    match magic {
        TCP_STREAM => Some(f(1) + f(3)),
        PIPES_DATA | FIFO_DATA | SK_QUEUES => Some(f(2)),
        BPFMAP_DATA => Some(f(2) + f(3)),
        GHOST_FILE => None,
        _ => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::Magic;

    #[test]
    fn agrees_with_the_magics_ferry_already_reads() {
        for m in [
            Magic::Inventory,
            Magic::Stats,
            Magic::Pagemap,
            Magic::Pstree,
            Magic::Mm,
        ] {
            assert!(entry_type(m.value(), 1).is_some(), "{m:?}");
        }
        assert_eq!(entry_type(PAGEMAP, 0), Some("pagemap_head"));
        assert_eq!(magic_name(0x1234), "0x00001234");
    }

    #[test]
    fn every_entry_type_is_in_the_schema() {
        let s = super::super::schema::Schema::criu();
        for (_, name, ty) in MAGICS {
            assert!(ty.is_empty() || s.message(ty).is_some(), "{name}: {ty}");
        }
    }
}
