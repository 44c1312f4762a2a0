//! ferry's wire protocol, independent of any socket.
//!
//! Every connection between ferry processes (CLI to agent, agent to agent) starts with a
//! fixed 16-byte [`Preamble`] in each direction: a magic and the range of protocol
//! versions the sender speaks. Both sides then use the highest common version, or refuse
//! with [`ProtoError::IncompatibleVersion`].
//!
//! After the preamble the stream is a sequence of [`Frame`]s. A frame has a 12-byte header
//! (kind, flags, payload length, CRC32 of the payload) and a payload whose size is capped
//! at decode time, so a hostile peer cannot make the receiver allocate without bound.
//! Two kinds carry content:
//!
//! - [`FrameKind::Message`]: one JSON-encoded message of the connection's family:
//!   [`Handshake`] first, then [`ControlRequest`] / [`ControlReply`] on control
//!   connections and [`PeerRequest`] / [`PeerReply`] between agents (see [`WireMessage`]);
//! - [`FrameKind::Data`]: raw bytes that belong to the transfer the last message announced
//!   (a file of a bundle or of a checkpoint image set).
//!
//! Receivers are state machines (see `ferry-engine`): a message that is not valid in the
//! current state is an error, never a panic.
//!
//! ```text
//!  CLI            source agent                      destination agent
//!   | Hello/Proof  |                                        |
//!   |------------->| Hello / Challenge / Proof / Welcome    |
//!   | Migrate      |--------------------------------------->|
//!   |------------->| Prepare                                |
//!   |              |--------------------------------------->|
//!   |              |<--------------------------- Prepared   |
//!   |              | BundleFile + Data ..., BundleDone      |
//!   |              |--------------------------------------->|
//!   |  Progress    | (freeze, dump; pages on the page channel)
//!   |<-------------| ImageFile + Data ..., ImagesDone       |
//!   |              |--------------------------------------->|
//!   |              | Restore                                |
//!   |              |--------------------------------------->|
//!   |              |<--------------------------- Restored   |
//!   |              | Commit                                 |
//!   |              |--------------------------------------->|
//!   |  Done        |<-------------------------- Committed   |
//!   |<-------------|                                        |
//! ```

mod control;
mod error;
mod frame;
mod handshake;
mod peer;
pub mod postcopy;
mod preamble;
pub mod precopy;
mod wire;

#[cfg(test)]
mod tests;

pub use control::{ControlReply, ControlRequest, READY_PHASE, RESTORE_READY_PHASE};
pub use error::ProtoError;
pub use frame::{
    decode_frame, encode_frame, Frame, FrameHeader, FrameKind, HEADER_LEN, MAX_DATA_PAYLOAD,
    MAX_MESSAGE_PAYLOAD,
};
pub use handshake::{Handshake, Role};
pub use peer::{PeerReply, PeerRequest, Prepare};
pub use preamble::{
    announce_versions, negotiate, Preamble, MAGIC, PREAMBLE_LEN, VERSION_CURRENT, VERSION_MIN,
};
pub use wire::WireMessage;
