//! `ferry bench apps`: the compatibility matrix, measured. Each application runs in a
//! lab container under a client that sends a request every millisecond on one
//! connection; each strategy moves it between two hosts `runs` times (a→b, b→a, …).
//! A cell says whether it moved, the downtime the client saw (its longest wait for an
//! answer) and ferry's own (freeze to commit), total time and bytes, as medians; or
//! the preflight's refusal, in its own words.

pub mod catalog;
mod client;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ferry_transport::Endpoint;
use ferry_types::{MigrateOptions, Strategy};
use serde::{Deserialize, Serialize};

use crate::labctl::BenchLab;
use crate::stats::Summary;
use catalog::App;

#[derive(Debug, Clone)]
pub struct AppsBench {
    pub runs: usize,
    pub strategies: Vec<Strategy>,
    /// Only these applications (all when empty).
    pub only: Vec<String>,
    pub ferry: PathBuf,
}

/// One application moved by one strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub app: String,
    pub strategy: String,
    /// `migrated` (every run), `refused`, `rolled_back` or `failed` (the first run that
    /// did not migrate), `client_error` (the client's connection broke).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub runs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_downtime_ms: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ferry_downtime_ms: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<Summary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<Summary>,
}

impl Cell {
    fn new(app: &App, s: Strategy, outcome: &str, reason: Option<String>) -> Self {
        Cell {
            app: app.name.into(),
            strategy: s.name().into(),
            outcome: outcome.into(),
            reason,
            runs: 0,
            client_downtime_ms: None,
            ferry_downtime_ms: None,
            total_ms: None,
            bytes_sent: None,
        }
    }
}

/// Where an application's container is now.
struct Placed<'a> {
    app: &'a App,
    host: &'static str,
    ip: String,
}

impl Placed<'_> {
    fn other(&self) -> &'static str {
        if self.host == "a" {
            "b"
        } else {
            "a"
        }
    }
}

/// Runs the matrix; one lab for all of it.
pub async fn run_bench(b: &AppsBench) -> anyhow::Result<Vec<Cell>> {
    let apps: Vec<App> = catalog::all()
        .into_iter()
        .filter(|a| b.only.is_empty() || b.only.iter().any(|o| o == a.name))
        .collect();
    if apps.is_empty() {
        anyhow::bail!("no application matches --only; see 'ferry bench apps --list'");
    }
    let mut lab = BenchLab::up("benchapps", None, 0.0, b.ferry.clone()).await?;
    let mut cells = Vec::new();
    for app in &apps {
        eprintln!("bench apps: {} ({})", app.name, app.what);
        match start(&mut lab, app).await {
            Ok(mut placed) => {
                for &s in &b.strategies {
                    cells.push(cell(&lab, &mut placed, s, b.runs).await);
                }
                lab.remove(placed.host, app.name).await;
            }
            Err(e) => cells.extend(
                b.strategies
                    .iter()
                    .map(|&s| Cell::new(app, s, "not_started", Some(format!("{e:#}")))),
            ),
        }
    }
    lab.down().await;
    Ok(cells)
}

async fn start<'a>(lab: &mut BenchLab, app: &'a App) -> anyhow::Result<Placed<'a>> {
    let ip = if app.redis_fill > 0 {
        let (t, _) = lab.run_redis("a", app.name).await?;
        t.fill(app.redis_fill)?;
        t.host
    } else {
        let c =
            ferry_lab::run(&mut lab.lab, "a", app.name, None, None, app.command.clone()).await?;
        let net = c.net.context("the container has no address")?;
        net.address
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    client::wait_port(&lab.lab.client_netns, &ip, app.port, app.start_secs)?;
    // Let it settle (a JVM compiles, a database finishes its start).
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Placed { app, host: "a", ip })
}

/// What the preflight says of `s` for this container, if it will not move.
async fn refusal(lab: &BenchLab, p: &Placed<'_>, s: Strategy) -> Option<String> {
    let src = Endpoint::Unix(lab.lab.host(p.host).ok()?.control.clone());
    let dest = lab.lab.host(p.other()).ok()?.listen.to_string();
    let options = MigrateOptions {
        strategy: s.into(),
        ..Default::default()
    };
    let pf = ferry_controller::check(&src, &Default::default(), p.app.name, Some(&dest), options)
        .await
        .ok()?;
    if let Some(r) = pf.refusal() {
        return Some(format!("{}: {}", r.subject, r.sentence));
    }
    pf.fit(s)
        .filter(|f| !f.fits)
        .map(|f| format!("{} does not fit: {}", s.name(), f.why))
}

