//! Pre-copy without the kernel's dirty bits.
//!
//! While the container runs, the source reads its processes' memory ([`memory`]), hashes
//! every page ([`hash`]) and sends, round after round, the pages the destination does
//! not hold yet ([`scan`]). The destination keeps them in a content-addressed store
//! ([`store`]). A stopping rule (the engine's policy) decides when to freeze; CRIU then dumps, and
//! its page files travel as records where every page the destination holds is a
//! reference ([`sink`]). The destination rebuilds CRIU's page files from the records and
//! its store ([`receive`]). Block format: `ferry_proto::precopy`.

pub mod blocks;
pub mod hash;
pub mod memory;
mod populated;
pub mod receive;
pub mod refs;
pub mod scan;
pub mod sink;
pub mod store;

use std::io::{Read, Write};
use std::time::Instant;

use ferry_proto::precopy::BlockKind;
use ferry_types::{ms, PrecopyRound};

use blocks::{invalid, BlockWriter};
use receive::ACK_LEN;
use scan::Scanner;

/// Runs round `k`: sends the pages of `pids` the destination does not hold yet, ends the
/// round with a `RoundEnd` block and waits for the destination's acknowledgement, so that
/// its duration is the real transfer time. The prediction is left for the stopping rule.
pub fn round<W: Write, A: Read>(
    writer: &mut BlockWriter<W>,
    ack: &mut A,
    scanner: &mut Scanner,
    pids: &[u32],
    k: u32,
) -> std::io::Result<PrecopyRound> {
    let t = Instant::now();
    let wire_before = writer.sent.wire;
    let c = scanner.round(pids, writer)?;
    writer.marker(BlockKind::RoundEnd, k, 0)?;
    let mut a = [0u8; ACK_LEN];
    ack.read_exact(&mut a)?;
    let mut n = [0u8; 8];
    n.copy_from_slice(&a[..8]);
    if u64::from_le_bytes(n) != u64::from(k) {
        return Err(invalid("the destination acknowledged another round"));
    }
    Ok(PrecopyRound {
        round: k,
        scanned_bytes: c.scanned,
        changed_bytes: c.changed,
        sent_bytes: c.sent,
        wire_bytes: writer.sent.wire - wire_before,
        ms: ms(t.elapsed()),
        predicted_downtime_ms: 0.0,
    })
}

/// Lowers the calling thread's priority: rounds must not starve the container.
pub fn be_nice() {
    // SAFETY: setpriority on the calling thread (Linux: `who` 0 is this thread).
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
}
