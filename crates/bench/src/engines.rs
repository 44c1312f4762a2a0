//! `ferry bench engines`: a container engine's own checkpoint, copy and restore against
//! `ferry migrate` of the same engine's container, in one run, on the same lab hosts,
//! with a client incrementing a counter on one connection throughout.
//!
//! Podman: `podman container checkpoint --export --tcp-established` on `a`, the archive
//! copied to `b`'s directory, `podman container restore --import --tcp-established` on
//! `b` (method `podman-export-import`), against `ferry-podman-cold` and
//! `ferry-podman-precopy`. The image is on both hosts beforehand, so that every method
//! moves the container and not its image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferry_lab::LabHost;
use ferry_types::{MigrateOptions, Strategy};

use crate::cold::target;
use crate::labctl::{start_probe, BenchLab};
use crate::redis::{server_args, RedisTarget};
use crate::row::{Row, Sample};

#[derive(Debug, Clone)]
pub struct EnginesBench {
    pub sizes: Vec<u64>,
    pub runs: usize,
    pub ferry: PathBuf,
}

const IMAGE: &str = "localhost/ferry-bench-redis:1";
const IP: &str = "10.77.3.60";

/// Podman on a lab host; its output, or why it failed.
fn podman(h: &LabHost, args: &[&str]) -> anyhow::Result<String> {
    let out = ferry_lab::engines::podman(h, args).context("running podman")?;
    if !out.status.success() {
        bail!(
            "podman {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts a Redis container with Podman on `host`, filled to `size`.
fn start(lab: &BenchLab, host: &str, name: &str, size: u64) -> anyhow::Result<RedisTarget> {
    let h = lab.lab.host(host)?;
    let args = server_args(6379);
    // Every run's container has the same address and MAC: no client waits for a stale
    // neighbour entry to expire.
    let mac = ferry_types::net::mac_for(IP.parse()?);
    let mut run = vec![
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "lab",
        "--ip",
        IP,
        "--mac-address",
        &mac,
        IMAGE,
    ];
    run.extend(args.iter().map(String::as_str));
    podman(h, &run)?;
    let t = RedisTarget {
        netns: lab.lab.client_netns.clone(),
        host: IP.into(),
        port: 6379,
    };
    t.wait_ready(Duration::from_secs(10))?;
    t.fill(size)?;
    Ok(t)
}

fn remove_everywhere(lab: &BenchLab, name: &str) {
    for h in &lab.lab.hosts {
        let _ = ferry_lab::engines::podman(h, &["rm", "--force", "--time", "0", name]);
    }
}

/// Podman's own way: export, copy, import; (total ms, bytes, freeze to run ms).
fn export_import(lab: &BenchLab, name: &str, work: &Path) -> anyhow::Result<(f64, f64, f64)> {
    let (a, b) = (lab.lab.host("a")?, lab.lab.host("b")?);
    let (out, arrived) = (work.join("out.tar"), work.join("in.tar"));
    let t0 = Instant::now();
    podman(
        a,
        &[
            "container",
            "checkpoint",
            "--export",
            &out.to_string_lossy(),
            "--tcp-established",
            "--compress",
            "none",
            name,
        ],
    )?;
    std::fs::copy(&out, &arrived).context("copying the archive")?;
    podman(
        b,
        &[
            "container",
            "restore",
            "--import",
            &arrived.to_string_lossy(),
            "--tcp-established",
        ],
    )?;
    let total = t0.elapsed().as_secs_f64() * 1e3;
    let bytes = std::fs::metadata(&arrived).map(|m| m.len()).unwrap_or(0) as f64;
    let _ = podman(a, &["rm", "--force", name]);
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&arrived);
    // Podman freezes the container as its checkpoint starts and it runs again when the
    // restore ends: its freeze to run is the whole.
    Ok((total, bytes, total))
}

/// One move of a fresh container holding `size` bytes, by `method`.
async fn one(lab: &BenchLab, size: u64, name: &str, method: &str) -> anyhow::Result<Sample> {
    let t = start(lab, "a", name, size)?;
    let probe = start_probe(&lab.lab.client_netns, target(&t)?, Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let work = ferry_lab::lab_dir(&lab.lab.name).join("bench-engines");
    std::fs::create_dir_all(&work)?;
    let moved = match method {
        "podman-export-import" => export_import(lab, name, &work),
        _ => {
            let strategy = match method {
                "ferry-podman-precopy" => Strategy::Precopy,
                _ => Strategy::Cold,
            };
            let options = MigrateOptions {
                strategy: strategy.into(),
                ..Default::default()
            };
            lab.migrate("a", name, "b", options).await.and_then(|r| {
                if !r.outcome.is_success() {
                    bail!("ferry did not move it: {}", r.reason.unwrap_or_default());
                }
                Ok((
                    r.total_ms,
                    r.bytes_sent as f64,
                    r.downtime_ms.unwrap_or(0.0),
                ))
            })
        }
    };
    if moved.is_ok() {
        t.wait_ready(Duration::from_secs(10))?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = probe.stop()?;
    remove_everywhere(lab, name);
    let (total_ms, bytes, freeze_to_run) = moved?;
    if !seen.errors.is_empty() || seen.lost_or_repeated > 0 {
        bail!(
            "{method}: the client saw errors or lost increments: {:?}",
            seen.errors
        );
    }
    let mut s = Sample {
        downtime_ms: seen.max_latency_ms,
        total_ms,
        bytes_sent: bytes,
        ..Default::default()
    };
    s.extra.insert("freeze_to_run_ms".into(), freeze_to_run);
    Ok(s)
}

/// The methods, in the order each run tries them.
pub const METHODS: [&str; 3] = [
    "podman-export-import",
    "ferry-podman-cold",
    "ferry-podman-precopy",
];

/// Runs the bench: a row per method and size.
pub async fn run_bench(b: &EnginesBench) -> anyhow::Result<Vec<Row>> {
    if ferry_lab::engines::which("podman").is_none() {
        bail!("Podman is not installed here: run scripts/install-deps.sh first");
    }
    let lab = BenchLab::up("bench", None, 0.0, b.ferry.clone()).await?;
    let result = async {
        let programs =
            ["/usr/bin/redis-server", "/usr/bin/redis-cli", "/bin/sh"].map(PathBuf::from);
        ferry_lab::image::import_image(&lab.lab, IMAGE, &[], &programs)?;
        let mut rows = Vec::new();
        let mut n = 0;
        for &size in &b.sizes {
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); METHODS.len()];
            // One warm-up run of each, then the measured ones, interleaved.
            for i in 0..=b.runs {
                for (m, method) in METHODS.iter().enumerate() {
                    n += 1;
                    let s = one(&lab, size, &format!("e{n}"), method).await?;
                    eprintln!(
                        "  {} run {i}: {method} {:.0} ms (client-seen)",
                        crate::sizes::label(size),
                        s.downtime_ms
                    );
                    if i > 0 {
                        samples[m].push(s);
                    }
                }
            }
            for (m, method) in METHODS.iter().enumerate() {
                rows.extend(Row::from_samples(method, size, &samples[m]));
            }
        }
        Ok(rows)
    }
    .await;
    lab.down().await;
    result
}
