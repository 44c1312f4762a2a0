//! `ferry bench postcopy`: ferry's post-copy against plain runc + CRIU lazy pages, ferry's
//! cold migration and the naive method, in one run, on the same lab hosts, with a client
//! measuring what it sees, including while pages are still arriving.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use ferry_types::Strategy;

use crate::cold::{ferry_run, insert_window, naive_run, target};
use crate::labctl::{start_probe, BenchLab};
use crate::row::{Row, Sample};

#[derive(Debug, Clone)]
pub struct PostcopyBench {
    pub sizes: Vec<u64>,
    pub runs: usize,
    pub ferry: PathBuf,
    pub criu: PathBuf,
    pub link: Option<String>,
    pub delay_ms: f64,
}

/// The methods, in the order each run does them.
pub const METHODS: [&str; 4] = ["naive", "ferry-cold", "criu-lazy", "ferry-postcopy"];

/// One plain runc + CRIU lazy-pages migration of a fresh Redis holding `size` bytes.
async fn criu_lazy_run(
    lab: &mut BenchLab,
    criu: &std::path::Path,
    size: u64,
    name: &str,
    port: u16,
) -> anyhow::Result<Sample> {
    let (t, net) = lab.run_redis("a", name).await?;
    t.fill(size)?;
    let probe = start_probe(&lab.lab.client_netns, target(&t)?, Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a, b) = (lab.lab.host("a")?.clone(), lab.lab.host("b")?.clone());
    let r = crate::criu_lazy::migrate(&lab.lab, criu, &a, &b, name, &net, port).await;
    if r.is_ok() {
        t.wait_ready(Duration::from_secs(10))?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = probe.stop()?;
    crate::manual::cleanup(&lab.lab, criu, &b, name, &net).await;
    lab.remove("a", name).await;
    let times = r?;
    if !seen.errors.is_empty() || seen.lost_or_repeated > 0 {
        bail!(
            "the client saw errors or lost increments with CRIU lazy pages: {:?}",
            seen.errors
        );
    }
    let mut s = Sample {
        downtime_ms: seen.max_latency_ms,
        total_ms: times.total_ms,
        bytes_sent: times.bytes as f64,
        ..Default::default()
    };
    s.extra
        .insert("freeze_to_run_ms".into(), times.freeze_to_run_ms);
    s.extra.insert("postcopy_ms".into(), times.postcopy_ms);
    s.extra.insert("dump_ms".into(), times.dump_ms);
    s.extra.insert("restore_ms".into(), times.restore_ms);
    insert_window(&mut s, &seen, times.running_at, times.pages_done_at);
    Ok(s)
}

/// Runs the bench: for each size, rows for every method in [`METHODS`].
pub async fn run_bench(b: &PostcopyBench) -> anyhow::Result<Vec<Row>> {
    let mut lab = BenchLab::up("bench", b.link.clone(), b.delay_ms, b.ferry.clone()).await?;
    let result = async {
        let mut rows = Vec::new();
        let mut n = 0u16;
        for &size in &b.sizes {
            let mut samples: [Vec<Sample>; 4] = Default::default();
            // One warm-up run of each, then the measured ones, interleaved.
            for i in 0..=b.runs {
                n += 1;
                let runs = [
                    naive_run(&mut lab, &b.criu, size, &format!("n{n}")).await?,
                    ferry_run(&mut lab, size, &format!("c{n}"), Strategy::Cold).await?,
                    criu_lazy_run(&mut lab, &b.criu, size, &format!("l{n}"), 27000 + n).await?,
                    ferry_run(&mut lab, size, &format!("p{n}"), Strategy::Postcopy).await?,
                ];
                let line: Vec<String> = METHODS
                    .iter()
                    .zip(&runs)
                    .map(|(m, s)| {
                        let pc = s
                            .extra
                            .get("postcopy_ms")
                            .map_or(String::new(), |p| format!(" +{p:.0} ms of page-in"));
                        format!("{m} {:.0} ms{pc}", s.downtime_ms)
                    })
                    .collect();
                eprintln!(
                    "  {} run {i} (client-seen): {}",
                    crate::sizes::label(size),
                    line.join(", ")
                );
                if i > 0 {
                    for (k, s) in runs.into_iter().enumerate() {
                        samples[k].push(s);
                    }
                }
            }
            for (m, s) in METHODS.iter().zip(&samples) {
                rows.extend(Row::from_samples(m, size, s));
            }
        }
        Ok(rows)
    }
    .await;
    lab.down().await;
    result
}
