//! The bundle unpacker: file entries a peer announces, their paths and contents.
#![no_main]

use ferry_types::FileEntry;
use ferry_runtime::manifest::{safe_relative, Unpacker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = safe_relative(s);
    }
    let Ok(entries) = serde_json::from_slice::<Vec<FileEntry>>(data) else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let root = dir.path().join("root");
    let Ok(u) = Unpacker::new(&root) else {
        return;
    };
    for e in entries.iter().take(16) {
        if let Ok(Some(mut f)) = u.begin(e) {
            let _ = f.write(&data[..data.len().min(64)]);
            let _ = f.finish();
        }
    }
    // Nothing may land outside the root.
    for entry in std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        assert_eq!(
            entry.file_name(),
            "root",
            "the unpacker wrote outside its root"
        );
    }
});
