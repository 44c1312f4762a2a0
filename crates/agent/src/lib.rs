//! The agent: the long-running daemon on every host, and the place where the engine's
//! seams meet real runc, CRIU and network namespaces.

pub mod doctor;
