//! Sizes of an image directory, for reports.

use std::path::Path;

pub use ferry_types::criu::is_pages_file;
pub use ferry_types::ImageSizes;

/// Measures the image files directly in `dir` (not recursing; CRIU writes a flat set).
pub fn measure(dir: &Path) -> std::io::Result<ImageSizes> {
    let mut s = ImageSizes::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".log") {
            continue;
        }
        s.add(&name, meta.len());
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_pages_separately_and_skips_logs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pages-1.img"), vec![0u8; 8192]).unwrap();
        std::fs::write(d.path().join("core-1.img"), vec![0u8; 100]).unwrap();
        std::fs::write(d.path().join("dump.log"), vec![0u8; 5000]).unwrap();
        let s = measure(d.path()).unwrap();
        assert_eq!(
            s,
            ImageSizes {
                total_bytes: 8292,
                pages_bytes: 8192,
                files: 2
            }
        );
    }
}
