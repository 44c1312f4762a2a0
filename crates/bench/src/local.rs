//! `ferry bench local`: checkpoint and restore of Redis on one host, by size.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ferry_containers::local::{self, CgroupFreeze, CheckpointRequest, RestoreRequest};
use ferry_criu::plan::NetworkLock;
use ferry_runtime::bundle::{create_host_program_bundle, HostProgramSpec, CRIU_CONFIG_ANNOTATION};
use ferry_runtime::{Runc, Runtime};

use crate::redis::{server_args, RedisTarget};
use crate::row::{Row, Sample};

#[derive(Debug, Clone)]
pub struct LocalBench {
    pub sizes: Vec<u64>,
    pub runs: usize,
    pub criu: PathBuf,
    pub network_lock: NetworkLock,
    /// Where the container's bundle and images go (a disk, or a tmpfs).
    pub work_root: PathBuf,
    /// Copy the images to another directory before restoring from the copy (as a
    /// transfer between hosts sharing nothing would).
    pub copy: bool,
    /// Write the images to stable storage (`sync`) after each write, as a checkpoint on
    /// disk that must survive the host does.
    pub durable: bool,
}

impl LocalBench {
    /// Checkpoint and restore in place, under `/run/ferry-bench`.
    pub fn in_place(
        sizes: Vec<u64>,
        runs: usize,
        criu: PathBuf,
        network_lock: NetworkLock,
    ) -> Self {
        Self {
            sizes,
            runs,
            criu,
            network_lock,
            work_root: PathBuf::from("/run/ferry-bench"),
            copy: false,
            durable: false,
        }
    }
}

/// One checkpoint and restore of a Redis holding `size` bytes.
async fn one_run(b: &LocalBench, size: u64, tag: &str) -> anyhow::Result<Sample> {
    let work = b.work_root.join(format!("local-{tag}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let ns = format!("ferry-bench-{tag}");
    let guard = Cleanup {
        work: work.clone(),
        ns: ns.clone(),
    };
    run(&["ip", "netns", "add", &ns])?;
    run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
    let bundle = work.join("bundle");
    let mut annotations = BTreeMap::new();
    annotations.insert(
        CRIU_CONFIG_ANNOTATION.to_string(),
        work.join("criu.conf").display().to_string(),
    );
    create_host_program_bundle(
        &bundle,
        &HostProgramSpec {
            args: server_args(6379),
            netns: Some(format!("/run/netns/{ns}")),
            annotations,
            ..Default::default()
        },
    )?;
    let runc = Runc::new(work.join("runc"), &b.criu);
    runc.run_detached("redis", &bundle).await?;
    let target = RedisTarget {
        netns: ns.clone(),
        host: "127.0.0.1".into(),
        port: 6379,
    };
    target.wait_ready(Duration::from_secs(10))?;
    target.fill(size)?;
    let images = work.join("images");
    let cp = local::checkpoint(
        &runc,
        &CgroupFreeze,
        &CheckpointRequest {
            container: "redis".into(),
            images: images.clone(),
            leave_running: false,
            tcp_established: true,
            file_locks: false,
            network_lock: b.network_lock,
        },
    )
    .await?;
    let (images, between_ms) = carry(b, &work, images)?;
    let rs = local::restore(
        &runc,
        &RestoreRequest {
            container: "redis".into(),
            images,
            bundle,
            tcp_established: true,
            file_locks: false,
            network_lock: b.network_lock,
        },
    )
    .await?;
    target
        .wait_ready(Duration::from_secs(10))
        .context("Redis after restore")?;
    let _ = runc.delete("redis", true).await;
    drop(guard);
    let mut s = Sample {
        downtime_ms: cp.total_ms + between_ms + rs.total_ms,
        total_ms: cp.total_ms + between_ms + rs.total_ms,
        ..Default::default()
    };
    s.extra.insert("checkpoint_ms".into(), cp.total_ms);
    s.extra.insert("copy_sync_ms".into(), between_ms);
    s.extra.insert("restore_ms".into(), rs.total_ms);
    if let Some(d) = cp.criu.dump {
        s.extra
            .insert("criu_frozen_ms".into(), f64::from(d.frozen_time_us) / 1e3);
    }
    if let Some(i) = cp.images {
        s.extra
            .insert("image_mb".into(), i.total_bytes as f64 / 1e6);
    }
    Ok(s)
}

/// What happens to the images between the checkpoint and the restore: synced when
/// durable, copied to another directory when asked; where they are then, and how long
/// it took.
fn carry(
    b: &LocalBench,
    work: &std::path::Path,
    images: PathBuf,
) -> anyhow::Result<(PathBuf, f64)> {
    let t = std::time::Instant::now();
    if b.durable {
        run(&["sync"])?;
    }
    let images = match b.copy {
        true => {
            let copy = work.join("images-copy");
            run(&[
                "cp",
                "-a",
                &images.display().to_string(),
                &copy.display().to_string(),
            ])?;
            if b.durable {
                run(&["sync"])?;
            }
            copy
        }
        false => images,
    };
    Ok((images, ferry_types::ms(t.elapsed())))
}

struct Cleanup {
    work: PathBuf,
    ns: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let root = self.work.join("runc");
        let _ = std::process::Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["delete", "-f", "redis"])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.ns])
            .output();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn run(argv: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{} failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs the bench: one warm-up run per size, then `runs` measured runs.
pub async fn run_bench(b: &LocalBench) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &size in &b.sizes {
        let mut samples = Vec::new();
        for i in 0..=b.runs {
            let s = one_run(b, size, &format!("{}-{i}", std::process::id())).await?;
            if i > 0 {
                samples.push(s);
            }
        }
        rows.extend(Row::from_samples("ferry-local", size, &samples));
    }
    Ok(rows)
}
