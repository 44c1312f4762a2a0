//! `stats-dump` and `stats-restore`: CRIU's own timings and page counts.

use serde::{Deserialize, Serialize};

use super::format::{entries, ImageError, Magic};

#[derive(Clone, PartialEq, prost::Message)]
struct DumpStatsEntry {
    #[prost(uint32, required, tag = "1")]
    freezing_time: u32,
    #[prost(uint32, required, tag = "2")]
    frozen_time: u32,
    #[prost(uint32, required, tag = "3")]
    memdump_time: u32,
    #[prost(uint32, required, tag = "4")]
    memwrite_time: u32,
    #[prost(uint64, required, tag = "5")]
    pages_scanned: u64,
    #[prost(uint64, required, tag = "6")]
    pages_skipped_parent: u64,
    #[prost(uint64, required, tag = "7")]
    pages_written: u64,
    #[prost(uint32, optional, tag = "8")]
    irmap_resolve: Option<u32>,
    #[prost(uint64, required, tag = "9")]
    pages_lazy: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RestoreStatsEntry {
    #[prost(uint64, required, tag = "1")]
    pages_compared: u64,
    #[prost(uint64, required, tag = "2")]
    pages_skipped_cow: u64,
    #[prost(uint32, required, tag = "3")]
    forking_time: u32,
    #[prost(uint32, required, tag = "4")]
    restore_time: u32,
    #[prost(uint64, optional, tag = "5")]
    pages_restored: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatsEntry {
    #[prost(message, optional, tag = "1")]
    dump: Option<DumpStatsEntry>,
    #[prost(message, optional, tag = "2")]
    restore: Option<RestoreStatsEntry>,
}

pub use ferry_types::{DumpStats, RestoreStats};

/// The content of a `stats-*` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub dump: Option<DumpStats>,
    pub restore: Option<RestoreStats>,
}

impl Stats {
    /// Parses the bytes of a `stats-dump` or `stats-restore` file.
    pub fn parse(buf: &[u8], what: &str) -> Result<Self, ImageError> {
        let items = entries(buf, Magic::Stats, what)?;
        let first = items.first().ok_or_else(|| ImageError::Invalid {
            what: what.to_string(),
            detail: "no statistics entry".into(),
        })?;
        let e: StatsEntry =
            prost::Message::decode(*first).map_err(|source| ImageError::Decode {
                what: what.to_string(),
                source,
            })?;
        Ok(Stats {
            dump: e.dump.map(|d| DumpStats {
                freezing_time_us: d.freezing_time,
                frozen_time_us: d.frozen_time,
                memdump_time_us: d.memdump_time,
                memwrite_time_us: d.memwrite_time,
                pages_scanned: d.pages_scanned,
                pages_skipped_parent: d.pages_skipped_parent,
                pages_written: d.pages_written,
                pages_lazy: d.pages_lazy,
            }),
            restore: e.restore.map(|r| RestoreStats {
                forking_time_us: r.forking_time,
                restore_time_us: r.restore_time,
                pages_compared: r.pages_compared,
                pages_skipped_cow: r.pages_skipped_cow,
                pages_restored: r.pages_restored,
            }),
        })
    }

    /// Reads `path`, which must be a stats file.
    pub fn read(path: &std::path::Path) -> Result<Self, ImageError> {
        let buf = super::read_meta_file(path)?;
        Self::parse(&buf, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of a real `stats-dump` written by CRIU 4.2.1 for a Redis container.
    const DUMP: &[u8] = &[
        0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0x26, 0x00, 0x00, 0x00, 0x0a, 0x24, 0x08,
        0xaf, 0xa0, 0x06, 0x10, 0xc6, 0xe6, 0x06, 0x18, 0xac, 0x3f, 0x20, 0xf7, 0x1e, 0x28, 0xe3,
        0x05, 0x30, 0x00, 0x38, 0xe7, 0x04, 0x40, 0x00, 0x48, 0x00, 0x50, 0x08, 0x58, 0x08, 0x60,
        0x00, 0x68, 0x00, 0x70, 0x00,
    ];
    /// Bytes of a real `stats-restore`.
    const RESTORE: &[u8] = &[
        0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0x0f, 0x00, 0x00, 0x00, 0x12, 0x0d, 0x08,
        0x00, 0x10, 0x00, 0x18, 0x03, 0x20, 0xa9, 0xae, 0x07, 0x28, 0x99, 0x02,
    ];

    #[test]
    fn reads_a_real_dump_stats_file() {
        let s = Stats::parse(DUMP, "stats-dump").unwrap();
        let d = s.dump.unwrap();
        assert_eq!(d.freezing_time_us, 102_447);
        assert_eq!(d.pages_scanned, 739);
        assert_eq!(d.pages_written, 615);
        assert!(s.restore.is_none());
    }

    #[test]
    fn reads_a_real_restore_stats_file() {
        let s = Stats::parse(RESTORE, "stats-restore").unwrap();
        let r = s.restore.unwrap();
        assert_eq!(r.forking_time_us, 3);
        assert_eq!(r.restore_time_us, 120_617);
        assert_eq!(r.pages_restored, Some(281));
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        for cut in 0..DUMP.len() {
            let _ = Stats::parse(&DUMP[..cut], "stats-dump");
        }
        assert!(Stats::parse(&DUMP[..20], "stats-dump").is_err());
    }
}
