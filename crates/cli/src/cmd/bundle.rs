//! `ferry bundle create`: an OCI bundle that runs a program of this host.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferry_runtime::bundle::{create_host_program_bundle, HostProgramSpec, CRIU_CONFIG_ANNOTATION};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a bundle whose root file system is empty but for read-only bind mounts of
    /// the host's /usr and /etc, running the given command as root.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Bundle directory to create.
    dir: PathBuf,
    /// Join this network namespace (a path such as /run/netns/NAME, created beforehand).
    #[arg(long)]
    netns: Option<String>,
    /// CRIU configuration file runc should pass to CRIU for this container; ferry writes
    /// it before each checkpoint or restore. Default: DIR/criu.conf.
    #[arg(long)]
    criu_config: Option<String>,
    /// Environment variables (KEY=VALUE), repeatable.
    #[arg(long = "env")]
    env: Vec<String>,
    /// The command to run, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Create(a) => {
            if a.dir.join("config.json").exists() {
                anyhow::bail!(
                    "{} already holds a bundle; choose another directory",
                    a.dir.display()
                );
            }
            let dir = std::path::absolute(&a.dir)?;
            let conf = a
                .criu_config
                .unwrap_or_else(|| dir.join("criu.conf").display().to_string());
            let mut annotations = BTreeMap::new();
            annotations.insert(CRIU_CONFIG_ANNOTATION.to_string(), conf);
            let spec = HostProgramSpec {
                args: a.command,
                env: a.env,
                netns: a.netns,
                hostname: None,
                annotations,
                cgroups_path: None,
            };
            create_host_program_bundle(&dir, &spec)?;
            println!("{}", dir.display());
            Ok(0)
        }
    }
}
