//! A fake agent on a Unix socket for the tests: it answers control requests as a real
//! agent would, without moving anything, and notes what it was asked.

use std::sync::{Arc, Mutex};

use ferry_proto::{ControlReply, ControlRequest, READY_PHASE, RESTORE_READY_PHASE};
use ferry_transport::{accept, Auth, Endpoint, TransportError};
use ferry_types::{ContainerInfo, Operation, Outcome, Report, Strategy};
use tokio::net::{UnixListener, UnixStream};

/// What the fake agent does.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Containers whose migration fails after the freeze (and rolls back).
    pub fail: Vec<String>,
    /// Its containers, for list requests.
    pub containers: Vec<ContainerInfo>,
    /// Refuse every request with this message.
    pub refuse: Option<String>,
}

#[derive(Debug)]
pub struct FakeAgent {
    pub endpoint: Endpoint,
    notes: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// Why a held migration gives up, as the agent says it.
pub const GAVE_UP: &str = "the client did not let the container freeze (it went away or waited too long); nothing changed";
/// Why a migration held before its restore rolls back, as the agent says it.
pub const NOT_RESTORED: &str = "the client did not let the container restore (it went away, gave up or waited too long); it runs on the source again";

impl FakeAgent {
    pub fn start(script: Script) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).expect("a socket");
        let notes = Arc::new(Mutex::new(Vec::new()));
        let (script, n) = (Arc::new(script), notes.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, n) = (script.clone(), n.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &script, &n).await;
                });
            }
        });
        Self {
            endpoint: Endpoint::Unix(path),
            notes,
            _dir: dir,
        }
    }

    /// What it was asked and did, in order ("migrate db", "proceed db", "restore db"…).
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

fn report(container: &str, outcome: Outcome, reason: Option<&str>) -> ControlReply {
    let mut r = Report::new(Operation::Migrate, container);
    r.strategy = Some(Strategy::Cold);
    r.outcome = outcome;
    r.reason = reason.map(Into::into);
    if outcome == Outcome::Migrated {
        r.downtime_ms = Some(container.len() as f64);
    }
    ControlReply::Report {
        report: Box::new(r),
    }
}

fn progress(phase: &str) -> ControlReply {
    ControlReply::Progress {
        phase: phase.into(),
        done: 1,
        total: 2,
    }
}

/// Reports `phase` and waits for the client's word: whether it was `Proceed`.
async fn word(
    conn: &mut ferry_transport::Conn<UnixStream>,
    phase: &str,
) -> Result<bool, TransportError> {
    conn.send(&progress(phase)).await?;
    Ok(conn.recv_msg::<ControlRequest>().await? == ControlRequest::Proceed)
}

async fn serve(
    stream: UnixStream,
    script: &Script,
    notes: &Mutex<Vec<String>>,
) -> Result<(), TransportError> {
    let note = |s: String| {
        if let Ok(mut n) = notes.lock() {
            n.push(s);
        }
    };
    let mut conn = accept(stream, "fake", &Auth::PeerCredentials, Some(0))
        .await?
        .conn;
    let request = conn.recv_msg::<ControlRequest>().await?;
    if let Some(message) = &script.refuse {
        let message = message.clone();
        return conn.send(&ControlReply::Error { message }).await;
    }
    let answer = match request {
        ControlRequest::List => ControlReply::Containers {
            items: script.containers.clone(),
        },
        ControlRequest::Resume { .. } => ControlReply::Resumed,
        ControlRequest::Readdress {
            container,
            from,
            to,
        } => {
            note(format!("readdress {container} {from}->{to}"));
            if script.fail.contains(&container) {
                ControlReply::Error {
                    message: format!("'{container}' cannot be checkpointed"),
                }
            } else {
                ControlReply::Readdressed {
                    sockets: 1,
                    downtime_ms: 5.0,
                }
            }
        }
        ControlRequest::Migrate {
            container, options, ..
        } => {
            note(format!("migrate {container}"));
            conn.send(&progress("prepare")).await?;
            if options.hold_freeze {
                conn.send(&progress(READY_PHASE)).await?;
                if conn.recv_msg::<ControlRequest>().await? != ControlRequest::Proceed {
                    note(format!("gave up {container}"));
                    let r = report(&container, Outcome::RolledBack, Some(GAVE_UP));
                    return conn.send(&r).await;
                }
                note(format!("proceed {container}"));
            }
            if script.fail.contains(&container) {
                note(format!("failed {container}"));
                report(&container, Outcome::RolledBack, Some("could not restore"))
            } else if options.hold_restore && !word(&mut conn, RESTORE_READY_PHASE).await? {
                note(format!("not restored {container}"));
                report(&container, Outcome::RolledBack, Some(NOT_RESTORED))
            } else {
                note(format!("restore {container}"));
                conn.send(&progress("restore")).await?;
                report(&container, Outcome::Migrated, None)
            }
        }
        _ => ControlReply::Pong {
            host: "fake".into(),
            version: "0".into(),
        },
    };
    conn.send(&answer).await
}
