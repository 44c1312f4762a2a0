//! ferry-lab
