//! The peer: the conversation between the source and the destination agent.
//!
//! A [`Link`] carries one family of typed messages each way, and raw data for the files
//! a message announced. The source dials the destination through a [`Dialer`]: once for
//! the migration, and again, on a fresh connection, to ask how a session ended when the
//! first one broke. The agent's adapter is a transport connection (mutual TLS between
//! agents); tests join the two halves of a migration with an in-memory pair.

use async_trait::async_trait;
use ferry_proto::{PeerReply, PeerRequest, WireMessage};
use thiserror::Error;

/// The conversation broke; the sentence is the transport's.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The peer closed the connection between frames.
    #[error("the peer closed the connection")]
    Closed,
    #[error("{0}")]
    Broken(String),
}

/// What arrived: a message, or data of the file the last message announced.
#[derive(Debug)]
pub enum Frame<M> {
    Message(M),
    Data(Vec<u8>),
}

/// One connection, sending `Out` and receiving `In`.
#[async_trait]
pub trait Link<Out: WireMessage, In: WireMessage>: Send {
    async fn send(&mut self, msg: &Out) -> Result<(), LinkError>;
    async fn send_data(&mut self, data: &[u8]) -> Result<(), LinkError>;
    async fn recv(&mut self) -> Result<Frame<In>, LinkError>;
    /// Bytes sent so far, framing included.
    fn bytes_sent(&self) -> u64;
    /// The peer's host name, as it proved it.
    fn peer_host(&self) -> &str;
}

/// The source's side of the conversation.
pub type ToDest = dyn Link<PeerRequest, PeerReply>;
/// The destination's side.
pub type ToSource = dyn Link<PeerReply, PeerRequest>;

/// How the source reaches the destination.
#[async_trait]
pub trait Dialer: Send + Sync {
    /// A new peer connection to the destination.
    async fn connect(&self) -> Result<Box<ToDest>, LinkError>;
    /// The destination as the user named it (for reports and errors).
    fn describe(&self) -> String;
}
