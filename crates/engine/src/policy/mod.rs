//! Policies: decisions the strategies leave to rules that are pure, so that each one is
//! tested without a container.
//!
//! - [`auto`]: which strategy `--strategy auto` runs, and which strategies a host can run;
//! - [`stop_rule`]: when pre-copy's rounds stop and the container freezes;
//! - [`preflight`]: what a container and both hosts allow, before anything is frozen.

pub mod auto;
pub mod preflight;
pub mod stop_rule;
