//! Benchmarks. Each one runs ferry and a baseline in the same run, on the same machine,
//! and prints min/median/max of what matters (downtime as the client sees it, total
//! time, bytes sent, memory). `--json FILE` writes [`row::Row`]s, one format for all.

pub mod apps;
pub mod cold;
pub mod criu_lazy;
pub mod engines;
pub mod group;
pub mod labctl;
pub mod load;
pub mod local;
pub mod manual;
pub mod naive;
pub mod paper;
pub mod postcopy;
pub mod precopy;
pub mod probe;
pub mod redis;
pub mod row;
pub mod sizes;
pub mod standby;
pub mod stats;
pub mod svg;
