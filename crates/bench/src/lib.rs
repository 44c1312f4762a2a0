//! ferry-bench
