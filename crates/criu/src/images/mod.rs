//! CRIU image files, read and written by ferry's own code.
//!
//! An image file is a little-endian `u32` magic (preceded by a common or service magic for
//! most images), then entries, each a `u32` length and a protobuf message. Every length is
//! checked against a cap before anything is allocated, and against the bytes left.

mod format;
mod inventory;
mod pagemap;
pub mod reserve;
mod sizes;
mod stats;
mod tree;
pub mod wire;

pub use format::{entries, write_image, ImageError, Magic, MAX_ENTRY};
pub use inventory::Inventory;
pub use pagemap::{
    read_pagemap, write_pagemap, Pagemap, PagemapEntry, PE_LAZY, PE_PARENT, PE_PRESENT,
};
pub use sizes::{is_pages_file, measure, ImageSizes};
pub use stats::{DumpStats, RestoreStats, Stats};
pub use tree::{read_pstree, read_vmas};

/// Largest image file ferry reads whole (everything except `pages-*.img`).
pub const MAX_META_IMAGE: u64 = 64 << 20;

/// Reads a metadata image file, refusing files over [`MAX_META_IMAGE`].
pub fn read_meta_file(path: &std::path::Path) -> Result<Vec<u8>, ImageError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| ImageError::Io(path.display().to_string(), e))?;
    let mut buf = Vec::new();
    f.take(MAX_META_IMAGE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ImageError::Io(path.display().to_string(), e))?;
    if buf.len() as u64 > MAX_META_IMAGE {
        return Err(ImageError::TooLarge {
            what: path.display().to_string(),
            len: buf.len() as u64,
        });
    }
    Ok(buf)
}
