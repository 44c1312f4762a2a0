//! `ferry bench precopy`: Redis on a shaped link under a write load that keeps changing
//! its memory; ferry's cold, pre-copy, post-copy and hybrid migrations and the naive
//! method in one run; a sweep of the pre-copy threshold; the bytes of each round; and the
//! Redis throughput the running container keeps while the rounds read its memory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use ferry_engine::Report;
use ferry_types::{MigrateOptions, Strategy};

use crate::cold::{naive_run, target};
use crate::labctl::{start_probe, BenchLab};
use crate::row::{Row, Sample};

#[derive(Debug, Clone)]
pub struct PrecopyBench {
    pub sizes: Vec<u64>,
    pub runs: usize,
    pub ferry: PathBuf,
    pub criu: PathBuf,
    pub link: Option<String>,
    /// Keys rewritten per second, in percent of all keys.
    pub writes_pct: f64,
    /// Pre-copy thresholds to sweep (percent); empty: no sweep.
    pub thresholds: Vec<f64>,
}

/// The methods, in the order each run does them.
pub const METHODS: [&str; 5] = [
    "naive",
    "ferry-cold",
    "ferry-precopy",
    "ferry-postcopy",
    "ferry-hybrid",
];

/// How long the load runs before the migration. The throughput baseline is its last
/// third: before, Redis is still rehashing the dictionary `DEBUG POPULATE` grew, and the
/// previous run's background work (a lazy restore, a removal) may still be ending.
const BASELINE: Duration = Duration::from_millis(6000);

/// One ferry migration of a fresh Redis of `size` bytes under the write load.
pub(crate) async fn loaded_run(
    lab: &mut BenchLab,
    b: &PrecopyBench,
    size: u64,
    name: &str,
    options: MigrateOptions,
) -> anyhow::Result<(Sample, Report)> {
    let (t, _) = lab.run_redis("a", name).await?;
    let keys = t.fill(size)?;
    let addr = target(&t)?;
    let probe = start_probe(&lab.lab.client_netns, addr, Duration::from_millis(1));
    let writes = (keys as f64 * b.writes_pct / 100.0) as u64;
    let load = crate::load::start(&lab.lab.client_netns, addr, keys, writes, true);
    tokio::time::sleep(BASELINE).await;
    let at = load.started.elapsed().as_secs_f64() * 1e3;
    let t0 = std::time::Instant::now();
    let report = lab.migrate("a", name, "b", options).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = probe.stop()?;
    let load = load.stop();
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
    let load = load?;
    let mut s = Sample {
        downtime_ms: seen.max_latency_ms,
        total_ms: report.total_ms,
        bytes_sent: report.bytes_sent as f64,
        ..Default::default()
    };
    s.extra
        .insert("freeze_to_run_ms".into(), report.downtime_ms.unwrap_or(0.0));
    crate::cold::insert_postcopy(&mut s, &report, &seen, t0);
    s.extra.insert("writes_per_s".into(), writes as f64);
    for p in &report.phases {
        s.extra.insert(format!("phase_{}_ms", p.name), p.ms);
    }
    if let Some(pc) = &report.precopy {
        s.extra.insert("rounds".into(), pc.rounds.len() as f64);
        for r in &pc.rounds {
            s.extra.insert(
                format!("round{}_sent_mb", r.round),
                r.sent_bytes as f64 / 1e6,
            );
        }
        // The container's throughput while the rounds read its memory, against before.
        if let (Some(base), Some(p)) = (
            load.rate(at * 2.0 / 3.0, at),
            report.phases.iter().find(|p| p.name == "rounds"),
        ) {
            if let Some(during) = load.rate(at + p.start_ms, at + p.start_ms + p.ms) {
                s.extra
                    .insert("throughput_in_rounds_pct".into(), during / base * 100.0);
            }
        }
    }
    if let Some(u) = &report.usage {
        s.extra.insert(
            "source_peak_rss_mb".into(),
            (u.peak_rss_kib_self.max(u.peak_rss_kib_children)) as f64 / 1024.0,
        );
    }
    Ok((s, report))
}

pub(crate) fn options(strategy: Strategy, threshold: Option<f64>) -> MigrateOptions {
    MigrateOptions {
        strategy: strategy.into(),
        threshold_pct: threshold,
        max_rounds: threshold.map(|_| 30),
        ..Default::default()
    }
}

fn rounds_line(r: &Report) -> String {
    r.precopy.as_ref().map_or(String::new(), |pc| {
        let mb: Vec<String> = pc
            .rounds
            .iter()
            .map(|r| format!("{:.1}", r.sent_bytes as f64 / 1e6))
            .collect();
        format!(" [rounds MB: {}; stop: {:?}]", mb.join(" "), pc.stop_reason)
    })
}

/// Runs the bench. Rows: every method per size, then the threshold sweep (method
/// `ferry-precopy` with a `threshold_pct` statistic).
pub async fn run_bench(b: &PrecopyBench) -> anyhow::Result<Vec<Row>> {
    let mut lab = BenchLab::up("bench", b.link.clone(), 0.0, b.ferry.clone()).await?;
    let result = async {
        let mut rows = Vec::new();
        let mut n = 0u16;
        for &size in &b.sizes {
            let mut samples: [Vec<Sample>; 5] = Default::default();
            // One warm-up run of each, then the measured ones, interleaved.
            for i in 0..=b.runs {
                let mut line = Vec::new();
                for (k, m) in METHODS.iter().enumerate() {
                    n += 1;
                    let name = format!("q{n}");
                    let (s, extra) = match k {
                        0 => (
                            naive_run(&mut lab, &b.criu, size, &name).await?,
                            String::new(),
                        ),
                        _ => {
                            let strategy = [
                                Strategy::Cold,
                                Strategy::Precopy,
                                Strategy::Postcopy,
                                Strategy::Hybrid,
                            ][k - 1];
                            let (s, r) =
                                loaded_run(&mut lab, b, size, &name, options(strategy, None))
                                    .await?;
                            (s, rounds_line(&r))
                        }
                    };
                    line.push(format!("{m} {:.0} ms{extra}", s.downtime_ms));
                    if i > 0 {
                        samples[k].push(s);
                    }
                }
                eprintln!(
                    "  {} run {i} (client-seen downtime): {}",
                    crate::sizes::label(size),
                    line.join(", ")
                );
            }
            for (m, s) in METHODS.iter().zip(&samples) {
                rows.extend(Row::from_samples(m, size, s));
            }
            for &pct in &b.thresholds {
                let mut sweep = Vec::new();
                for _ in 0..b.runs.max(1) {
                    n += 1;
                    let (mut s, r) = loaded_run(
                        &mut lab,
                        b,
                        size,
                        &format!("q{n}"),
                        options(Strategy::Precopy, Some(pct)),
                    )
                    .await?;
                    eprintln!(
                        "  {} threshold {pct}%: {:.0} ms{}",
                        crate::sizes::label(size),
                        s.downtime_ms,
                        rounds_line(&r)
                    );
                    s.extra.insert("threshold_pct".into(), pct);
                    sweep.push(s);
                }
                rows.extend(Row::from_samples("ferry-precopy", size, &sweep));
            }
        }
        Ok(rows)
    }
    .await;
    lab.down().await;
    result
}
