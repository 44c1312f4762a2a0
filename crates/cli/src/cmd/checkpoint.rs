//! `ferry checkpoint`.

use std::path::PathBuf;

use ferry_containers::local::{self, CgroupFreeze, CheckpointRequest};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's name in runc.
    container: String,
    /// Directory for the checkpoint images (created; must not hold a checkpoint).
    #[arg(long)]
    images: PathBuf,
    /// Keep the container running after the checkpoint.
    #[arg(long)]
    leave_running: bool,
    /// Checkpoint established TCP connections.
    #[arg(long)]
    tcp_established: bool,
    /// Checkpoint file locks held by the container's processes.
    #[arg(long)]
    file_locks: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    rt: super::RuntimeOpts,
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let runc = a.rt.runc()?;
    let req = CheckpointRequest {
        container: a.container,
        images: a.images,
        leave_running: a.leave_running,
        tcp_established: a.tcp_established,
        file_locks: a.file_locks,
        network_lock: ferry_criu::features::host_network_lock(),
    };
    let report = local::checkpoint(&runc, &CgroupFreeze, &req).await?;
    crate::output::emit_report(&report, a.json, a.report.as_deref())?;
    Ok(0)
}