async fn cell(lab: &BenchLab, p: &mut Placed<'_>, s: Strategy, runs: usize) -> Cell {
    if let Some(why) = refusal(lab, p, s).await {
        return Cell::new(p.app, s, "refused", Some(why));
    }
    let (mut client, mut ferry, mut total, mut bytes) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let probe = match client::Probe::start(&lab.lab.client_netns, p.app, &p.ip) {
            Ok(pr) => pr,
            Err(e) => return Cell::new(p.app, s, "client_error", Some(format!("{e:#}"))),
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let options = MigrateOptions {
            strategy: s.into(),
            ..Default::default()
        };
        let to = p.other();
        let r = lab.migrate(p.host, p.app.name, to, options).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = probe.stop();
        let report = match r {
            Ok(r) => r,
            Err(e) => return Cell::new(p.app, s, "refused", Some(format!("{e:#}"))),
        };
        if !report.outcome.is_success() {
            return Cell::new(p.app, s, report.outcome.name(), report.reason);
        }
        p.host = to;
        let seen = match seen {
            Ok(x) if x.errors.is_empty() => x,
            Ok(x) => return Cell::new(p.app, s, "client_error", Some(x.errors.join("; "))),
            Err(e) => return Cell::new(p.app, s, "client_error", Some(format!("{e:#}"))),
        };
        client.push(seen.max_latency_ms);
        ferry.push(report.downtime_ms.unwrap_or(0.0));
        total.push(report.total_ms);
        bytes.push(report.bytes_sent as f64);
    }
    Cell {
        runs,
        client_downtime_ms: Summary::of(&client),
        ferry_downtime_ms: Summary::of(&ferry),
        total_ms: Summary::of(&total),
        bytes_sent: Summary::of(&bytes),
        ..Cell::new(p.app, s, "migrated", None)
    }
}

/// The matrix as a table, then the checks of issue-level targets the figures answer.
pub fn render(cells: &[Cell]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16}{:<10}{:<13}{:>12}{:>12}{:>11}{:>10}",
        "app", "strategy", "outcome", "client_ms", "ferry_ms", "total_ms", "sent_MB"
    );
    let med = |x: &Option<Summary>| x.map_or("-".to_string(), |v| format!("{:.0}", v.median));
    for c in cells {
        let _ = writeln!(
            s,
            "{:<16}{:<10}{:<13}{:>12}{:>12}{:>11}{:>10}",
            c.app,
            c.strategy,
            c.outcome,
            med(&c.client_downtime_ms),
            med(&c.ferry_downtime_ms),
            med(&c.total_ms),
            c.bytes_sent
                .map_or("-".to_string(), |v| format!("{:.1}", v.median / 1e6)),
        );
        if let Some(r) = &c.reason {
            let _ = writeln!(s, "    {r}");
        }
    }
    for line in comparisons(cells) {
        let _ = writeln!(s, "{line}");
    }
    s
}

fn median_of(cells: &[Cell], app: &str, strategy: &str) -> Option<f64> {
    cells
        .iter()
        .find(|c| c.app == app && c.strategy == strategy)?
        .client_downtime_ms
        .map(|v| v.median)
}

/// Pre-copy against cold per application, and the sparse server against Redis with the
/// same resident memory, by client-seen downtime.
pub fn comparisons(cells: &[Cell]) -> Vec<String> {
    let mut out = Vec::new();
    let mut apps: Vec<&str> = cells.iter().map(|c| c.app.as_str()).collect();
    apps.dedup();
    for app in apps {
        if let (Some(pre), Some(cold)) = (
            median_of(cells, app, "precopy"),
            median_of(cells, app, "cold"),
        ) {
            // TCP's retransmission timer quantises the client's figure: within 5 % is a tie.
            let verdict = match pre / cold {
                r if r < 0.95 => "",
                r if r <= 1.05 => " (a tie)",
                _ => " (pre-copy is slower)",
            };
            out.push(format!(
                "{app}: pre-copy / cold client downtime {:.2}{verdict}",
                pre / cold
            ));
        }
    }
    for s in ["cold", "precopy"] {
        if let (Some(sparse), Some(redis)) = (
            median_of(cells, "sparse", s),
            median_of(cells, "redis-200mb", s),
        ) {
            out.push(format!(
                "sparse / redis-200mb client downtime, {s}: {:.2} (target: at most 1.5)",
                sparse / redis
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(app: &str, s: &str, ms: f64) -> Cell {
        Cell {
            app: app.into(),
            strategy: s.into(),
            outcome: "migrated".into(),
            reason: None,
            runs: 3,
            client_downtime_ms: Summary::of(&[ms]),
            ferry_downtime_ms: Summary::of(&[ms]),
            total_ms: Summary::of(&[ms]),
            bytes_sent: Summary::of(&[1e6]),
        }
    }

    #[test]
    fn the_matrix_compares_pre_copy_with_cold_and_sparse_with_redis() {
        let cells = vec![
            cell("sparse", "cold", 600.0),
            cell("sparse", "precopy", 900.0),
            cell("redis-200mb", "cold", 500.0),
        ];
        let c = comparisons(&cells);
        assert!(c[0].contains("1.50 (pre-copy is slower)"), "{c:?}");
        let tie = comparisons(&[cell("a", "cold", 415.0), cell("a", "precopy", 420.0)]);
        assert!(tie[0].contains("(a tie)"), "{tie:?}");
        assert!(c[1].contains("cold: 1.20"), "{c:?}");
        let t = render(&cells);
        assert!(t.contains("sparse") && t.contains("600"), "{t}");
    }
}
