//! `ferry bench`: benchmarks that print their figures and compare with baselines.

use std::path::{Path, PathBuf};

use ferry_bench::row::{print_table, write_json};
use ferry_bench::sizes::parse_sizes;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Checkpoint and restore of Redis on this host, by memory size.
    Local(LocalArgs),
    /// ferry's cold migration against the naive method, between lab hosts.
    Cold(ColdArgs),
    /// ferry's post-copy against plain runc + CRIU lazy pages, ferry's cold migration and
    /// the naive method, between lab hosts.
    Postcopy(PostcopyArgs),
    /// Cold, pre-copy, post-copy and hybrid (and the naive method) on a shaped link,
    /// with Redis under a write load; a threshold sweep; the bytes of each round.
    Precopy(PrecopyArgs),
    /// Six dependent containers in three levels moved with each schedule: sequential,
    /// parallel and pipeline.
    Group(GroupArgs),
    /// The compatibility matrix: real applications (databases, web servers, runtimes) each
    /// moved by each strategy under a live client, or refused by the preflight.
    Apps(AppsArgs),
    /// A container engine's own checkpoint, copy and restore against `ferry migrate` of
    /// that engine's container (Podman), on a Redis under a live client.
    Engines(EnginesArgs),
    /// The seeds' figures measured again here, as SVG and JSON (docs/benchmarks.md).
    Paper(PaperArgs),
    /// A standby kept of Redis under a write load: each round's pause as the client sees
    /// it and as ferry measures it, against the first round (everything); a failover.
    Standby(StandbyArgs),
}

#[derive(Debug, clap::Args)]
pub struct StandbyArgs {
    /// Redis data sizes to test (decimal units).
    #[arg(long, default_value = "1G")]
    sizes: String,
    /// Rounds measured after the first.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// The period between checkpoints.
    #[arg(long, value_parser = super::migrate::parse_duration_ms, default_value = "5s")]
    every: u64,
    /// Keys the write load rewrites per second, in percent of all keys.
    #[arg(long, default_value_t = 1.0)]
    writes_pct: f64,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PaperArgs {
    /// The figures, comma-separated: cold-by-size, threshold, rounds, group, iperf, paths,
    /// edge (default: all).
    #[arg(long, value_delimiter = ',')]
    figures: Vec<String>,
    /// Where the SVG and JSON files go.
    #[arg(long, default_value = "docs/figures")]
    out: std::path::PathBuf,
    /// Measured runs per point.
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

#[derive(Debug, clap::Args)]
pub struct EnginesArgs {
    /// Redis sizes, comma-separated.
    #[arg(long, default_value = "1G")]
    sizes: String,
    /// Measured runs per method and size (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The engines, comma-separated: podman, docker.
    #[arg(long, default_value = "podman,docker")]
    engines: String,
    /// Write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct AppsArgs {
    /// Moves per application and strategy (a→b, b→a, …); the cells show medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Strategies, comma-separated.
    #[arg(long, default_value = "cold,precopy,postcopy,hybrid")]
    strategies: String,
    /// Only these applications, comma-separated (see --list).
    #[arg(long, default_value = "")]
    only: String,
    /// List the applications and exit.
    #[arg(long)]
    list: bool,
    /// Write the cells as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    /// Measured runs (one warm-up run comes first); each moves the group once per
    /// schedule.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Data in each of the two databases (decimal units).
    #[arg(long, default_value = "200M")]
    db_size: String,
    /// Shape the lab's links (e.g. 1gbit); default unshaped.
    #[arg(long)]
    link: Option<String>,
    /// The group's restore order: dependencies-first (the group file's default) or
    /// unordered.
    #[arg(long, default_value = "dependencies-first", value_parser = parse_restore_order)]
    restore_order: ferry_engine::group::RestoreOrder,
    /// Draw the last run's timelines into this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_restore_order(s: &str) -> Result<ferry_engine::group::RestoreOrder, String> {
    use ferry_engine::group::RestoreOrder;
    [RestoreOrder::DependenciesFirst, RestoreOrder::Unordered]
        .into_iter()
        .find(|o| o.name() == s)
        .ok_or_else(|| format!("unknown restore order '{s}'; use dependencies-first or unordered"))
}

#[derive(Debug, clap::Args)]
pub struct PrecopyArgs {
    /// Redis data sizes to test (decimal units).
    #[arg(long, default_value = "1G")]
    sizes: String,
    /// Measured runs per size (one warm-up run comes first).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The lab's link rate.
    #[arg(long, default_value = "1gbit")]
    link: String,
    /// Keys the write load rewrites per second, in percent of all keys.
    #[arg(long, default_value_t = 1.0)]
    writes_pct: f64,
    /// Pre-copy thresholds (percent) to sweep, comma-separated; "" for none.
    #[arg(long, default_value = "2,5,10,20,40")]
    thresholds: String,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_list(s: &str) -> anyhow::Result<Vec<f64>> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| match x.trim_end_matches('%').parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 100.0 => Ok(v),
            _ => anyhow::bail!("'{x}' is not a percentage between 0 and 100"),
        })
        .collect()
}

