//! Connections between ferry processes.
//!
//! A [`Conn`] carries [`ferry_proto`] frames over any byte stream ([`Stream`]: TCP or a
//! Unix socket today; a TLS stream plugs in at the same place). Every connection opens
//! with the preamble exchange and then a mutual handshake:
//!
//! ```text
//! client                                   server
//!   | preamble (magic, versions)             |
//!   |<-------------------------------------->|
//!   | Hello { role, host, nonce_c }          |
//!   |--------------------------------------->|
//!   |   Challenge { host, nonce_s, proof_s } |   proof_s = HMAC(k, "server" | nonce_c | nonce_s)
//!   |<---------------------------------------|
//!   | Proof { proof_c }                      |   proof_c = HMAC(k, "client" | nonce_s | nonce_c)
//!   |--------------------------------------->|
//!   |                    Welcome | Refused   |
//!   |<---------------------------------------|
//! ```
//!
//! Both sides prove they hold the shared secret without sending it, with fresh nonces, so
//! a recorded handshake cannot be replayed and an unauthenticated peer never gets past
//! `Hello`. Over a Unix socket the server may instead trust the peer's credentials
//! (root), see [`Auth::PeerCredentials`].

mod auth;
mod conn;
mod endpoint;
mod error;
mod handshake;

pub use auth::{Auth, Secret};
pub use conn::{Conn, Incoming, DATA_CHUNK};
pub use endpoint::{Endpoint, Stream};
pub use error::TransportError;
pub use handshake::{accept, connect, Accepted, ClientHello};
