//! `ferry migrate`: move a running container to another host.

use std::path::PathBuf;

use anyhow::Context;
use ferry_engine::Report;
use ferry_proto::{Fault, Message, MigrateOptions, Strategy};
use ferry_transport::{Endpoint, Secret};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container to move.
    container: String,
    /// Destination: a lab host name, or an agent address HOST:PORT.
    #[arg(long)]
    to: String,
    /// cold (every page moves before the container restarts), postcopy (the container
    /// restarts at once, its pages follow), or auto (cold, or postcopy when allowed).
    #[arg(long, default_value = "cold")]
    strategy: Strategy,
    /// Let --strategy auto choose post-copy. Post-copy ties the container to the source
    /// until its last page arrived: if the link or the source is lost before, the
    /// container stops at the destination and stays frozen at the source.
    #[arg(long)]
    allow_postcopy: bool,
    /// The agent that runs the container now: a lab host name, a Unix socket, or
    /// HOST:PORT. Default: in a lab, the host running it; otherwise /var/lib/ferry/agent.sock.
    #[arg(long)]
    agent: Option<String>,
    /// Secret shared with the agents, for an agent reached over TCP.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Lab to resolve host names in.
    #[arg(long, env = "FERRY_LAB", default_value = "lab")]
    lab: String,
    /// Do not checkpoint established TCP connections.
    #[arg(long)]
    no_tcp_established: bool,
    /// Checkpoint file locks.
    #[arg(long)]
    file_locks: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Inject a fault (tests; agents must allow it).
    #[arg(long, hide = true, value_parser = parse_fault)]
    inject_fault: Option<Fault>,
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    serde_json::from_value(serde_json::Value::String(s.replace('-', "_")))
        .map_err(|_| format!("unknown fault '{s}'"))
}

/// Where to reach the source agent, and the destination's address.
async fn resolve(a: &Args) -> anyhow::Result<(Endpoint, Option<Secret>, String)> {
    let lab = ferry_lab::LabState::load(&a.lab).ok();
    let dest = match a.to.parse::<Endpoint>() {
        Ok(Endpoint::Tcp(addr)) => addr.to_string(),
        _ => match &lab {
            Some(l) => l.host(&a.to)?.listen.to_string(),
            None => anyhow::bail!(
                "'{}' is neither HOST:PORT nor a host of a running lab",
                a.to
            ),
        },
    };
    let secret = match &a.secret_file {
        Some(p) => Some(Secret::from_file(p)?),
        None => None,
    };
    let source = super::agent_of(a.agent.as_deref(), lab.as_ref(), &a.container, "running").await?;
    Ok((source, secret, dest))
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let (source, secret, dest) = resolve(&a).await?;
    let mut conn = ferry_agent::client::control(&source, secret.as_ref())
        .await
        .with_context(|| format!("cannot reach the source agent at {source}"))?;
    let options = MigrateOptions {
        strategy: a.strategy,
        tcp_established: !a.no_tcp_established,
        file_locks: a.file_locks,
        allow_postcopy: a.allow_postcopy,
        inject_fault: a.inject_fault,
        ..Default::default()
    };
    let msg = Message::Migrate {
        container: a.container.clone(),
        dest,
        options,
    };
    let bar = crate::output::Progress::new();
    let reply = ferry_agent::client::request(&mut conn, &msg, |ev| bar.update(ev)).await?;
    bar.finish();
    match reply {
        Message::Report { report } => {
            let r: Report = serde_json::from_value(report)
                .context("the agent sent a report ferry cannot read")?;
            crate::output::emit_report(&r, a.json, a.report.as_deref())?;
            if r.outcome.is_success() {
                Ok(0)
            } else {
                eprintln!(
                    "ferry: {}: {}",
                    r.outcome.name(),
                    r.reason.as_deref().unwrap_or("see the report")
                );
                Ok(1)
            }
        }
        Message::Error { message } => anyhow::bail!("{message}"),
        other => anyhow::bail!("unexpected answer '{}' from the agent", other.name()),
    }
}
