//! What every message family has in common: a JSON object per `Message` frame, tagged by
//! `type`, with unknown types and fields refused.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ProtoError;

/// One family of messages: the handshake, control requests and replies, or the peer
/// conversation. A connection speaks one family in each direction after its handshake,
/// decided by its role.
pub trait WireMessage: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The family's name, for errors.
    const FAMILY: &'static str;

    /// The variant's name, for errors and logs (never the content, which may be large).
    fn name(&self) -> &'static str;

    fn encode(&self) -> Vec<u8> {
        // Serialising these plain data types cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn decode(payload: &[u8]) -> Result<Self, ProtoError> {
        serde_json::from_slice(payload)
            .map_err(|e| ProtoError::BadMessage(format!("{} message: {e}", Self::FAMILY)))
    }
}
