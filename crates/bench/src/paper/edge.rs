//! Seed 002's edge setting: a container limited to 128 MB and one CPU, with a snapshot
//! of about 16 MB, moved back and forth between two hosts; the save (dump), transfer and
//! resume (restore) phases of each move (its Table 1), and the host's CPU and memory use
//! sampled through one move (its Figures 4 and 5).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_types::{MigrateOptions, Report};

use crate::labctl::BenchLab;
use crate::row::{Row, Sample};

/// One sample of the host: seconds since the move started, CPU busy (%, all cores), and
/// memory in use (MB).
pub type Telemetry = Vec<(f64, f64, f64)>;

fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = f.get(3)? + f.get(4).unwrap_or(&0);
    Some((f.iter().sum(), idle))
}

fn mem_used_mb() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb = |k: &str| -> f64 {
        info.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (kb("MemTotal:") - kb("MemAvailable:")) / 1024.0
}

/// Samples the host every 50 ms until stopped.
fn sample(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Telemetry> {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut last = cpu_times();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            let now = cpu_times();
            if let (Some((t1, i1)), Some((t2, i2))) = (last, now) {
                let busy = (t2 - t1).saturating_sub(i2 - i1) as f64;
                let pct = if t2 > t1 {
                    busy / (t2 - t1) as f64 * 100.0
                } else {
                    0.0
                };
                out.push((t0.elapsed().as_secs_f64(), pct, mem_used_mb()));
            }
            last = now;
        }
        out
    })
}

/// Limits `name` on `host` to 128 MB and one CPU.
fn limit(lab: &BenchLab, host: &str, name: &str) -> anyhow::Result<()> {
    let root = lab.lab.host(host)?.runtime_root.clone();
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(root)
        .args([
            "update",
            "--memory",
            "134217728",
            "--memory-swap",
            "134217728",
        ])
        .args(["--cpu-period", "100000", "--cpu-quota", "100000", name])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "runc update: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn phases(r: &Report, names: &[&str]) -> f64 {
    r.phases
        .iter()
        .filter(|p| names.contains(&p.name.as_str()))
        .map(|p| p.ms)
        .sum()
}

/// `moves` moves of a 128 MB, one-CPU Redis holding `data` bytes; rows `save`,
/// `transfer`, `resume` (their downtime column is the phase's time) and the telemetry
/// of the first move.
pub async fn run(
    lab: &mut BenchLab,
    data: u64,
    moves: usize,
) -> anyhow::Result<(Vec<Row>, Telemetry)> {
    let (t, _) = lab.run_redis("a", "edge").await?;
    t.fill(data)?;
    let (mut save, mut transfer, mut resume) = (Vec::new(), Vec::new(), Vec::new());
    let mut telemetry = Vec::new();
    let mut at = "a";
    for i in 0..moves {
        let to = if at == "a" { "b" } else { "a" };
        limit(lab, at, "edge")?;
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample(stop.clone());
        let r = lab.migrate(at, "edge", to, MigrateOptions::default()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let samples = sampler.join().unwrap_or_default();
        let r = r?;
        if !r.outcome.is_success() {
            anyhow::bail!("move {i} failed: {}", r.reason.unwrap_or_default());
        }
        if i == 0 {
            telemetry = samples;
        }
        let one = |ms: f64| Sample {
            downtime_ms: ms,
            total_ms: r.total_ms,
            bytes_sent: r.bytes_sent as f64,
            ..Default::default()
        };
        save.push(one(phases(&r, &["freeze", "lock", "dump"])));
        transfer.push(one(phases(&r, &["pages", "detach", "images"])));
        resume.push(one(phases(&r, &["restore", "commit"])));
        at = to;
    }
    lab.remove(at, "edge").await;
    let mut rows = Vec::new();
    for (m, s) in [("save", save), ("transfer", transfer), ("resume", resume)] {
        rows.extend(Row::from_samples(m, data, &s));
    }
    Ok((rows, telemetry))
}
