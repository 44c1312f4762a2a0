//! Group files as `ferry migrate --group` reads them.
#![no_main]

use ferry_engine::group::Group;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(g) = Group::parse(s) {
            assert!(!g.members.is_empty());
            let _ = g.freeze_order();
            let _ = g.restore_order();
        }
    }
});
