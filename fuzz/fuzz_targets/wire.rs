//! Everything a peer can send on a control or peer connection: preamble, frames, and the
//! messages inside them.
#![no_main]

use ferry_proto::{decode_frame, Preamble, WireMessage, PREAMBLE_LEN};
use ferry_proto::{ControlReply, ControlRequest, Handshake, PeerReply, PeerRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = <[u8; PREAMBLE_LEN]>::try_from(data.get(..PREAMBLE_LEN).unwrap_or(&[])) {
        let _ = Preamble::decode(&p);
    }
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode_frame(rest) {
        every_family(&frame.payload);
        if used == 0 || used > rest.len() {
            break;
        }
        rest = &rest[used..];
    }
    every_family(data);
});

/// A payload as each message family would read it.
fn every_family(payload: &[u8]) {
    let _ = Handshake::decode(payload);
    let _ = ControlRequest::decode(payload);
    let _ = ControlReply::decode(payload);
    let _ = PeerRequest::decode(payload);
    let _ = PeerReply::decode(payload);
}
