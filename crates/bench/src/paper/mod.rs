//! `ferry bench paper`: the seeds' figures, measured again here and drawn as SVG into a
//! directory (`docs/figures/`), with their rows as JSON beside each picture.
//!
//! | figure | what | seed's own |
//! |---|---|---|
//! | `cold-by-size` → `thesis-fig-5.2.svg`, `seed-000.svg` | one-shot (cold) against the naive method by memory; seed 000's three sizes | thesis Fig. 5.2; seed 000 §4 |
//! | `threshold` → `thesis-fig-5.1.svg` | pre-copy's downtime against its threshold, with the phases of the final copy | thesis Fig. 5.1 |
//! | `rounds` → `thesis-fig-4.2.svg` | bytes of each pre-copy round, static and dynamic workloads | thesis Fig. 4.2 |
//! | `group` → `seed-004-fig-7.svg` | six containers, three schedules, on one time axis | seed 004 Fig. 7 |
//! | `paths` → `thesis-fig-4.1.svg` | checkpoint and move by path: disk, tmpfs, pages streamed (page server) | thesis Fig. 4.1 |
//! | `edge` → `seed-002-fig-4-5.svg` | a 128 MB, one-CPU container moved back and forth: save, transfer, resume; the host's CPU and memory through one move | seed 002 Table 1, Figs. 4, 5 |
//! | `iperf` → `thesis-fig-4.4-4.5.svg` | an iperf3 client's throughput while its server moves, restored at once or 2 s later | thesis Figs. 4.4, 4.5 |

pub mod edge;
pub mod paths;
pub mod plot;
pub mod throughput;

use std::path::{Path, PathBuf};

use anyhow::Context;
use ferry_types::Strategy;

use crate::row::{write_json, Row, Sample};
use plot::{Chart, Series};

/// The figures, by name.
pub const FIGURES: [&str; 7] = [
    "cold-by-size",
    "threshold",
    "rounds",
    "group",
    "iperf",
    "paths",
    "edge",
];

#[derive(Debug, Clone)]
pub struct PaperBench {
    pub figures: Vec<String>,
    pub out: PathBuf,
    pub runs: usize,
    pub ferry: PathBuf,
    pub criu: PathBuf,
}

fn write(out: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let p = out.join(name);
    std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

fn mb(size: u64) -> String {
    crate::sizes::label(size)
}

fn median(rows: &[Row], method: &str, size: u64, f: impl Fn(&Row) -> f64) -> f64 {
    rows.iter()
        .find(|r| r.method == method && r.size_bytes == size)
        .map_or(0.0, f)
}

/// Runs the figures asked for; the files written.
pub async fn run(b: &PaperBench) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&b.out)
        .with_context(|| format!("cannot create {}", b.out.display()))?;
    let mut written = Vec::new();
    for f in &b.figures {
        eprintln!("figure {f}");
        match f.as_str() {
            "cold-by-size" => written.extend(cold_by_size(b).await?),
            "threshold" => written.extend(threshold(b).await?),
            "rounds" => written.extend(rounds(b).await?),
            "group" => written.extend(group(b).await?),
            "iperf" => written.extend(iperf(b).await?),
            "paths" => written.extend(paths(b).await?),
            "edge" => written.extend(edge(b).await?),
            other => anyhow::bail!(
                "'{other}' is not a figure; the figures are {}",
                FIGURES.join(", ")
            ),
        }
    }
    Ok(written)
}

