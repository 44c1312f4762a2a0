//! Everything a peer can send on a control or peer connection: preamble, frames, and the
//! messages inside them.
#![no_main]

use ferry_proto::decode_frame;
use ferry_proto::Message;
use ferry_proto::{Preamble, PREAMBLE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = <[u8; PREAMBLE_LEN]>::try_from(data.get(..PREAMBLE_LEN).unwrap_or(&[])) {
        let _ = Preamble::decode(&p);
    }
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode_frame(rest) {
        let _ = serde_json::from_slice::<Message>(&frame.payload);
        if used == 0 || used > rest.len() {
            break;
        }
        rest = &rest[used..];
    }
    let _ = serde_json::from_slice::<Message>(data);
});
