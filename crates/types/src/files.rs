//! Files that travel between hosts: the entries of a bundle's file tree.

use serde::{Deserialize, Serialize};

/// One entry of a bundle's root file system, sent before its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the bundle directory; never absolute, never with `..`.
    pub path: String,
    pub kind: FileKind,
    pub mode: u32,
    /// Bytes that follow in `Data` frames (files only).
    #[serde(default)]
    pub size: u64,
    /// Link target (symlinks only).
    #[serde(default)]
    pub target: Option<String>,
    /// Modification time, seconds since the epoch (files only).
    #[serde(default)]
    pub mtime: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

impl FileEntry {
    /// How many bytes follow the entry on the wire.
    pub fn content_len(&self) -> u64 {
        match self.kind {
            FileKind::File => self.size,
            FileKind::Dir | FileKind::Symlink => 0,
        }
    }
}
