//! The ports: every side effect of a migration, as a narrow trait.
//!
//! | port | what it does | the agent's adapter |
//! |---|---|---|
//! | [`container`] | inspect, freeze, checkpoint, ship, restore, delete | runc and CRIU (`ferry-containers`) |
//! | [`network`] | prepare, lock, hand over, release a container's address | network namespaces (`ferry-netns`) or a hook |
//! | [`peer`] | the conversation between source and destination | a transport connection |
//! | [`pages`] | the page channels and what runs on them | ferry's data plane (`ferry-pages`) |
//! | [`host`] | admission and records at the destination | the agent's state |
//!
//! The strategies and drivers of this crate are written against these traits only, so
//! their sequences run in unit tests with the recording fakes of `crate::testing`.

use std::future::Future;
use std::pin::Pin;

pub mod container;
pub mod host;
pub mod network;
pub mod pages;
pub mod peer;

/// A future a port hands back to be awaited later (or on a task of its own).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
