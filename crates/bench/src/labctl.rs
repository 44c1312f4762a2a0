//! Driving a lab from a benchmark: containers, migrations, and probes run from `client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use ferry_engine::Report;
use ferry_lab::{LabSpec, LabState};
use ferry_proto::ControlRequest;
use ferry_transport::Endpoint;
use ferry_types::{MigrateOptions, NetSpec};

use crate::probe::ProbeResult;
use crate::redis::{server_args, RedisTarget};

/// A lab a benchmark owns.
#[derive(Debug)]
pub struct BenchLab {
    pub lab: LabState,
}

impl BenchLab {
    pub async fn up(
        name: &str,
        link: Option<String>,
        delay_ms: f64,
        ferry: PathBuf,
    ) -> anyhow::Result<Self> {
        Self::up_spec(name, link, delay_ms, ferry, false).await
    }

    /// A lab whose hosts run their own Docker daemons too.
    pub async fn up_with_docker(name: &str, ferry: PathBuf) -> anyhow::Result<Self> {
        Self::up_spec(name, None, 0.0, ferry, true).await
    }

    async fn up_spec(
        name: &str,
        link: Option<String>,
        delay_ms: f64,
        ferry: PathBuf,
        docker: bool,
    ) -> anyhow::Result<Self> {
        if LabState::load(name).is_ok() {
            ferry_lab::down(name).await?;
        }
        let lab = ferry_lab::up(&LabSpec {
            name: name.into(),
            hosts: 2,
            link,
            delay_ms,
            ferry,
            faults: false,
            docker,
        })
        .await?;
        Ok(Self { lab })
    }

    pub async fn down(self) {
        let _ = ferry_lab::down(&self.lab.name).await;
    }

    /// Starts Redis on `host`; returns how to reach it from `client` and its identity.
    pub async fn run_redis(
        &mut self,
        host: &str,
        name: &str,
    ) -> anyhow::Result<(RedisTarget, NetSpec)> {
        let c = ferry_lab::run(&mut self.lab, host, name, None, None, server_args(6379)).await?;
        let net = c.net.context("the container has no address")?;
        let ip = net
            .address
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let t = RedisTarget {
            netns: self.lab.client_netns.clone(),
            host: ip,
            port: 6379,
        };
        t.wait_ready(Duration::from_secs(10))?;
        Ok((t, net))
    }

    pub async fn remove(&self, host: &str, name: &str) {
        if let Ok(h) = self.lab.host(host) {
            let _ = ferry_lab::ask(h, &ControlRequest::Remove { name: name.into() }).await;
        }
    }

    /// Migrates through the agents, as `ferry migrate` does.
    pub async fn migrate(
        &self,
        from: &str,
        name: &str,
        to: &str,
        options: MigrateOptions,
    ) -> anyhow::Result<Report> {
        let src = Endpoint::Unix(self.lab.host(from)?.control.clone());
        let dest = self.lab.host(to)?.listen.to_string();
        let creds = Default::default();
        Ok(ferry_controller::migrate(&src, &creds, name, &dest, options, |_| {}).await?)
    }
}

/// A probe running in another network namespace, on a thread of its own.
#[derive(Debug)]
pub struct ProbeHandle {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<ProbeResult>>,
}

/// Starts an INCR probe (every `interval`) against `target` from inside `netns`.
pub fn start_probe(netns: &str, target: SocketAddr, interval: Duration) -> ProbeHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let path = ferry_netns::netns_path(netns);
    let thread = std::thread::spawn(move || {
        let f = std::fs::File::open(&path)?;
        // SAFETY: setns on a valid descriptor; it changes only this thread, which ends
        // with the probe.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "cannot enter {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(crate::probe::run(target, "ferry:bench", interval, None, s))
    });
    ProbeHandle { stop, thread }
}

impl ProbeHandle {
    pub fn stop(self) -> anyhow::Result<ProbeResult> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?
    }
}