/// Thesis Fig. 5.2 (one-shot against naive, by memory, up to 265 MB) and seed 000's
/// sizes (0, 110 and 785 MB), from one cold bench.
async fn cold_by_size(b: &PaperBench) -> anyhow::Result<Vec<PathBuf>> {
    let (mb110, mb265, mb785) = (110_000_000, 265_000_000, 785_000_000);
    let sizes = vec![0, mb110, mb265, mb785];
    let rows = crate::cold::run_bench(&crate::cold::ColdBench {
        sizes: sizes.clone(),
        runs: b.runs,
        ferry: b.ferry.clone(),
        criu: b.criu.clone(),
        link: None,
        delay_ms: 0.0,
    })
    .await?;
    let mut out = vec![write_rows(&b.out, "cold-by-size.json", &rows)?];
    let fig52 = [0, mb110, mb265];
    let chart = Chart {
        title: "One-shot migration against the naive method (thesis Fig. 5.2)".into(),
        x_label: "data in Redis".into(),
        y_label: "downtime, ms (median)".into(),
        x: fig52.iter().map(|&s| mb(s)).collect(),
    };
    let series = |method: &str, name: &str, f: &dyn Fn(&Row) -> f64| {
        Series::new(
            name,
            fig52.iter().map(|&s| median(&rows, method, s, f)).collect(),
        )
    };
    let svg = plot::grouped(
        &chart,
        &[
            series("ferry-cold", "ferry cold, client-seen", &|r| {
                r.downtime_ms.median
            }),
            series("naive", "naive, client-seen", &|r| r.downtime_ms.median),
        ],
    );
    out.push(write(&b.out, "thesis-fig-5.2.svg", &svg)?);
    let seed = [0, mb110, mb785];
    let chart = Chart {
        title: "Seed 000's three sizes: checkpoint, transfer, restore".into(),
        x_label: "data in Redis".into(),
        y_label: "ms (median)".into(),
        x: seed.iter().map(|&s| mb(s)).collect(),
    };
    let of = |method: &str, f: &dyn Fn(&Row) -> f64| -> Vec<f64> {
        seed.iter().map(|&s| median(&rows, method, s, f)).collect()
    };
    let svg = plot::grouped(
        &chart,
        &[
            Series::new(
                "ferry cold, total",
                of("ferry-cold", &|r| r.total_ms.median),
            ),
            Series::new(
                "ferry cold, downtime",
                of("ferry-cold", &|r| r.downtime_ms.median),
            ),
            Series::new(
                "naive here, downtime",
                of("naive", &|r| r.downtime_ms.median),
            ),
            Series::new("seed 000 (runC + CRIU by hand)", SEED_000_MS.to_vec()),
        ],
    );
    out.push(write(&b.out, "seed-000.svg", &svg)?);
    Ok(out)
}

/// Seed 000's times for an empty Redis, 110 MB and 785 MB (steps 3 to 5: checkpoint,
/// transfer, restore), in ms.
pub const SEED_000_MS: [f64; 3] = [1378.0, 2304.0, 3426.0];

fn write_rows(out: &Path, name: &str, rows: &[Row]) -> anyhow::Result<PathBuf> {
    let p = out.join(name);
    write_json(&p, rows)?;
    Ok(p)
}

/// The phases of a pre-copy's final copy, in the order they run.
const FINAL: [(&str, &[&str]); 5] = [
    ("dump", &["dump"]),
    ("transfer", &["pages", "images"]),
    ("restore", &["restore"]),
    ("commit", &["commit"]),
    ("freeze, lock, detach", &["freeze", "lock", "detach"]),
];

fn phase_sum(s: &Sample, names: &[&str]) -> f64 {
    names
        .iter()
        .filter_map(|n| s.extra.get(&format!("phase_{n}_ms")))
        .sum()
}

/// Pre-copy migrations of one Redis size under a write load, one per option set.
async fn precopy_runs(
    b: &PaperBench,
    size: u64,
    writes_pct: f64,
    link: Option<String>,
    runs: &[ferry_types::MigrateOptions],
) -> anyhow::Result<Vec<Sample>> {
    let mut lab = crate::labctl::BenchLab::up("bench", link.clone(), 0.0, b.ferry.clone()).await?;
    let pb = crate::precopy::PrecopyBench {
        sizes: vec![size],
        runs: 1,
        ferry: b.ferry.clone(),
        criu: b.criu.clone(),
        link,
        writes_pct,
        thresholds: Vec::new(),
    };
    let result = async {
        let mut out = Vec::new();
        for (i, o) in runs.iter().enumerate() {
            let (s, _) =
                crate::precopy::loaded_run(&mut lab, &pb, size, &format!("p{i}"), o.clone())
                    .await?;
            out.push(s);
        }
        Ok(out)
    }
    .await;
    lab.down().await;
    result
}

