//! The matrix's client (`programs/probe.py`), run in the lab's `client` namespace.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::catalog::{App, PROBE};

fn python(netns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns, "/usr/bin/python3", "-c", PROBE]);
    c
}

/// Waits until `ip:port` accepts connections from `netns`.
pub fn wait_port(netns: &str, ip: &str, port: u16, secs: u64) -> anyhow::Result<()> {
    let ok = python(netns)
        .args(["wait", ip, &port.to_string(), &secs.to_string()])
        .status()
        .context("python3 in the client namespace")?
        .success();
    if !ok {
        bail!("nothing listens on {ip}:{port} after {secs} s");
    }
    Ok(())
}

/// What the client saw.
#[derive(Debug, Clone, Deserialize)]
pub struct Seen {
    pub requests: u64,
    pub errors: Vec<String>,
    pub max_latency_ms: f64,
}

/// A client running.
pub struct Probe {
    child: Child,
    out: PathBuf,
}

impl Probe {
    pub fn start(netns: &str, app: &App, ip: &str) -> anyhow::Result<Probe> {
        let out = std::env::temp_dir().join(format!(
            "ferry-bench-apps-{}-{}.json",
            app.name,
            std::process::id()
        ));
        let _ = std::fs::remove_file(&out);
        let child = python(netns)
            .args([app.proto.name(), ip, &app.port.to_string()])
            .arg(&out)
            .stdin(Stdio::null())
            .spawn()
            .context("python3 in the client namespace")?;
        Ok(Probe { child, out })
    }

    /// Stops the client and returns what it saw.
    pub fn stop(mut self) -> anyhow::Result<Seen> {
        // SAFETY: kill(2) with SIGTERM on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let text = std::fs::read(&self.out).context("the client's findings")?;
        let _ = std::fs::remove_file(&self.out);
        let seen: Seen = serde_json::from_slice(&text).context("the client's findings")?;
        if seen.requests == 0 && seen.errors.is_empty() {
            bail!("the client sent no request");
        }
        Ok(seen)
    }
}
