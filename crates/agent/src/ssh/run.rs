//! `ferry migrate NAME --to ssh://[USER@]HOST`: a migration without agents
//! (docs/ssh.md). This process holds the container as its source for the run, with this
//! host's settings; the far side's half is started over the SSH connection, which also
//! carries every connection between the two. Nothing is frozen before both sides run.

use std::time::{Duration, Instant};

use ferry_engine::source::Holds;
use ferry_proto::ControlReply;
use ferry_transport::Endpoint;
use ferry_types::{MigrateOptions, Report};

use super::{hostconf, Ephemeral, SshError, SshSession, SshTarget};
use crate::migrate::MigrateRequest;

/// How long the far side may take to finish after the report (a post-copy destination
/// is done when the report comes; this only bounds a far side that hangs).
const FINISH_LIMIT: Duration = Duration::from_secs(30);

/// Moves `container` to the SSH destination `to`; the report, whatever its outcome, or
/// why nothing was tried.
pub async fn migrate(
    to: &str,
    container: &str,
    options: MigrateOptions,
    mut on_progress: impl FnMut(&ControlReply),
) -> Result<Report, SshError> {
    let target = SshTarget::parse(to)?;
    // This side's settings first: a broken file costs no connection.
    let conf = hostconf::load()?;
    let cfg = crate::cli::config(conf).map_err(|e| SshError::HostConf {
        path: hostconf::path().display().to_string(),
        why: format!("{e:#}"),
    })?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SshError::NotRoot { host: cfg.name });
    }
    let t0 = Instant::now();
    let session = SshSession::open(&target).await?;
    let connect_ms = ms(t0);
    let t1 = Instant::now();
    let binary = session.ensure_binary().await?;
    let remote = session.start_remote(&binary).await?;
    let peer = session.local_socket("peer.sock");
    session.forward(&peer, &remote.socket).await?;
    let start_ms = ms(t1);
    let local = Ephemeral::start(cfg).await?;
    let req = MigrateRequest {
        container: container.to_string(),
        dest: Endpoint::Unix(peer),
        options,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The migration runs on its own task, and this process does not stop before it
    // has ended: a stop half-way would leave the container frozen.
    let _signals = hold_signals();
    let mut task = tokio::spawn(crate::migrate::migrate(
        local.agent.clone(),
        req,
        tx,
        Holds::default(),
    ));
    let result = loop {
        tokio::select! {
            Some(ev) = rx.recv() => on_progress(&ev),
            r = &mut task => break r,
        }
    };
    local.finish().await;
    let tail = remote.tail.clone();
    remote.finish(FINISH_LIMIT).await;
    drop(session);
    let mut report = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => {
            return Err(SshError::RemoteStart {
                target: target.to_string(),
                why: format!(
                    "the migration's task failed ({e}); the far side said: {}",
                    tail.last("nothing")
                ),
            })
        }
    };
    report.destination = Some(target.host.clone());
    report.ssh = Some(ferry_types::ssh::ViaSsh {
        target: target.to_string(),
        connect_ms,
        remote_binary: binary.path,
        copied_bytes: binary.copied,
        start_ms,
    });
    Ok(report)
}

/// Until dropped, SIGINT, SIGTERM and SIGHUP do not stop this process; each says why.
struct HeldSignals(tokio::task::JoinHandle<()>);

impl Drop for HeldSignals {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn hold_signals() -> Option<HeldSignals> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).ok()?;
    let mut term = signal(SignalKind::terminate()).ok()?;
    let mut hup = signal(SignalKind::hangup()).ok()?;
    Some(HeldSignals(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            eprintln!("ferry: the migration goes on until it has ended (done, or rolled back): stopping now would leave the container frozen");
        }
    })))
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
