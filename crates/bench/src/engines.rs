//! `ferry bench engines`: a container engine's own checkpoint, copy and restore against
//! `ferry migrate` of the same engine's container, in one run, on the same lab hosts,
//! with a client incrementing a counter on one connection throughout.
//!
//! Podman: `podman container checkpoint --export --tcp-established` on `a`, the archive
//! copied to `b`'s directory, `podman container restore --import --tcp-established` on
//! `b` (method `podman-export-import`), against `ferry-podman-cold` and
//! `ferry-podman-precopy`.
//!
//! Docker: `docker checkpoint create` on `a` (with `tcp-established` in the host-wide
//! CRIU configuration file, since Docker has no flag for it), the checkpoint's directory
//! copied into the same container made beforehand on `b` (`docker create`, same name,
//! address and MAC), `docker start --checkpoint` on `b` (method `docker-checkpoint`),
//! against `ferry-docker-cold` and `ferry-docker-precopy`.
//!
//! The image is on both hosts beforehand, so that every method moves the container and
//! not its image.

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
    pub engines: Vec<Engine>,
}

/// An engine whose own checkpoint and restore ferry is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Podman,
    Docker,
}

impl Engine {
    /// The methods, in the order each run tries them: the engine's own first.
    pub fn methods(self) -> [&'static str; 3] {
        match self {
            Engine::Podman => [
                "podman-export-import",
                "ferry-podman-cold",
                "ferry-podman-precopy",
            ],
            Engine::Docker => [
                "docker-checkpoint",
                "ferry-docker-cold",
                "ferry-docker-precopy",
            ],
        }
    }

    fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    /// `ENGINE ARGS` as lab host `h`'s; its output, or why it failed.
    fn run(self, h: &LabHost, args: &[&str]) -> anyhow::Result<String> {
        let out = match self {
            Engine::Podman => ferry_lab::engines::podman(h, args),
            Engine::Docker => ferry_lab::docker::docker(h, args),
        }
        .with_context(|| format!("running {}", self.program()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed: {}",
                self.program(),
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl std::str::FromStr for Engine {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "podman" => Ok(Engine::Podman),
            "docker" => Ok(Engine::Docker),
            other => bail!("'{other}' is not an engine this bench knows: podman or docker"),
        }
    }
}

const IMAGE: &str = "localhost/ferry-bench-redis:1";
const IP: &str = "10.77.3.60";

/// `run -d` or `create` of the bench's Redis container, by `engine`'s command line.
fn redis_args(engine: Engine, verb: &str, name: &str) -> anyhow::Result<Vec<String>> {
    // Every run's container has the same address and MAC: no client waits for a stale
    // neighbour entry to expire. Docker derives the MAC from the address itself (and
    // its client may be too new to give one to an older daemon).
    let mac = ferry_types::net::mac_for(IP.parse()?);
    let mac: &[&str] = match engine {
        Engine::Podman => &["--mac-address", &mac],
        Engine::Docker => &[],
    };
    let mut args: Vec<String> = [verb]
        .into_iter()
        .chain(match verb {
            "run" => vec!["-d"],
            _ => vec![],
        })
        .chain(["--name", name, "--network", "lab", "--ip", IP])
        .chain(mac.iter().copied())
        .chain([IMAGE])
        .map(str::to_string)
        .collect();
    args.extend(server_args(6379));
    Ok(args)
}

/// Starts a Redis container with `engine` on `host`, filled to `size`.
fn start(
    lab: &BenchLab,
    engine: Engine,
    host: &str,
    name: &str,
    size: u64,
) -> anyhow::Result<RedisTarget> {
    let h = lab.lab.host(host)?;
    let run = redis_args(engine, "run", name)?;
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    engine.run(h, &run)?;
    let t = RedisTarget {
        netns: lab.lab.client_netns.clone(),
        host: IP.into(),
        port: 6379,
    };
    t.wait_ready(Duration::from_secs(10))?;
    t.fill(size)?;
    Ok(t)
}

fn remove_everywhere(lab: &BenchLab, engine: Engine, name: &str) {
    for h in &lab.lab.hosts {
        let _ = engine.run(h, &["rm", "--force", name]);
    }
}

/// Podman's own way: export, copy, import; (total ms, bytes, freeze to run ms).
fn export_import(lab: &BenchLab, name: &str, work: &Path) -> anyhow::Result<(f64, f64, f64)> {
    let (a, b) = (lab.lab.host("a")?, lab.lab.host("b")?);
    let podman = |h: &LabHost, args: &[&str]| Engine::Podman.run(h, args);
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
async fn one(
    lab: &BenchLab,
    engine: Engine,
    size: u64,
    name: &str,
    method: &str,
) -> anyhow::Result<Sample> {
    let t = start(lab, engine, "a", name, size)?;
    let probe = start_probe(&lab.lab.client_netns, target(&t)?, Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let work = ferry_lab::lab_dir(&lab.lab.name).join("bench-engines");
    std::fs::create_dir_all(&work)?;
    let moved = match method {
        "podman-export-import" => export_import(lab, name, &work),
        "docker-checkpoint" => docker_checkpoint(lab, name, &work).await,
        _ => {
            let strategy = match method {
                m if m.ends_with("-precopy") => Strategy::Precopy,
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
    remove_everywhere(lab, engine, name);
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

/// Runs the bench: a row per engine, method and size.
pub async fn run_bench(b: &EnginesBench) -> anyhow::Result<Vec<Row>> {
    for e in &b.engines {
        let needs = match e {
            Engine::Podman => "podman",
            Engine::Docker => "dockerd",
        };
        if ferry_lab::engines::which(needs).is_none() {
            bail!("{needs} is not installed here: run scripts/install-deps.sh first");
        }
    }
    let docker = b.engines.contains(&Engine::Docker);
    let lab = match docker {
        true => BenchLab::up_with_docker("bench", b.ferry.clone()).await?,
        false => BenchLab::up("bench", None, 0.0, b.ferry.clone()).await?,
    };
    let result = async {
        let programs =
            ["/usr/bin/redis-server", "/usr/bin/redis-cli", "/bin/sh"].map(PathBuf::from);
        ferry_lab::image::import_image(&lab.lab, IMAGE, &[], &programs)?;
        let mut rows = Vec::new();
        let mut n = 0;
        for &engine in &b.engines {
            let methods = engine.methods();
            for &size in &b.sizes {
                let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); methods.len()];
                // One warm-up run of each, then the measured ones, interleaved.
                for i in 0..=b.runs {
                    for (m, method) in methods.iter().enumerate() {
                        n += 1;
                        let s = one(&lab, engine, size, &format!("e{n}"), method).await?;
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
                for (m, method) in methods.iter().enumerate() {
                    rows.extend(Row::from_samples(method, size, &samples[m]));
                }
            }
        }
        Ok(rows)
    }
    .await;
    lab.down().await;
    result
}

/// Docker's own way: checkpoint, copy into the same container made beforehand on `b`,
/// start from the checkpoint; (total ms, bytes, freeze to run ms).
async fn docker_checkpoint(
    lab: &BenchLab,
    name: &str,
    _work: &Path,
) -> anyhow::Result<(f64, f64, f64)> {
    let (a, b) = (lab.lab.host("a")?, lab.lab.host("b")?);
    let docker = |h: &LabHost, args: &[&str]| Engine::Docker.run(h, args);
    let root = |h: &LabHost| -> anyhow::Result<PathBuf> {
        Ok(PathBuf::from(
            docker(h, &["info", "--format", "{{.DockerRootDir}}"])?.trim(),
        ))
    };
    let id = |h: &LabHost| -> anyhow::Result<String> {
        Ok(docker(h, &["inspect", "--format", "{{.Id}}", name])?
            .trim()
            .to_string())
    };
    let from_dir = root(a)?
        .join("containers")
        .join(id(a)?)
        .join("checkpoints/c1");
    // The destination's container exists before the clock starts: making it is not the
    // move's time.
    let create = redis_args(Engine::Docker, "create", name)?;
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    docker(b, &create)?;
    let to_dir = root(b)?
        .join("containers")
        .join(id(b)?)
        .join("checkpoints/c1");
    // Docker passes no --tcp-established: runc reads it from the host-wide file.
    let plan = ferry_criu::plan::CriuOptionPlan {
        config_lines: vec!["tcp-established".into()],
        ..Default::default()
    };
    let held = ferry_runtime::GlobalConfig::hold(&plan).await?;
    let t0 = Instant::now();
    let moved = (|| -> anyhow::Result<f64> {
        docker(a, &["checkpoint", "create", name, "c1"])?;
        std::fs::create_dir_all(&to_dir)?;
        let mut bytes = 0;
        for e in std::fs::read_dir(&from_dir)? {
            let e = e?;
            bytes += std::fs::copy(e.path(), to_dir.join(e.file_name()))?;
        }
        docker(b, &["start", "--checkpoint", "c1", name])?;
        Ok(bytes as f64)
    })();
    let total = t0.elapsed().as_secs_f64() * 1e3;
    drop(held);
    let _ = docker(a, &["rm", "--force", name]);
    let bytes = moved?;
    // Docker's checkpoint stops the container as it starts, and it runs again when
    // the start from the checkpoint returns: its freeze to run is the whole.
    Ok((total, bytes, total))
}
