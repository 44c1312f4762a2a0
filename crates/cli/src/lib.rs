//! The `ferry` command line: argument parsing, exit codes, output. The binary at the
//! workspace root puts [`Command`] under its parser next to `ferry agent`, and calls
//! [`run`] (or [`exec`] for the agent).

mod cmd;
mod output;

use std::future::Future;

use clap::Subcommand;

/// The commands of `ferry`, but `ferry agent` (the agent's crate has it).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tell what this host can do, and how to fix what it cannot.
    Doctor(cmd::doctor::Args),
    /// Checkpoint a runc container on this host into a directory.
    Checkpoint(cmd::checkpoint::Args),
    /// Restore a container on this host from a checkpoint directory.
    Restore(cmd::restore::Args),
    /// Make OCI bundles that run programs of this host (no image registry needed).
    #[command(subcommand)]
    Bundle(cmd::bundle::Command),
    /// Read, change and compare a checkpoint's CRIU images, byte for byte.
    #[command(subcommand)]
    Images(cmd::images::Command),
    /// Move a running container to another host.
    Migrate(cmd::migrate::Args),
    /// What a migration of a container would find and do, before anything is frozen.
    Check(cmd::check::Args),
    /// Resume a container an agent keeps frozen after a failed migration.
    Resume(cmd::resume::Args),
    /// Keep an up-to-date checkpoint of a running container on another host.
    Standby(cmd::standby::Args),
    /// Restore a container on the host holding its standby checkpoint (its source is gone).
    Failover(cmd::standby::FailoverArgs),
    /// A multi-host testbed on this machine, built from network namespaces.
    Lab(cmd::lab::Args),
    /// The deployment's own CA and its hosts' certificates, for mutual TLS.
    Certs(cmd::certs::Args),
    /// Clients that measure what users see during a migration.
    #[command(subcommand)]
    Probe(cmd::probe::Command),
    /// Benchmarks that print their figures next to a baseline's.
    #[command(subcommand)]
    Bench(cmd::bench::Command),
    /// Started by an agent during post-copy: stops the container if the agent dies.
    #[command(hide = true)]
    Keeper(cmd::keeper::Args),
}

/// What `ferry migrate --to ssh://…` runs: a migration without agents, whose source is
/// this process. The binary plugs in the agent's ([`Daemonless::migrate`]); the CLI itself
/// only drives agents.
pub trait Daemonless: Sync {
    /// Moves `container` to `to` (`ssh://…`): the report, whatever its outcome, or why
    /// nothing was tried.
    fn migrate<'a>(
        &'a self,
        to: &'a str,
        container: &'a str,
        options: ferry_types::MigrateOptions,
        progress: &'a mut dyn FnMut(&ferry_proto::ControlReply),
    ) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<ferry_types::Report>> + 'a>>;
}

/// Runs `command` with ferry's own messages logged at `log`, and exits. `daemonless`
/// runs migrations over SSH.
pub fn run(command: Command, log: &str, daemonless: &'static dyn Daemonless) -> ! {
    exec(log, || Ok(()), async move {
        match command {
            Command::Doctor(a) => cmd::doctor::run(a).await,
            Command::Checkpoint(a) => cmd::checkpoint::run(a).await,
            Command::Restore(a) => cmd::restore::run(a).await,
            Command::Bundle(c) => cmd::bundle::run(c).await,
            Command::Bench(c) => cmd::bench::run(c).await,
            Command::Images(c) => cmd::images::run(c).await,
            Command::Migrate(a) => cmd::migrate::run(a, daemonless).await,
            Command::Check(a) => cmd::check::run(a).await,
            Command::Lab(a) => cmd::lab::run(a).await,
            Command::Certs(a) => cmd::certs::run(a),
            Command::Resume(a) => cmd::resume::run(a).await,
            Command::Standby(a) => cmd::standby::run(a).await,
            Command::Failover(a) => cmd::standby::failover(a).await,
            Command::Probe(c) => cmd::probe::run(c).await,
            Command::Keeper(a) => cmd::keeper::run(a),
        }
    })
}

/// Runs a command of the `ferry` binary and exits: logs at `log`, calls `before` while
/// this is the process's only thread (entering a network namespace must happen before
/// the async runtime starts its threads), then runs `task` on that runtime. Exits with
/// the task's code, or with 1 after one sentence (`ferry: why`) when anything fails.
pub fn exec<T>(log: &str, before: impl FnOnce() -> anyhow::Result<()>, task: T) -> !
where
    T: Future<Output = anyhow::Result<i32>>,
{
    output::init_logging(log);
    if let Err(e) = before() {
        output::fail(&format!("{e:#}"));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => output::fail(&format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(task) {
        Ok(code) => std::process::exit(code),
        Err(e) => output::fail(&format!("{e:#}")),
    }
}