/// Thesis Fig. 5.1: pre-copy's downtime against its threshold, the final copy's phases
/// stacked (1 Gbit/s link, 1 % of the keys rewritten per second).
async fn threshold(b: &PaperBench) -> anyhow::Result<Vec<PathBuf>> {
    let size = 300_000_000;
    let pcts = [2.0, 5.0, 10.0, 20.0, 40.0];
    let mut options = Vec::new();
    for &p in &pcts {
        for _ in 0..b.runs.max(1) {
            options.push(crate::precopy::options(Strategy::Precopy, Some(p)));
        }
    }
    let samples = precopy_runs(b, size, 1.0, Some("1gbit".into()), &options).await?;
    let mut rows = Vec::new();
    for (i, &p) in pcts.iter().enumerate() {
        let n = b.runs.max(1);
        let mut group: Vec<Sample> = samples[i * n..(i + 1) * n].to_vec();
        for s in &mut group {
            s.extra.insert("threshold_pct".into(), p);
            for (name, parts) in FINAL {
                s.extra
                    .insert(format!("final_{name}_ms"), phase_sum(s, parts));
            }
        }
        rows.extend(Row::from_samples(
            &format!("ferry-precopy-{p}%"),
            size,
            &group,
        ));
    }
    let chart = Chart {
        title: "Pre-copy downtime against its threshold (thesis Fig. 5.1)".into(),
        x_label: "threshold: stop when a round sends under this % of the first".into(),
        y_label: "ms (median)".into(),
        x: pcts.iter().map(|p| format!("{p}%")).collect(),
    };
    let seg = |name: &str| {
        let key = format!("final_{name}_ms");
        Series::new(
            name,
            rows.iter()
                .map(|r| r.extra.get(&key).map_or(0.0, |s| s.median))
                .collect(),
        )
    };
    let segments: Vec<Series> = FINAL.iter().map(|(n, _)| seg(n)).collect();
    let line = Series::new(
        "downtime, client-seen",
        rows.iter().map(|r| r.downtime_ms.median).collect(),
    );
    let svg = plot::stacked(&chart, &segments, Some(&line));
    Ok(vec![
        write_rows(&b.out, "threshold.json", &rows)?,
        write(&b.out, "thesis-fig-5.1.svg", &svg)?,
    ])
}

/// Thesis Fig. 4.2: the bytes each pre-copy round sends, for a static Redis and two
/// rates of rewrites (five rounds each, unshaped).
async fn rounds(b: &PaperBench) -> anyhow::Result<Vec<PathBuf>> {
    let size = 900_000_000;
    let loads = [
        ("static", 0.0),
        ("1 % of keys/s", 1.0),
        ("5 % of keys/s", 5.0),
    ];
    let five = ferry_types::MigrateOptions {
        threshold_pct: Some(0.0001),
        max_rounds: Some(5),
        ..crate::precopy::options(Strategy::Precopy, None)
    };
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for (name, pct) in loads {
        let s = precopy_runs(b, size, pct, None, std::slice::from_ref(&five)).await?;
        let values: Vec<f64> = (1..=5)
            .map(|k| {
                s[0].extra
                    .get(&format!("round{k}_sent_mb"))
                    .copied()
                    .unwrap_or(0.0)
            })
            .collect();
        series.push(Series::new(name, values));
        rows.extend(Row::from_samples(
            &format!("ferry-precopy-{name}"),
            size,
            &s,
        ));
    }
    let chart = Chart {
        title: "Bytes each pre-copy round sends, 900 MB Redis (thesis Fig. 4.2)".into(),
        x_label: "round".into(),
        y_label: "MB sent".into(),
        x: (1..=5).map(|k| k.to_string()).collect(),
    };
    Ok(vec![
        write_rows(&b.out, "rounds.json", &rows)?,
        write(&b.out, "thesis-fig-4.2.svg", &plot::lines(&chart, &series))?,
    ])
}

/// Seed 004's Fig. 7: the group bench's timeline, one band per schedule.
async fn group(b: &PaperBench) -> anyhow::Result<Vec<PathBuf>> {
    let out = crate::group::run_bench(&crate::group::GroupBench {
        runs: b.runs,
        ferry: b.ferry.clone(),
        link: None,
        db_bytes: 200_000_000,
        restore_order: ferry_engine::group::RestoreOrder::DependenciesFirst,
    })
    .await?;
    Ok(vec![
        write_rows(&b.out, "group.json", &out.rows)?,
        write(
            &b.out,
            "seed-004-fig-7.svg",
            &crate::svg::timeline_svg(&out.last),
        )?,
    ])
}

