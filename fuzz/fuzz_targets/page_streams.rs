//! The page channels: post-copy headers and reference entries, pre-copy blocks and the
//! destination's receiver that rebuilds page files from them.
#![no_main]

use ferry_pages::precopy::receive::receive;
use ferry_pages::precopy::refs::{expand, pages_following};
use ferry_pages::precopy::store::PageStore;
use ferry_proto::postcopy::{PcHeader, PC_HEADER_LEN};
use ferry_proto::precopy::{records, BlockHeader, BLOCK_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = <[u8; PC_HEADER_LEN]>::try_from(data.get(..PC_HEADER_LEN).unwrap_or(&[])) {
        let _ = PcHeader::decode(&h);
    }
    if let Ok(h) = <[u8; BLOCK_HEADER_LEN]>::try_from(data.get(..BLOCK_HEADER_LEN).unwrap_or(&[])) {
        let _ = BlockHeader::decode(&h);
    }
    for r in records(data).take(1000) {
        if r.is_err() {
            break;
        }
    }
    let store = PageStore::new(1 << 20);
    if pages_following(data).is_ok() {
        let _ = expand(&store, data, &[]);
    }
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let mut store = PageStore::new(16 << 20);
    let _ = receive(data, std::io::sink(), dir.path(), &mut store);
});
