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
    #[command(flatten)]
    Other(ferry_cli::Command),
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
        Command::Other(c) => ferry_cli::run(c, &cli.log),
    }
}
