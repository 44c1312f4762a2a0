//! Network namespaces as ferry uses them.
//!
//! Each container has its own network namespace whose `eth0` (fixed address and MAC) is
//! one end of a veth pair; the other end is attached to its host's bridge. Moving a
//! container's IP means recreating that namespace on the destination host, keeping its
//! network locked until the restored sockets are ready, bringing the link up and
//! announcing the address with a gratuitous ARP.
//!
//! Operations are planned as lists of [`Cmd`]s (pure, unit-tested) and executed by a
//! [`Runner`]; tests can record instead of running.

mod arp;
mod cmd;
mod error;
pub mod held;
mod link;
mod lock;
mod ns;
mod peer;
pub mod shape;

pub use arp::send_gratuitous_arp;
pub use cmd::{Cmd, RealRunner, RecordingRunner, Runner};
pub use error::NetError;
pub use link::{inspect, parse_cidr, parse_mac, validate_spec, ContainerLink};
pub use lock::{LockKind, NetLock, CRIU_MARK};
pub use ns::{netns_path, Netns, NETNS_DIR};
pub use peer::{bridge_of, host_peer};