/// Thesis Figs. 4.4 and 4.5: throughput over time through a move.
async fn iperf(b: &PaperBench) -> anyhow::Result<Vec<PathBuf>> {
    let mut lab = crate::labctl::BenchLab::up("bench", None, 0.0, b.ferry.clone()).await?;
    let result = async {
        let at_once = throughput::through_a_move(&mut lab, "ip1", None).await?;
        let later =
            throughput::through_a_move(&mut lab, "ip2", Some(std::time::Duration::from_secs(2)))
                .await?;
        Ok::<_, anyhow::Error>((at_once, later))
    }
    .await;
    lab.down().await;
    let (at_once, later) = result?;
    let n = at_once.len().max(later.len());
    let x: Vec<String> = (0..n)
        .map(|i| match (i + 1) % 10 {
            0 => format!("{}", (i + 1) / 10),
            _ => String::new(),
        })
        .collect();
    let chart = Chart {
        title: "iperf3 through a move of its server (thesis Figs. 4.4, 4.5)".into(),
        x_label: "seconds since the client started (the move starts at 3 s)".into(),
        y_label: "Gbit/s (every 0.1 s)".into(),
        x,
    };
    let series = [
        Series::new("restored at once", at_once.iter().map(|s| s.1).collect()),
        Series::new("restored 2 s later", later.iter().map(|s| s.1).collect()),
    ];
    let json = serde_json::json!({"restored_at_once": at_once, "restored_2s_later": later});
    Ok(vec![
        write(&b.out, "iperf.json", &serde_json::to_string_pretty(&json)?)?,
        write(
            &b.out,
            "thesis-fig-4.4-4.5.svg",
            &plot::lines(&chart, &series),
        )?,
    ])
}

/// Thesis Fig. 4.1: checkpoint and move by path, for a small and a ~900 MB Redis.
async fn paths(b: &PaperBench) -> anyhow::Result<Vec<PathBuf>> {
    let sizes = [0, 900_000_000];
    let rows = paths::run(&sizes, b.runs, &b.ferry, &b.criu).await?;
    let chart = Chart {
        title: "Checkpoint and move, by the path the images take (thesis Fig. 4.1)".into(),
        x_label: "data in Redis".into(),
        y_label: "ms from the freeze until it runs again (median)".into(),
        x: sizes.iter().map(|&s| mb(s)).collect(),
    };
    let series: Vec<Series> = [
        ("disk", "files on disk, copied, synced"),
        ("tmpfs", "files on tmpfs, copied"),
        ("page-server", "pages streamed to the other host"),
    ]
    .iter()
    .map(|(m, name)| {
        Series::new(
            name,
            sizes
                .iter()
                .map(|&s| median(&rows, m, s, |r| r.downtime_ms.median))
                .collect(),
        )
    })
    .collect();
    Ok(vec![
        write_rows(&b.out, "paths.json", &rows)?,
        write(
            &b.out,
            "thesis-fig-4.1.svg",
            &plot::grouped(&chart, &series),
        )?,
    ])
}

/// Seed 002's Table 1 and Figs. 4 and 5: a small, limited container moved ten times.
async fn edge(b: &PaperBench) -> anyhow::Result<Vec<PathBuf>> {
    let mut lab = crate::labctl::BenchLab::up("bench", None, 0.0, b.ferry.clone()).await?;
    let result = edge::run(&mut lab, 10_000_000, 10 * b.runs.max(1)).await;
    lab.down().await;
    let (rows, telemetry) = result?;
    let x: Vec<String> = telemetry
        .iter()
        .enumerate()
        .map(|(i, t)| match i % 4 {
            0 => format!("{:.1}", t.0),
            _ => String::new(),
        })
        .collect();
    let chart = Chart {
        title: "The host through one move of a 128 MB, one-CPU container (seed 002 Figs. 4, 5)"
            .into(),
        x_label: "seconds since the move started".into(),
        y_label: "CPU busy, % of both cores; memory in use, GB x 10".into(),
        x,
    };
    let series = [
        Series::new("CPU busy %", telemetry.iter().map(|t| t.1).collect()),
        Series::new(
            "memory in use, GB x 10",
            telemetry.iter().map(|t| t.2 / 100.0).collect(),
        ),
    ];
    let json = serde_json::json!({ "rows": rows, "telemetry": telemetry });
    Ok(vec![
        write(&b.out, "edge.json", &serde_json::to_string_pretty(&json)?)?,
        write(
            &b.out,
            "seed-002-fig-4-5.svg",
            &plot::lines(&chart, &series),
        )?,
    ])
}
