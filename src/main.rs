//! The `ferry` binary: one command line for the agent (`ferry agent`) and for everything
//! else (ferry-cli's commands).

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
    /// Run the agent, the daemon every host runs.
    Agent(ferry_agent::cli::Args),
    /// Started over SSH by `ferry migrate --to ssh://…`: the destination half.
    #[command(hide = true)]
    SshServe,
    #[command(flatten)]
    Other(ferry_cli::Command),
}

/// Migrations over SSH, by the agent's code running in this process.
struct OverSsh;

impl ferry_cli::Daemonless for OverSsh {
    fn migrate<'a>(
        &'a self,
        to: &'a str,
        container: &'a str,
        options: ferry_types::MigrateOptions,
        progress: &'a mut dyn FnMut(&ferry_proto::ControlReply),
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<ferry_types::Report>> + 'a>,
    > {
        Box::pin(async move {
            Ok(ferry_agent::ssh::run::migrate(to, container, options, progress).await?)
        })
    }
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(a) => {
            let netns = a.netns.clone();
            let enter = move || match &netns {
                Some(ns) => ferry_agent::cli::enter_netns(ns),
                None => Ok(()),
            };
            ferry_cli::exec(&cli.log, enter, ferry_agent::cli::run(a))
        }
        Command::SshServe => ferry_cli::exec(&cli.log, || Ok(()), async {
            Ok(ferry_agent::ssh::serve::serve().await?)
        }),
        Command::Other(c) => ferry_cli::run(c, &cli.log, &OverSsh),
    }
}
