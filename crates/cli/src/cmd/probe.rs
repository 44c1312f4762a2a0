//! `ferry probe`: a client that measures what users of a service see during a migration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// INCR one key on one connection at a fixed interval; report latencies, stalls,
    /// lost increments and whether the connection stayed the same.
    Redis {
        /// The server, HOST:PORT.
        target: SocketAddr,
        #[arg(long, default_value = "ferry:probe")]
        key: String,
        /// Interval between requests, in milliseconds.
        #[arg(long, default_value_t = 1.0)]
        interval_ms: f64,
        /// Stop after this many seconds (default: at SIGTERM or SIGINT).
        #[arg(long)]
        duration: Option<f64>,
        /// Write the result as JSON to this file (default: print it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    let Command::Redis {
        target,
        key,
        interval_ms,
        duration,
        out,
    } = c;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        s2.store(true, Ordering::Relaxed);
    });
    let interval = Duration::from_secs_f64(interval_ms / 1e3);
    let dur = duration.map(Duration::from_secs_f64);
    let res = tokio::task::spawn_blocking(move || {
        ferry_bench::probe::run(target, &key, interval, dur, stop)
    })
    .await?;
    let text = serde_json::to_string_pretty(&res)?;
    match out {
        Some(p) => std::fs::write(&p, text)?,
        None => println!("{text}"),
    }
    Ok(if res.errors.is_empty() && res.lost_or_repeated == 0 {
        0
    } else {
        1
    })
}
