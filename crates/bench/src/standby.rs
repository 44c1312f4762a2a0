//! `ferry bench standby`: a standby kept of a Redis under a write load, round after
//! round. Each round's pause as the client sees it (its longest request) and as ferry
//! measures it, the round's time and bytes, against the first round, which ships
//! everything as a full checkpoint each time would; then a failover, timed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use ferry_transport::Endpoint;
use ferry_types::standby::StandbyRound;

use crate::cold::target;
use crate::labctl::{start_probe, BenchLab};
use crate::row::{Row, Sample};

#[derive(Debug, Clone)]
pub struct StandbyBench {
    pub sizes: Vec<u64>,
    /// Rounds measured after the first.
    pub rounds: usize,
    pub every_ms: u64,
    /// Keys rewritten per second, in percent of all keys.
    pub writes_pct: f64,
    pub ferry: PathBuf,
}

fn sample(r: &StandbyRound, client_ms: f64) -> Sample {
    let mut s = Sample {
        downtime_ms: client_ms,
        total_ms: r.total_ms,
        bytes_sent: r.bytes_sent as f64,
        ..Default::default()
    };
    s.extra.insert("paused_ms".into(), r.paused_ms);
    if r.pages > 0 {
        s.extra.insert(
            "pages_held_pct".into(),
            r.pages_held as f64 / r.pages as f64 * 100.0,
        );
    }
    s
}

/// The rounds of one standby, in order, until `n` of them were stored.
async fn collect(
    lab: &BenchLab,
    name: &str,
    first: StandbyRound,
    n: usize,
    every_ms: u64,
) -> anyhow::Result<Vec<StandbyRound>> {
    let src = Endpoint::Unix(lab.lab.host("a")?.control.clone());
    let creds = Default::default();
    let mut rounds = vec![first];
    let deadline = Instant::now() + Duration::from_millis(every_ms * (n as u64 + 2) + 60_000);
    while rounds.len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (keeping, _) = ferry_controller::standby::list(&src, &creds).await?;
        let Some(k) = keeping.into_iter().find(|k| k.container == name) else {
            bail!("the standby of {name} stopped");
        };
        if let Some(last) = k
            .last
            .filter(|l| l.seq > rounds.last().map_or(0, |r| r.seq))
        {
            rounds.push(last);
        }
    }
    ferry_controller::standby::stop(&src, &creds, name).await?;
    Ok(rounds)
}

/// Runs the bench: rows `standby-first` (everything: the baseline) and
/// `standby-round` per size, and `failover` (its restore).
pub async fn run_bench(b: &StandbyBench) -> anyhow::Result<Vec<Row>> {
    let mut lab = BenchLab::up("bench", None, 0.0, b.ferry.clone()).await?;
    let result = async {
        let mut rows = Vec::new();
        for (i, &size) in b.sizes.iter().enumerate() {
            let name = format!("s{i}");
            let (t, _) = lab.run_redis("a", &name).await?;
            let keys = t.fill(size)?;
            let addr = target(&t)?;
            let probe = start_probe(&lab.lab.client_netns, addr, Duration::from_millis(1));
            let writes = (keys as f64 * b.writes_pct / 100.0) as u64;
            let load = crate::load::start(&lab.lab.client_netns, addr, keys, writes, false);
            let src = Endpoint::Unix(lab.lab.host("a")?.control.clone());
            let dest = lab.lab.host("b")?.listen.to_string();
            let first = ferry_controller::standby::start(
                &src,
                &Default::default(),
                &name,
                &dest,
                b.every_ms,
            )
            .await?;
            let rounds = collect(&lab, &name, first, b.rounds + 1, b.every_ms).await?;
            let seen = probe.stop()?;
            let _ = load.stop();
            // Each round pauses the client once: its stalls, in order, are the rounds'.
            let stalls: Vec<f64> = seen.stalls.iter().map(|s| s.ms).collect();
            let client = |k: usize| stalls.get(k).copied().unwrap_or(seen.max_latency_ms);
            rows.extend(Row::from_samples(
                "standby-first",
                size,
                &[sample(&rounds[0], client(0))],
            ));
            let later: Vec<Sample> = rounds[1..]
                .iter()
                .enumerate()
                .map(|(k, r)| sample(r, client(k + 1)))
                .collect();
            rows.extend(Row::from_samples("standby-round", size, &later));
            eprintln!(
                "  {}: first round {:.0} MB, later {:?} MB; client-seen pauses {:?} ms",
                crate::sizes::label(size),
                rounds[0].bytes_sent as f64 / 1e6,
                rounds[1..]
                    .iter()
                    .map(|r| (r.bytes_sent as f64 / 1e6).round())
                    .collect::<Vec<_>>(),
                stalls.iter().map(|s| s.round()).collect::<Vec<_>>()
            );
            // The source is lost: the standby host restores the newest checkpoint.
            lab.remove("a", &name).await;
            let on = Endpoint::Unix(lab.lab.host("b")?.control.clone());
            let t0 = Instant::now();
            let f = ferry_controller::standby::failover(&on, &Default::default(), &name).await?;
            let mut s = Sample {
                downtime_ms: f.restore.total_ms,
                total_ms: ferry_types::ms(t0.elapsed()),
                bytes_sent: 0.0,
                ..Default::default()
            };
            s.extra
                .insert("checkpoint_age_ms".into(), f.checkpoint.age_ms as f64);
            rows.extend(Row::from_samples("failover", size, &[s]));
            lab.remove("b", &name).await;
        }
        Ok(rows)
    }
    .await;
    lab.down().await;
    result
}
