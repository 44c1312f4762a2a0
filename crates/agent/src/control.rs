//! Requests from the CLI (or scripts) to this agent.

use std::sync::Arc;

use ferry_proto::{ControlReply, ControlRequest, WireMessage};
use ferry_transport::{Conn, Endpoint};

use crate::containers;
use crate::migrate::{migrate, MigrateRequest};
use crate::state::Agent;
use ferry_proto::{READY_PHASE as READY, RESTORE_READY_PHASE as RESTORE_READY};

/// Serves one control connection until the client goes away.
pub async fn serve(agent: Arc<Agent>, mut conn: Conn) {
    loop {
        let Ok(msg) = conn.recv_msg::<ControlRequest>().await else {
            return;
        };
        let reply = answer(&agent, &mut conn, msg).await;
        if conn.send(&reply).await.is_err() {
            return;
        }
    }
}

fn error(e: impl std::fmt::Display) -> ControlReply {
    ControlReply::Error {
        message: e.to_string(),
    }
}

async fn answer(agent: &Arc<Agent>, conn: &mut Conn, msg: ControlRequest) -> ControlReply {
    match msg {
        ControlRequest::Ping => ControlReply::Pong {
            host: agent.cfg.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        ControlRequest::Run { name, args, net } => {
            match containers::run(agent, &name, &args, net).await {
                Ok(container) => ControlReply::Ran { container },
                Err(e) => error(e),
            }
        }
        ControlRequest::Remove { name } => match containers::remove(agent, &name).await {
            Ok(()) => ControlReply::Removed,
            Err(e) => error(e),
        },
        ControlRequest::List => ControlReply::Containers {
            items: containers::list(agent).await,
        },
        ControlRequest::Migrate {
            container,
            dest,
            options,
        } => {
            let dest: Endpoint = match dest.parse() {
                Ok(d) => d,
                Err(e) => return error(e),
            };
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let (words, holds) = Words::new(&options);
            let req = MigrateRequest {
                container,
                dest,
                options,
            };
            // The migration runs on its own: if the CLI goes away, it still ends cleanly.
            let mut task = tokio::spawn(migrate(agent.clone(), req, tx, holds));
            let mut words = words;
            let result = loop {
                tokio::select! {
                    Some(ev) = rx.recv() => {
                        let waits = match &ev {
                            ControlReply::Progress { phase, .. } => words.waiting_at(phase),
                            _ => None,
                        };
                        let _ = conn.send(&ev).await;
                        // The migration waits for the client's word; it sends nothing
                        // meanwhile. Anything but `Proceed` (or a lost client) drops
                        // the word: no freeze, or no restore.
                        if let Some(word) = waits {
                            if let Ok(ControlRequest::Proceed) = conn.recv_msg::<ControlRequest>().await {
                                let _ = word.send(());
                            }
                        }
                    }
                    r = &mut task => break r,
                }
            };
            match result {
                Ok(Ok(report)) => ControlReply::Report {
                    report: Box::new(report),
                },
                Ok(Err(e)) => error(e),
                Err(e) => error(format!("the migration task failed: {e}")),
            }
        }
        ControlRequest::Readdress {
            container,
            from,
            to,
        } => readdress(agent, &container, &from, &to).await,
        ControlRequest::Resume { name } => match crate::migrate::resume(agent, &name).await {
            Ok(()) => ControlReply::Resumed,
            Err(e) => error(e),
        },
        ControlRequest::Check {
            container, dest, ..
        } => match check(agent, &container, dest.as_deref()).await {
            Ok(preflight) => ControlReply::Checked {
                preflight: Box::new(preflight),
            },
            Err(e) => error(e),
        },
        ControlRequest::Connections { container } => ControlReply::Connections {
            items: crate::connections::list(agent, container.as_deref()).await,
        },
        msg @ (ControlRequest::Standby { .. }
        | ControlRequest::StandbyStop { .. }
        | ControlRequest::Standbys
        | ControlRequest::Failover { .. }) => crate::standby::answer(agent, msg).await,
        other => error(format!(
            "'{}' is not a request this agent serves",
            other.name()
        )),
    }
}

/// `ferry migrate --new-ip --peers`: one peer, pointed at the new address.
async fn readdress(agent: &Arc<Agent>, container: &str, from: &str, to: &str) -> ControlReply {
    match crate::readdress::readdress(agent, container, from, to).await {
        Ok(r) => ControlReply::Readdressed {
            sockets: r.sockets,
            downtime_ms: r.downtime_ms,
        },
        Err(e) => error(e),
    }
}

/// `ferry check`: the preflight, towards `dest` when given.
async fn check(
    agent: &Arc<Agent>,
    container: &str,
    dest: Option<&str>,
) -> Result<ferry_types::Preflight, crate::AgentError> {
    let subject = crate::engines::find(agent, container, false).await?;
    let facts = match dest {
        Some(d) => {
            let ep: Endpoint = d.parse()?;
            let paths = subject.bind_mount_sources(agent);
            Some(crate::preflight::probe(agent, &ep, paths).await?)
        }
        None => None,
    };
    Ok(crate::preflight::check(
        agent,
        container,
        &subject,
        facts.as_ref(),
    ))
}

/// The words a held migration waits for, on the agent's side: each fires once, on the
/// client's `Proceed` after the phase that asks for it.
struct Words {
    freeze: Option<tokio::sync::oneshot::Sender<()>>,
    restore: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Words {
    fn new(options: &ferry_types::MigrateOptions) -> (Self, ferry_engine::source::Holds) {
        let mut holds = ferry_engine::source::Holds::default();
        let pair = |on: bool, slot: &mut Option<tokio::sync::oneshot::Receiver<()>>| {
            on.then(|| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                *slot = Some(rx);
                tx
            })
        };
        let freeze = pair(options.hold_freeze, &mut holds.freeze);
        let restore = pair(options.hold_restore, &mut holds.restore);
        (Words { freeze, restore }, holds)
    }

    /// The word the migration waits for after reporting `phase`, if any.
    fn waiting_at(&mut self, phase: &str) -> Option<tokio::sync::oneshot::Sender<()>> {
        match phase {
            READY => self.freeze.take(),
            RESTORE_READY => self.restore.take(),
            _ => None,
        }
    }
}
