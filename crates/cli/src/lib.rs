//! The `ferry` command line: argument parsing, exit codes, output. The binary at the
//! workspace root only calls [`main`].

mod cmd;
mod output;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move running containers between hosts with CRIU"
)]
struct Cli {
    /// Log verbosity for ferry's own messages (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "FERRY_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tell what this host can do, and how to fix what it cannot.
    Doctor(cmd::doctor::Args),
    /// Checkpoint a runc container on this host into a directory.
    Checkpoint(cmd::checkpoint::Args),
    /// Restore a container on this host from a checkpoint directory.
    Restore(cmd::restore::Args),
    /// Make OCI bundles that run programs of this host (no image registry needed).
    #[command(subcommand)]
    Bundle(cmd::bundle::Command),
    /// Run the agent, the daemon every host runs.
    Agent(cmd::agent::Args),
    /// Move a running container to another host.
    Migrate(cmd::migrate::Args),
    /// Resume a container an agent keeps frozen after a failed migration.
    Resume(cmd::resume::Args),
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
}

/// Runs the `ferry` command and exits.
pub fn main() {
    let cli = Cli::parse();
    output::init_logging(&cli.log);
    // Entering a network namespace must happen before the runtime starts its threads.
    if let Command::Agent(a) = &cli.command {
        if let Some(ns) = &a.netns {
            if let Err(e) = cmd::agent::enter_netns(ns) {
                output::fail(&format!("{e:#}"));
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => output::fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Doctor(a) => cmd::doctor::run(a).await,
            Command::Checkpoint(a) => cmd::checkpoint::run(a).await,
            Command::Restore(a) => cmd::restore::run(a).await,
            Command::Bundle(c) => cmd::bundle::run(c).await,
            Command::Bench(c) => cmd::bench::run(c).await,
            Command::Agent(a) => cmd::agent::run(a).await,
            Command::Migrate(a) => cmd::migrate::run(a).await,
            Command::Lab(a) => cmd::lab::run(a).await,
            Command::Certs(a) => cmd::certs::run(a),
            Command::Resume(a) => cmd::resume::run(a).await,
            Command::Probe(c) => cmd::probe::run(c).await,
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => output::fail(&format!("{e:#}")),
    }
}