#[derive(Debug, clap::Args)]
pub struct PostcopyArgs {
    /// Redis data sizes to test (decimal units).
    #[arg(long, default_value = "0,100M,1G,4G")]
    sizes: String,
    /// Measured runs per size (one warm-up run comes first).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Shape the lab's links (e.g. 1gbit); default unshaped.
    #[arg(long)]
    link: Option<String>,
    #[arg(long, default_value_t = 0.0)]
    delay: f64,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ColdArgs {
    /// Redis data sizes to test (decimal units).
    #[arg(long, default_value = "0,100M,1G")]
    sizes: String,
    /// Measured runs per size (one warm-up run comes first).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Shape the lab's links (e.g. 1gbit); default unshaped.
    #[arg(long)]
    link: Option<String>,
    #[arg(long, default_value_t = 0.0)]
    delay: f64,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// Redis data sizes to test (decimal units).
    #[arg(long, default_value = "0,100M,1G")]
    sizes: String,
    /// Measured runs per size (one warm-up run comes first).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Local(a) => local(a).await,
        Command::Cold(a) => cold(a).await,
        Command::Group(a) => group(a).await,
        Command::Precopy(a) => precopy(a).await,
        Command::Postcopy(a) => postcopy(a).await,
        Command::Apps(a) => apps(a).await,
        Command::Engines(a) => engines(a).await,
        Command::Paper(a) => paper(a).await,
        Command::Standby(a) => standby(a).await,
    }
}

async fn standby(a: StandbyArgs) -> anyhow::Result<i32> {
    let b = ferry_bench::standby::StandbyBench {
        sizes: sizes(&a.sizes)?,
        rounds: a.rounds.max(1),
        every_ms: a.every,
        writes_pct: a.writes_pct,
        ferry: std::env::current_exe()?,
    };
    let rows = ferry_bench::standby::run_bench(&b).await?;
    println!("a standby every {} ms of Redis under a write load ({} % of its keys per second); downtime = the client's longest request in the round (failover: its restore); paused_ms = ferry's measure of the round's pause", a.every, a.writes_pct);
    output(
        &[],
        &rows,
        &["paused_ms", "pages_held_pct", "checkpoint_age_ms"],
        a.json.as_deref(),
    )
}

async fn paper(a: PaperArgs) -> anyhow::Result<i32> {
    let figures = match a.figures.is_empty() {
        true => ferry_bench::paper::FIGURES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        false => a.figures,
    };
    for f in &figures {
        if !ferry_bench::paper::FIGURES.contains(&f.as_str()) {
            anyhow::bail!(
                "'{f}' is not a figure; the figures are {}",
                ferry_bench::paper::FIGURES.join(", ")
            );
        }
    }
    let b = ferry_bench::paper::PaperBench {
        figures,
        out: a.out,
        runs: a.runs.max(1),
        ferry: std::env::current_exe()?,
        criu: criu()?,
    };
    for p in ferry_bench::paper::run(&b).await? {
        println!("{}", p.display());
    }
    Ok(0)
}

