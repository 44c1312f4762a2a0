//! The destination's side of the pre-copy stream: round pages into the store, then the
//! final page files rebuilt from records and references.

use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use ferry_proto::precopy::{records, BlockKind, Record, PAGE};

use super::blocks::{invalid, BlockReader};
use super::store::PageStore;
use crate::stream::FIFOS;

/// The acknowledgement of a round: its number and the pages the store holds.
pub const ACK_LEN: usize = 16;

/// What arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    pub rounds: u32,
    pub round_pages: u64,
    pub final_pages: u64,
    pub final_refs: u64,
    /// Bytes written into the page files.
    pub file_bytes: u64,
    pub wire_bytes: u64,
}

struct PageFile {
    out: BufWriter<std::fs::File>,
    pages: u64,
}

/// Reads the stream until its `End` block. Round pages go into `store`; records for file
/// N are written to `dir/pages-N.img`. `ack` receives each round's acknowledgement.
pub fn receive<R: Read, A: Write>(
    input: R,
    mut ack: A,
    dir: &Path,
    store: &mut PageStore,
) -> std::io::Result<Received> {
    let mut r = BlockReader::new(input)?;
    let mut got = Received::default();
    let mut files: HashMap<u32, PageFile> = HashMap::new();
    let mut ended: Vec<u32> = Vec::new();
    loop {
        let (h, payload) = r.next_block()?;
        match h.kind {
            BlockKind::Records if h.file == 0 => {
                for rec in records(payload) {
                    match rec.map_err(invalid)? {
                        Record::Page(hash, page) => {
                            store.insert(hash, page).map_err(invalid)?;
                            got.round_pages += 1;
                        }
                        Record::Ref(_) => {
                            return Err(invalid("a round carried a page reference"));
                        }
                    }
                }
            }
            BlockKind::Records => {
                if h.file > FIFOS || ended.contains(&h.file) {
                    return Err(invalid(format!("records for page file {}", h.file)));
                }
                let f = match files.entry(h.file) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let path = dir.join(format!("pages-{}.img", h.file));
                        v.insert(PageFile {
                            out: BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?),
                            pages: 0,
                        })
                    }
                };
                for rec in records(payload) {
                    match rec.map_err(invalid)? {
                        Record::Page(hash, page) => {
                            store.insert(hash, page).map_err(invalid)?;
                            f.out.write_all(page)?;
                            got.final_pages += 1;
                        }
                        Record::Ref(hash) => {
                            f.out.write_all(store.get(hash).map_err(invalid)?)?;
                            got.final_refs += 1;
                        }
                    }
                    f.pages += 1;
                }
            }
            BlockKind::RoundEnd => {
                got.rounds = h.file;
                let mut a = [0u8; ACK_LEN];
                a[..8].copy_from_slice(&u64::from(h.file).to_le_bytes());
                a[8..].copy_from_slice(&(store.len() as u64).to_le_bytes());
                ack.write_all(&a)?;
                ack.flush()?;
            }
            BlockKind::FileEnd => {
                let pages = files
                    .remove(&h.file)
                    .map_or(Ok(0), |mut f| f.out.flush().map(|_| f.pages))?;
                if pages != u64::from(h.raw_len) {
                    return Err(invalid(format!(
                        "pages-{}.img has {pages} pages where the source sent {}",
                        h.file, h.raw_len
                    )));
                }
                if pages == 0 {
                    std::fs::File::create(dir.join(format!("pages-{}.img", h.file)))?;
                }
                got.file_bytes += pages * PAGE as u64;
                ended.push(h.file);
            }
            BlockKind::End => {
                if !files.is_empty() {
                    return Err(invalid("the stream ended inside a page file"));
                }
                got.wire_bytes = r.wire_bytes;
                return Ok(got);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precopy::blocks::{BlockWriter, Compress};

    #[test]
    fn rounds_then_files_rebuild_the_pages() {
        let dir = tempfile::tempdir().unwrap();
        let a = vec![1u8; PAGE];
        let b = vec![2u8; PAGE];
        let mut w = BlockWriter::new(Vec::new(), Compress::Zstd).unwrap();
        w.page(0, 1, &a).unwrap();
        w.marker(BlockKind::RoundEnd, 1, 0).unwrap();
        w.reference(1, 1).unwrap();
        w.page(1, 2, &b).unwrap();
        w.reference(1, 2).unwrap();
        w.marker(BlockKind::FileEnd, 1, 3).unwrap();
        w.marker(BlockKind::End, 0, 0).unwrap();
        let bytes = std::mem::take(w.get_mut());
        let mut store = PageStore::new(1 << 30);
        let mut acks = Vec::new();
        let got = receive(&bytes[..], &mut acks, dir.path(), &mut store).unwrap();
        assert_eq!(got.rounds, 1);
        assert_eq!(
            (got.round_pages, got.final_pages, got.final_refs),
            (1, 1, 2)
        );
        assert_eq!(got.file_bytes, 3 * PAGE as u64);
        assert_eq!(acks.len(), ACK_LEN);
        let img = std::fs::read(dir.path().join("pages-1.img")).unwrap();
        assert_eq!(img, [a.clone(), b.clone(), b].concat());
    }

    #[test]
    fn unknown_references_and_short_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::new(Vec::new(), Compress::None).unwrap();
        w.reference(1, 99).unwrap();
        w.marker(BlockKind::End, 0, 0).unwrap();
        let bytes = std::mem::take(w.get_mut());
        let mut store = PageStore::new(1 << 30);
        assert!(receive(&bytes[..], Vec::new(), dir.path(), &mut store).is_err());

        let mut w = BlockWriter::new(Vec::new(), Compress::None).unwrap();
        w.page(2, 5, &[3u8; PAGE]).unwrap();
        w.marker(BlockKind::FileEnd, 2, 2).unwrap();
        let bytes = std::mem::take(w.get_mut());
        let e = receive(&bytes[..], Vec::new(), dir.path(), &mut store).unwrap_err();
        assert!(
            e.to_string().contains("1 pages where the source sent 2"),
            "{e}"
        );

        let mut w = BlockWriter::new(Vec::new(), Compress::None).unwrap();
        w.page(FIFOS + 1, 5, &[3u8; PAGE]).unwrap();
        let bytes = std::mem::take(w.get_mut());
        assert!(receive(&bytes[..], Vec::new(), dir.path(), &mut store).is_err());
    }
}
