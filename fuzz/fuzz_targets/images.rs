//! CRIU's image files as ferry reads them: pagemap, pstree, mm (VMAs), inventory, stats.
#![no_main]

use ferry_criu::images::{read_pagemap, read_pstree, read_vmas, Inventory, Stats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_pagemap(data, "fuzz");
    let _ = read_pstree(data, "fuzz");
    let _ = read_vmas(data, "fuzz");
    let _ = Inventory::parse(data, "fuzz");
    let _ = Stats::parse(data, "fuzz");
});