async fn apps(a: AppsArgs) -> anyhow::Result<i32> {
    use ferry_bench::apps::{catalog, render, run_bench, AppsBench};
    if a.list {
        for app in catalog::all() {
            println!("{:<16}{}", app.name, app.what);
        }
        return Ok(0);
    }
    let mut strategies = Vec::new();
    for s in a
        .strategies
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match s
            .parse::<ferry_types::StrategyChoice>()
            .map_err(anyhow::Error::msg)?
        {
            ferry_types::StrategyChoice::Fixed(st) => strategies.push(st),
            ferry_types::StrategyChoice::Auto => {
                anyhow::bail!("--strategies takes cold, precopy, postcopy or hybrid, not auto")
            }
        }
    }
    if a.runs == 0 {
        anyhow::bail!("--runs must be at least 1");
    }
    let b = AppsBench {
        runs: a.runs,
        strategies,
        only: a
            .only
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        ferry: std::env::current_exe()?,
    };
    let cells = run_bench(&b).await?;
    println!("client_ms = the longest a client sending a request every 1 ms on one connection waited for an answer; ferry_ms = ferry's own downtime (freeze to commit); medians of {} moves", a.runs);
    print!("{}", render(&cells));
    if let Some(p) = a.json {
        std::fs::write(&p, serde_json::to_vec_pretty(&cells)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    Ok(0)
}

/// The CRIU binary the benchmarks use.
fn criu() -> anyhow::Result<PathBuf> {
    Ok(ferry_criu::features::CriuBinary::locate(None)?.path)
}

fn sizes(s: &str) -> anyhow::Result<Vec<u64>> {
    parse_sizes(s).map_err(anyhow::Error::msg)
}

/// Prints what the figures mean, the table with the `extra` columns, and writes the rows
/// as JSON when asked.
fn output(
    legend: &[String],
    rows: &[ferry_bench::row::Row],
    extra: &[&str],
    json: Option<&Path>,
) -> anyhow::Result<i32> {
    for l in legend {
        println!("{l}");
    }
    print_table(rows, extra);
    if let Some(p) = json {
        write_json(p, rows)?;
    }
    Ok(0)
}

const CLIENT_DOWNTIME: &str = "downtime = longest request latency a client doing INCR every 1 ms saw; freeze_to_run = the tool's own measure";

async fn local(a: LocalArgs) -> anyhow::Result<i32> {
    let b = ferry_bench::local::LocalBench::in_place(
        sizes(&a.sizes)?,
        a.runs,
        criu()?,
        ferry_criu::features::host_network_lock(),
    );
    let rows = ferry_bench::local::run_bench(&b).await?;
    let extra = ["checkpoint_ms", "restore_ms", "criu_frozen_ms", "image_mb"];
    output(&[], &rows, &extra, a.json.as_deref())
}

async fn engines(a: EnginesArgs) -> anyhow::Result<i32> {
    let b = ferry_bench::engines::EnginesBench {
        sizes: sizes(&a.sizes)?,
        runs: a.runs,
        ferry: std::env::current_exe()?,
        engines: a
            .engines
            .split(',')
            .map(|e| e.trim().parse())
            .collect::<anyhow::Result<_>>()?,
    };
    let rows = ferry_bench::engines::run_bench(&b).await?;
    let legend = [CLIENT_DOWNTIME.to_string()];
    output(&legend, &rows, &["freeze_to_run_ms"], a.json.as_deref())
}

async fn cold(a: ColdArgs) -> anyhow::Result<i32> {
    let b = ferry_bench::cold::ColdBench {
        sizes: sizes(&a.sizes)?,
        runs: a.runs,
        ferry: std::env::current_exe()?,
        criu: criu()?,
        link: a.link,
        delay_ms: a.delay,
    };
    let rows = ferry_bench::cold::run_bench(&b).await?;
    let legend = [CLIENT_DOWNTIME.to_string()];
    let extra = ["freeze_to_run_ms", "source_mem_mb"];
    output(&legend, &rows, &extra, a.json.as_deref())
}

async fn group(a: GroupArgs) -> anyhow::Result<i32> {
    let sizes = sizes(&a.db_size)?;
    let [db_bytes] = sizes[..] else {
        anyhow::bail!("--db-size takes one size, like 200M");
    };
    if let Some(l) = &a.link {
        ferry_netns::shape::validate_rate(l)?;
    }
    let b = ferry_bench::group::GroupBench {
        runs: a.runs,
        ferry: std::env::current_exe()?,
        link: a.link.clone(),
        db_bytes,
        restore_order: a.restore_order,
    };
    let out = ferry_bench::group::run_bench(&b).await?;
    println!("six containers in three levels (2 Redis with {} each, 2 workers connected to them, 2 front servers with a client each); cold migrations; restore order {}", a.db_size, a.restore_order.name());
    println!("total = the group's total time; downtime = the worst downtime of any one container (ferry's measure)");
    print_table(&out.rows, &[]);
    if let (Some(seq), Some(pipe)) = (
        out.rows.iter().find(|r| r.method == "group-sequential"),
        out.rows.iter().find(|r| r.method == "group-pipeline"),
    ) {
        println!(
            "pipeline / sequential total time (median): {:.2}; worst downtime (median): {:.2}",
            pipe.total_ms.median / seq.total_ms.median,
            pipe.downtime_ms.median / seq.downtime_ms.median
        );
    }
    if let Some(p) = a.svg {
        std::fs::write(&p, ferry_bench::svg::timeline_svg(&out.last))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
        println!("timeline: {}", p.display());
    }
    if let Some(p) = a.json {
        write_json(&p, &out.rows)?;
    }
    Ok(0)
}

async fn precopy(a: PrecopyArgs) -> anyhow::Result<i32> {
    ferry_netns::shape::validate_rate(&a.link)?;
    let b = ferry_bench::precopy::PrecopyBench {
        sizes: sizes(&a.sizes)?,
        runs: a.runs,
        ferry: std::env::current_exe()?,
        criu: criu()?,
        link: Some(a.link.clone()),
        writes_pct: a.writes_pct,
        thresholds: parse_list(&a.thresholds)?,
    };
    let rows = ferry_bench::precopy::run_bench(&b).await?;
    let legend = [
        format!(
            "link {}, write load {}% of keys per second (naive runs without it);",
            a.link, a.writes_pct
        ),
        "downtime = longest request latency a client doing INCR every 1 ms saw; freeze_to_run = ferry's own measure;".to_string(),
        "throughput_in_rounds_pct = Redis throughput while the rounds ran, in percent of before;".to_string(),
        "pagein = the client's latencies while post-copy's pages came in".to_string(),
    ];
    let extra = [
        "freeze_to_run_ms",
        "postcopy_ms",
        "pagein_max_ms",
        "pagein_p99_ms",
        "rounds",
        "threshold_pct",
        "throughput_in_rounds_pct",
    ];
    for l in &legend {
        println!("{l}");
    }
    print_table(&rows, &extra);
    print_rounds(&rows);
    if let Some(p) = a.json {
        write_json(&p, &rows)?;
    }
    Ok(0)
}

/// The bytes each pre-copy round sent (the thesis's Fig. 4.2).
fn print_rounds(rows: &[ferry_bench::row::Row]) {
    let per_round: Vec<String> = rows
        .iter()
        .filter(|r| r.method != "naive")
        .filter_map(|r| {
            let mb: Vec<String> = (1..=30)
                .map_while(|k| r.extra.get(&format!("round{k}_sent_mb")))
                .map(|s| format!("{:.1}", s.median))
                .collect();
            (!mb.is_empty()).then(|| {
                let t = r
                    .extra
                    .get("threshold_pct")
                    .map_or(String::new(), |t| format!(" threshold {}%", t.median));
                format!("  {}{t}: {} MB", r.method, mb.join(", "))
            })
        })
        .collect();
    if !per_round.is_empty() {
        println!("bytes sent per round (median):");
        println!("{}", per_round.join("\n"));
    }
}

async fn postcopy(a: PostcopyArgs) -> anyhow::Result<i32> {
    let b = ferry_bench::postcopy::PostcopyBench {
        sizes: sizes(&a.sizes)?,
        runs: a.runs,
        ferry: std::env::current_exe()?,
        criu: criu()?,
        link: a.link,
        delay_ms: a.delay,
    };
    let rows = ferry_bench::postcopy::run_bench(&b).await?;
    let legend = [
        format!("{CLIENT_DOWNTIME};"),
        "postcopy = the container runs until its last page arrived; pagein = the client's latencies meanwhile".to_string(),
    ];
    let extra = [
        "freeze_to_run_ms",
        "postcopy_ms",
        "pagein_max_ms",
        "pagein_p99_ms",
    ];
    output(&legend, &rows, &extra, a.json.as_deref())
}
