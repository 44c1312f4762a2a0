//! `ferry bench`: benchmarks that print their figures and compare with baselines.

use std::path::PathBuf;

use ferry_bench::row::{print_table, write_json};
use ferry_bench::sizes::parse_sizes;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Checkpoint and restore of Redis on this host, by memory size.
    Local(LocalArgs),
    /// ferry's cold migration against the naive method, between lab hosts.
    Cold(ColdArgs),
    /// ferry's post-copy against plain runc + CRIU lazy pages, ferry's cold migration and
    /// the naive method, between lab hosts.
    Postcopy(PostcopyArgs),
}

#[derive(Debug, clap::Args)]
pub struct PostcopyArgs {
    /// Redis data sizes to test (decimal units).
    #[arg(long, default_value = "0,100M,1G,4G")]
    sizes: String,
    /// Measured runs per size (one warm-up run comes first).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Shape the lab's links (e.g. 1gbit); default unshaped.
    #[arg(long)]
    link: Option<String>,
    #[arg(long, default_value_t = 0.0)]
    delay: f64,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ColdArgs {
    /// Redis data sizes to test (decimal units).
    #[arg(long, default_value = "0,100M,1G")]
    sizes: String,
    /// Measured runs per size (one warm-up run comes first).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Shape the lab's links (e.g. 1gbit); default unshaped.
    #[arg(long)]
    link: Option<String>,
    #[arg(long, default_value_t = 0.0)]
    delay: f64,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
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
        Command::Cold(a) => {
            let criu = ferry_criu::features::CriuBinary::locate(None)?;
            let b = ferry_bench::cold::ColdBench {
                sizes: parse_sizes(&a.sizes).map_err(anyhow::Error::msg)?,
                runs: a.runs,
                ferry: std::env::current_exe()?,
                criu: criu.path,
                link: a.link,
                delay_ms: a.delay,
            };
            let rows = ferry_bench::cold::run_bench(&b).await?;
            println!("downtime = longest request latency a client doing INCR every 1 ms saw; freeze_to_run = the tool's own measure");
            print_table(&rows, &["freeze_to_run_ms", "source_mem_mb"]);
            if let Some(p) = a.json {
                write_json(&p, &rows)?;
            }
            Ok(0)
        }
        Command::Postcopy(a) => {
            let criu = ferry_criu::features::CriuBinary::locate(None)?;
            let b = ferry_bench::postcopy::PostcopyBench {
                sizes: parse_sizes(&a.sizes).map_err(anyhow::Error::msg)?,
                runs: a.runs,
                ferry: std::env::current_exe()?,
                criu: criu.path,
                link: a.link,
                delay_ms: a.delay,
            };
            let rows = ferry_bench::postcopy::run_bench(&b).await?;
            println!("downtime = longest request latency a client doing INCR every 1 ms saw; freeze_to_run = the tool's own measure;");
            println!("postcopy = the container runs until its last page arrived; pagein = the client's latencies meanwhile");
            print_table(
                &rows,
                &[
                    "freeze_to_run_ms",
                    "postcopy_ms",
                    "pagein_max_ms",
                    "pagein_p99_ms",
                ],
            );
            if let Some(p) = a.json {
                write_json(&p, &rows)?;
            }
            Ok(0)
        }
    }
}
