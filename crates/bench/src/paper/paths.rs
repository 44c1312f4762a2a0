//! Thesis Fig. 4.1: the time to checkpoint a process and move its images, by the path
//! the images take: files on a disk copied to another directory, files on a tmpfs
//! copied, or pages streamed to the other host as they are dumped (CRIU's page server;
//! here ferry's cold migration between lab hosts), for a small and a ~900 MB Redis.

use std::path::PathBuf;

use crate::local::{run_bench as local_bench, LocalBench};
use crate::row::Row;

/// Where the tmpfs path's images go.
const TMPFS: &str = "/run/ferry-bench-tmpfs";
/// Where the disk path's images go.
const DISK: &str = "/var/tmp/ferry-bench-disk";

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The three paths' rows (methods `disk`, `tmpfs`, `page-server`) at `sizes`.
pub async fn run(
    sizes: &[u64],
    runs: usize,
    ferry: &std::path::Path,
    criu: &std::path::Path,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let local = |root: &str, durable: bool| LocalBench {
        sizes: sizes.to_vec(),
        runs,
        criu: criu.to_path_buf(),
        network_lock: ferry_criu::features::host_network_lock(),
        work_root: PathBuf::from(root),
        copy: true,
        durable,
    };
    for mut r in local_bench(&local(DISK, true)).await? {
        r.method = "disk".into();
        rows.push(r);
    }
    std::fs::create_dir_all(TMPFS)?;
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=60%",
        "ferry-bench",
        TMPFS,
    ])?;
    let tmpfs = local_bench(&local(TMPFS, false)).await;
    let _ = sh(&["umount", "-l", TMPFS]);
    for mut r in tmpfs? {
        r.method = "tmpfs".into();
        rows.push(r);
    }
    let cold = crate::cold::run_bench(&crate::cold::ColdBench {
        sizes: sizes.to_vec(),
        runs,
        ferry: ferry.to_path_buf(),
        criu: criu.to_path_buf(),
        link: None,
        delay_ms: 0.0,
    })
    .await?;
    for mut r in cold.into_iter().filter(|r| r.method == "ferry-cold") {
        // ferry's own freeze-to-run, as the local paths measure theirs.
        if let Some(f) = r.extra.get("freeze_to_run_ms").cloned() {
            r.downtime_ms = f;
        }
        r.method = "page-server".into();
        rows.push(r);
    }
    Ok(rows)
}
