//! `ferry bench`: benchmarks that print their figures and compare with baselines.

use std::path::PathBuf;

use ferry_bench::row::{print_table, write_json};
use ferry_bench::sizes::parse_sizes;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Checkpoint and restore of Redis on this host, by memory size.
    Local(LocalArgs),
}

#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// Redis data sizes to test (decimal units).
    #[arg(long, default_value = "0,100M,1G")]
    sizes: String,
    /// Measured runs per size (one warm-up run comes first).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Local(a) => {
            let criu = ferry_criu::features::CriuBinary::locate(None)?;
            let b = ferry_bench::local::LocalBench {
                sizes: parse_sizes(&a.sizes).map_err(anyhow::Error::msg)?,
                runs: a.runs,
                criu: criu.path,
                network_lock: super::network_lock(),
            };
            let rows = ferry_bench::local::run_bench(&b).await?;
            print_table(
                &rows,
                &["checkpoint_ms", "restore_ms", "criu_frozen_ms", "image_mb"],
            );
            if let Some(p) = a.json {
                write_json(&p, &rows)?;
            }
            Ok(0)
        }
    }
}
