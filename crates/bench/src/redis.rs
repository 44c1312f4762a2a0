//! Redis as the benchmarks and demos use it: reached with `redis-cli` from inside a
//! network namespace.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Bytes of value per key when filling Redis to a size.
pub const VALUE_SIZE: u64 = 1000;

/// Where a Redis server is, as seen from a namespace.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// Network namespace to run `redis-cli` in.
    pub netns: String,
    pub host: String,
    pub port: u16,
}

impl RedisTarget {
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "redis-cli",
                "-h",
                &self.host,
                "-p",
                &self.port.to_string(),
            ])
            .args(args)
            .output()
            .context("running redis-cli")?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || text.starts_with("ERR") || text.starts_with("Could not connect")
        {
            bail!(
                "redis-cli {}: {}{}",
                args.join(" "),
                text,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(text)
    }

    /// Waits until the server answers PING.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.cli(&["ping"]).is_ok_and(|p| p == "PONG") {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "Redis at {}:{} did not answer within {timeout:?}",
                    self.host,
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fills the server with about `bytes` of values (`DEBUG POPULATE`, 1000-byte values).
    pub fn fill(&self, bytes: u64) -> anyhow::Result<u64> {
        let keys = bytes / VALUE_SIZE;
        if keys > 0 {
            self.cli(&[
                "debug",
                "populate",
                &keys.to_string(),
                "key",
                &VALUE_SIZE.to_string(),
            ])?;
        }
        Ok(keys)
    }

    pub fn dbsize(&self) -> anyhow::Result<u64> {
        self.cli(&["dbsize"])?
            .parse()
            .context("DBSIZE is not a number")
    }
}

/// The arguments of a redis-server that ferry can checkpoint (no persistence, debug
/// commands on for `DEBUG POPULATE`).
pub fn server_args(port: u16) -> Vec<String> {
    [
        "/usr/bin/redis-server",
        "--port",
        &port.to_string(),
        "--bind",
        "0.0.0.0",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--enable-debug-command",
        "yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
