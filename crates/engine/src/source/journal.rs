//! Crash safety at the source: where an outgoing migration stands, written down, and how
//! a migration whose end is in doubt is settled.
//!
//! From just before the freeze on, the source journals its migration
//! (`out-SESSION/session.json`, replaced whole on each step). When the outcome is in
//! doubt (the connection broke after `Commit` was sent, or the agent restarted), the
//! source asks the destination, on a new connection, how the session ended. The
//! destination records each session's outcome durably before it answers. Only a
//! destination that committed takes the container; one that dropped the session gives
//! it back; and while nobody can tell (no answer, a session still undecided, or one the
//! destination does not know, which a destination that kept its records never says of
//! a session it prepared), it stays frozen here, because running it twice would be
//! worse.

use std::time::{Duration, Instant};

use ferry_proto::{PeerReply, PeerRequest};
use ferry_types::SessionState;
use serde::{Deserialize, Serialize};

use crate::ports::peer::{Dialer, Frame};

/// The journal's file name in the session's directory.
pub const JOURNAL: &str = "session.json";

/// Where an outgoing migration stands, as journalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutJournal {
    pub container: String,
    pub session: String,
    pub dest: String,
    /// `freezing` (about to freeze), `frozen` (commit not sent) or `commit-sent`.
    pub phase: String,
}

/// What a source does about a migration whose end it did not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The destination runs it: remove the frozen copy here.
    Remove,
    /// The destination does not: resume it here.
    Resume,
    /// Nobody can tell: keep it frozen.
    KeepFrozen,
}

/// The pure rule: what the destination answered (None: unreachable) decides.
pub fn verdict(answer: Option<SessionState>) -> Verdict {
    match answer {
        Some(SessionState::Committed) => Verdict::Remove,
        Some(SessionState::Dropped) => Verdict::Resume,
        Some(SessionState::Pending | SessionState::Unknown) | None => Verdict::KeepFrozen,
    }
}

/// Asks the destination, on a new connection each time, how `session` ended, until it
/// has decided or `within` passed (`None`: it could not be reached, or never decided).
pub async fn ask_destination(
    dialer: &dyn Dialer,
    session: &str,
    within: Duration,
    pause: Duration,
) -> Option<SessionState> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(state) = ask_once(dialer, session).await {
            // A destination still busy with it may be committing right now: ask again
            // until it has decided.
            if state != SessionState::Pending {
                return Some(state);
            }
        }
        tokio::time::sleep(pause).await;
    }
    None
}

async fn ask_once(dialer: &dyn Dialer, session: &str) -> Option<SessionState> {
    let mut link = dialer.connect().await.ok()?;
    link.send(&PeerRequest::Resolve {
        session: session.to_string(),
    })
    .await
    .ok()?;
    match tokio::time::timeout(Duration::from_secs(5), link.recv()).await {
        Ok(Ok(Frame::Message(PeerReply::Resolution { state, .. }))) => Some(state),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_committed_destination_takes_the_container() {
        assert_eq!(verdict(Some(SessionState::Committed)), Verdict::Remove);
        assert_eq!(verdict(Some(SessionState::Dropped)), Verdict::Resume);
        assert_eq!(verdict(Some(SessionState::Pending)), Verdict::KeepFrozen);
        assert_eq!(verdict(Some(SessionState::Unknown)), Verdict::KeepFrozen);
        assert_eq!(verdict(None), Verdict::KeepFrozen);
    }
}
