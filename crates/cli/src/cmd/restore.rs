//! `ferry restore`.

use std::path::PathBuf;

use ferry_containers::local::{self, RestoreRequest};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name for the restored container in runc.
    container: String,
    /// Directory holding the checkpoint images.
    #[arg(long)]
    images: PathBuf,
    /// The container's OCI bundle (config.json and root file system).
    #[arg(long)]
    bundle: PathBuf,
    /// Restore established TCP connections (use it if the checkpoint had them).
    #[arg(long)]
    tcp_established: bool,
    /// Restore file locks (use it if the checkpoint had them).
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
    let req = RestoreRequest {
        container: a.container,
        images: a.images,
        bundle: a.bundle,
        tcp_established: a.tcp_established,
        file_locks: a.file_locks,
        network_lock: ferry_criu::features::host_network_lock(),
    };
    let report = local::restore(&runc, &req).await?;
    crate::output::emit_report(&report, a.json, a.report.as_deref())?;
    Ok(0)
}
