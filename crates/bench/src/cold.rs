//! `ferry bench cold`: ferry's cold migration against the naive method, in one run, on
//! the same lab hosts, with a client measuring what it sees.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use ferry_types::{MigrateOptions, Strategy};

use crate::labctl::{start_probe, BenchLab};
use crate::row::{Row, Sample};

#[derive(Debug, Clone)]
pub struct ColdBench {
    pub sizes: Vec<u64>,
    pub runs: usize,
    pub ferry: PathBuf,
    pub criu: PathBuf,
    pub link: Option<String>,
    pub delay_ms: f64,
}

pub fn target(t: &crate::redis::RedisTarget) -> anyhow::Result<SocketAddr> {
    format!("{}:{}", t.host, t.port)
        .parse()
        .context("Redis address")
}

/// One ferry migration of a fresh Redis holding `size` bytes. For post-copy, the sample
/// also has `postcopy_ms` and the client's latencies while pages were still arriving
/// (`pagein_max_ms`, `pagein_p99_ms`).
pub async fn ferry_run(
    lab: &mut BenchLab,
    size: u64,
    name: &str,
    strategy: Strategy,
) -> anyhow::Result<Sample> {
    let (t, _) = lab.run_redis("a", name).await?;
    t.fill(size)?;
    let probe = start_probe(&lab.lab.client_netns, target(&t)?, Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = std::time::Instant::now();
    let report = lab
        .migrate(
            "a",
            name,
            "b",
            MigrateOptions {
                strategy: strategy.into(),
                ..Default::default()
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = probe.stop()?;
    lab.remove("b", name).await;
    lab.remove("a", name).await;
    let report = report?;
    if !report.outcome.is_success() {
        bail!(
            "ferry's migration did not succeed: {}",
            report.reason.unwrap_or_default()
        );
    }
    if !seen.errors.is_empty() || seen.lost_or_repeated > 0 {
        bail!(
            "the client saw errors or lost increments: {:?}",
            seen.errors
        );
    }
    let mut s = Sample {
        downtime_ms: seen.max_latency_ms,
        total_ms: report.total_ms,
        bytes_sent: report.bytes_sent as f64,
        ..Default::default()
    };
    s.extra
        .insert("freeze_to_run_ms".into(), report.downtime_ms.unwrap_or(0.0));
    insert_postcopy(&mut s, &report, &seen, t0);
    if let Some(u) = report.usage {
        let tmpfs = report.images.map_or(0, |i| i.total_bytes - i.pages_bytes);
        s.extra.insert(
            "source_mem_mb".into(),
            (u.peak_rss_kib_self + u.peak_rss_kib_children) as f64 / 1024.0 + tmpfs as f64 / 1e6,
        );
    }
    Ok(s)
}

/// Adds post-copy's time and the client's latencies while its pages came in; `t0` is when
/// the migration started.
pub fn insert_postcopy(
    s: &mut Sample,
    report: &ferry_types::Report,
    seen: &crate::probe::ProbeResult,
    t0: std::time::Instant,
) {
    let Some(pc) = report.postcopy_ms else { return };
    s.extra.insert("postcopy_ms".into(), pc);
    let phase_end = |name: &str| {
        report
            .phases
            .iter()
            .find(|p| p.name == name)
            .map(|p| t0 + Duration::from_secs_f64((p.start_ms + p.ms) / 1e3))
    };
    if let (Some(from), Some(to)) = (phase_end("commit"), phase_end("postcopy")) {
        insert_window(s, seen, from, to);
    }
}

/// Adds the client's latencies between `from` and `to` (the page-in window).
pub fn insert_window(
    s: &mut Sample,
    seen: &crate::probe::ProbeResult,
    from: std::time::Instant,
    to: std::time::Instant,
) {
    if let Some(w) = seen.window(from, to) {
        s.extra.insert("pagein_max_ms".into(), w.max_ms);
        s.extra.insert("pagein_p99_ms".into(), w.p99_ms);
    }
}

/// One naive migration of a fresh Redis holding `size` bytes.
pub async fn naive_run(
    lab: &mut BenchLab,
    criu: &std::path::Path,
    size: u64,
    name: &str,
) -> anyhow::Result<Sample> {
    let (t, net) = lab.run_redis("a", name).await?;
    t.fill(size)?;
    let probe = start_probe(&lab.lab.client_netns, target(&t)?, Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a, b) = (lab.lab.host("a")?.clone(), lab.lab.host("b")?.clone());
    let r = crate::naive::migrate(&lab.lab, criu, &a, &b, name, &net).await;
    if r.is_ok() {
        t.wait_ready(Duration::from_secs(10))?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = probe.stop()?;
    crate::naive::cleanup(&lab.lab, criu, &b, name, &net).await;
    lab.remove("a", name).await;
    let times = r?;
    if !seen.errors.is_empty() || seen.lost_or_repeated > 0 {
        bail!(
            "the client saw errors or lost increments with the naive method: {:?}",
            seen.errors
        );
    }
    let mut s = Sample {
        downtime_ms: seen.max_latency_ms,
        total_ms: times.total_ms,
        bytes_sent: times.image_bytes as f64,
        ..Default::default()
    };
    s.extra.insert("freeze_to_run_ms".into(), times.total_ms);
    s.extra.insert("checkpoint_ms".into(), times.checkpoint_ms);
    s.extra.insert("copy_ms".into(), times.copy_ms);
    s.extra.insert("restore_ms".into(), times.restore_ms);
    s.extra
        .insert("source_mem_mb".into(), times.image_bytes as f64 / 1e6);
    Ok(s)
}

/// Runs the bench; rows come in pairs (naive, ferry-cold) per size.
pub async fn run_bench(b: &ColdBench) -> anyhow::Result<Vec<Row>> {
    let mut lab = BenchLab::up("bench", b.link.clone(), b.delay_ms, b.ferry.clone()).await?;
    let result = async {
        let mut rows = Vec::new();
        let mut n = 0;
        for &size in &b.sizes {
            let (mut naive, mut ferry) = (Vec::new(), Vec::new());
            // One warm-up run of each, then the measured ones, interleaved.
            for i in 0..=b.runs {
                n += 1;
                let sn = naive_run(&mut lab, &b.criu, size, &format!("n{n}")).await?;
                let sf = ferry_run(&mut lab, size, &format!("f{n}"), Strategy::Cold).await?;
                eprintln!(
                    "  {} run {i}: naive {:.0} ms, ferry {:.0} ms (client-seen)",
                    crate::sizes::label(size),
                    sn.downtime_ms,
                    sf.downtime_ms
                );
                if i > 0 {
                    naive.push(sn);
                    ferry.push(sf);
                }
            }
            rows.extend(Row::from_samples("naive", size, &naive));
            rows.extend(Row::from_samples("ferry-cold", size, &ferry));
        }
        Ok(rows)
    }
    .await;
    lab.down().await;
    result
}
