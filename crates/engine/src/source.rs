//! The source's steps and rollback rules (see issue 3).
