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
//!
//! With TLS configured ([`Tls`]), a TCP connection first runs a mutual TLS handshake:
//! each side's certificate must be signed by the deployment's CA, and the whole ferry
//! exchange above (and every byte after it, pages included) travels inside it. The
//! shared secret then stays optional, as defence in depth. TCP without TLS is refused
//! on both sides. The certificate says who the peer is ([`Identity`]): a host
//! certificate may migrate, an operator certificate may control, neither both.

mod auth;
pub mod certs;
#[cfg(feature = "cli")]
pub mod cli;
mod conn;
mod endpoint;
mod error;
mod handshake;
mod identity;
mod relay;
mod sockopt;
mod tls;

pub use auth::{Auth, Credentials, Secret};
pub use conn::{Conn, Incoming, DATA_CHUNK};
pub use endpoint::{Endpoint, Stream, Traffic};
pub use error::TransportError;
pub use handshake::{accept, accept_tcp, connect, Accepted, ClientHello};
pub use identity::{Identity, OPERATOR_URI};
pub use tls::{Tls, TlsFiles};
