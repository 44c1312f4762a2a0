//! What CRIU's images and statistics say, as reports carry it (`ferry-criu` reads them).

use serde::{Deserialize, Serialize};

/// CRIU's dump statistics. Times are in microseconds, as CRIU records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpStats {
    pub freezing_time_us: u32,
    pub frozen_time_us: u32,
    pub memdump_time_us: u32,
    pub memwrite_time_us: u32,
    pub pages_scanned: u64,
    pub pages_skipped_parent: u64,
    pub pages_written: u64,
    pub pages_lazy: u64,
}

/// CRIU's restore statistics. Times are in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreStats {
    pub forking_time_us: u32,
    pub restore_time_us: u32,
    pub pages_compared: u64,
    pub pages_skipped_cow: u64,
    pub pages_restored: Option<u64>,
}

/// How much a checkpoint weighs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSizes {
    /// All image files, pages included (logs excluded).
    pub total_bytes: u64,
    /// `pages-*.img` only.
    pub pages_bytes: u64,
    /// Number of image files.
    pub files: u64,
}

impl ImageSizes {
    /// Counts one file.
    pub fn add(&mut self, name: &str, len: u64) {
        self.files += 1;
        self.total_bytes += len;
        if is_pages_file(name) {
            self.pages_bytes += len;
        }
    }
}

/// Whether `name` is a raw pages file.
pub fn is_pages_file(name: &str) -> bool {
    name.starts_with("pages-") && name.ends_with(".img")
}
