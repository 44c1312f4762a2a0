//! The handshake every connection opens with, after the preamble (see `ferry-transport`).

use serde::{Deserialize, Serialize};

use crate::WireMessage;

/// What a connection is for; announced in [`Handshake::Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The CLI (or a script) asking an agent to do something: [`crate::ControlRequest`].
    Control,
    /// One agent driving a migration into another: [`crate::PeerRequest`].
    Peer,
    /// The page channel of a migration session: after the handshake, raw bytes in both
    /// directions (the page stream of a cold move, post-copy's background pages).
    Pages,
    /// Post-copy's second page channel: the pages processes wait for, so that they never
    /// queue behind background pages.
    UrgentPages,
    /// One standby checkpoint, from the host that runs the container to the standby host:
    /// [`crate::PeerRequest::Standby`] and what follows it.
    Standby,
}

/// The handshake's messages, in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Handshake {
    /// Client → server: who I am and a fresh nonce.
    Hello {
        role: Role,
        host: String,
        nonce: String,
        #[serde(default)]
        session: Option<String>,
    },
    /// Server → client: the server's nonce and its proof of knowing the secret.
    Challenge {
        host: String,
        nonce: String,
        proof: String,
    },
    /// Client → server: the client's proof.
    Proof { proof: String },
    /// Server → client: authenticated.
    Welcome,
    /// Either side: the connection is refused, with a reason the user can act on.
    Refused { reason: String },
}

impl WireMessage for Handshake {
    const FAMILY: &'static str = "handshake";

    fn name(&self) -> &'static str {
        match self {
            Handshake::Hello { .. } => "hello",
            Handshake::Challenge { .. } => "challenge",
            Handshake::Proof { .. } => "proof",
            Handshake::Welcome => "welcome",
            Handshake::Refused { .. } => "refused",
        }
    }
}
