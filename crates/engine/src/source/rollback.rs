//! The source's rules: what was done, and how to undo it when a migration fails.
//!
//! The source keeps the container frozen (not killed) and its network locked until the
//! destination confirms the container runs there. Before it sends `Commit`, any failure
//! rolls back: the container runs on the source again with its connections. After it
//! sent `Commit` and before `Committed` arrives, the outcome is in doubt and must be
//! resolved by asking the destination (see [`Rollback::InDoubt`]).

use thiserror::Error;

use crate::ports::container::{ContainerError, Subject};
use crate::ports::network::{deliver_and_log, ContainerNetwork, NetworkError};

/// One undo step of a rollback failed.
#[derive(Debug, Error)]
pub enum RollbackError {
    #[error("{step:?}: {source}")]
    Network {
        step: Undo,
        #[source]
        source: NetworkError,
    },
    #[error("{step:?}: {source}")]
    Container {
        step: Undo,
        #[source]
        source: ContainerError,
    },
}

/// Steps the source has taken, in the order it takes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceProgress {
    pub frozen: bool,
    pub locked: bool,
    pub dumped: bool,
    pub link_down: bool,
    pub commit_sent: bool,
    pub committed: bool,
    /// Post-copy: the destination runs the container but still needs pages held here.
    pub pages_owed: bool,
}

/// One undo action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// Reattach the container's link to the host's network.
    LinkUp,
    /// Remove ferry's network lock.
    Unlock,
    /// Take the container's TCP connections out of CRIU's repair mode, where a CRIU that
    /// was killed mid-dump leaves them (the application would close them on its first
    /// read).
    ReleaseSockets,
    /// Thaw the container's processes.
    Thaw,
    /// Tell the network where the address lives (gratuitous ARP).
    Announce,
}

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollback {
    /// Nothing on the source changed.
    Nothing,
    /// Undo these steps, in this order; the container then runs on the source.
    Undo(Vec<Undo>),
    /// `Commit` was sent but not confirmed: ask the destination before doing anything.
    InDoubt,
    /// The destination confirmed; the failure is in clean-up only.
    Done,
    /// Post-copy broke after the container started at the destination: it cannot go on
    /// there without its memory, and must not resume here on its own (what it did at the
    /// destination would be lost, and its peers would be confused). Keep it frozen.
    KeepFrozen,
}

/// The rollback for a failure after `p`.
pub fn rollback(p: &SourceProgress) -> Rollback {
    if p.committed && p.pages_owed {
        return Rollback::KeepFrozen;
    }
    if p.committed {
        return Rollback::Done;
    }
    if p.commit_sent {
        return Rollback::InDoubt;
    }
    let mut steps = Vec::new();
    // Reconnect first, with the lock still holding, so the first packets after the thaw
    // find the link up; then lift the lock, thaw, and announce the address again in case
    // the destination announced it meanwhile.
    if p.link_down {
        steps.push(Undo::LinkUp);
    }
    if p.locked {
        steps.push(Undo::Unlock);
    }
    if p.frozen {
        steps.push(Undo::ReleaseSockets);
        steps.push(Undo::Thaw);
    }
    if p.link_down {
        steps.push(Undo::Announce);
    }
    if steps.is_empty() {
        Rollback::Nothing
    } else {
        Rollback::Undo(steps)
    }
}

/// Undoes source steps, in order; returns what could not be undone (every step is tried).
pub async fn undo(
    net: &dyn ContainerNetwork,
    subject: &dyn Subject,
    steps: &[Undo],
) -> Vec<RollbackError> {
    let mut errors = Vec::new();
    for &step in steps {
        let r = match step {
            Undo::LinkUp => net.attach().await,
            Undo::Unlock => net.unlock().await,
            Undo::ReleaseSockets => {
                if let Err(source) = subject.release_sockets() {
                    errors.push(RollbackError::Container { step, source });
                }
                continue;
            }
            Undo::Thaw => {
                if let Err(source) = subject.thaw() {
                    errors.push(RollbackError::Container { step, source });
                }
                continue;
            }
            Undo::Announce => net.announce().await,
        };
        if let Err(source) = r {
            errors.push(RollbackError::Network { step, source });
        }
    }
    // The container runs here again: what its lock held is delivered, as a destination
    // would have. Copies only save peers a retransmission, so a failure is not the
    // rollback's.
    if steps.contains(&Undo::Unlock) {
        let held = net.take_held().await;
        deliver_and_log(net, held, "after the rollback").await;
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_undo_before_the_freeze() {
        assert_eq!(rollback(&SourceProgress::default()), Rollback::Nothing);
    }

    #[test]
    fn a_failed_dump_unlocks_and_thaws() {
        let p = SourceProgress {
            frozen: true,
            locked: true,
            ..Default::default()
        };
        assert_eq!(
            rollback(&p),
            Rollback::Undo(vec![Undo::Unlock, Undo::ReleaseSockets, Undo::Thaw])
        );
    }

    #[test]
    fn a_failed_restore_reattaches_before_thawing_and_announces_after() {
        let p = SourceProgress {
            frozen: true,
            locked: true,
            dumped: true,
            link_down: true,
            ..Default::default()
        };
        assert_eq!(
            rollback(&p),
            Rollback::Undo(vec![
                Undo::LinkUp,
                Undo::Unlock,
                Undo::ReleaseSockets,
                Undo::Thaw,
                Undo::Announce
            ])
        );
    }

    #[test]
    fn after_commit_the_source_never_resumes_on_its_own() {
        let p = SourceProgress {
            frozen: true,
            locked: true,
            dumped: true,
            link_down: true,
            commit_sent: true,
            committed: false,
            pages_owed: false,
        };
        assert_eq!(rollback(&p), Rollback::InDoubt);
        let p = SourceProgress {
            committed: true,
            ..p
        };
        assert_eq!(rollback(&p), Rollback::Done);
    }
}
