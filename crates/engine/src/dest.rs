//! The destination's receiver state machine.
