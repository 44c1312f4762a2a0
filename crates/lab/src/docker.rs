//! Docker in the lab (`ferry lab up --docker`): each host its own daemon, started inside
//! the host's network namespace with its own data root, exec root and socket, so that
//! `ferry lab exec HOST -- docker …` acts on that host alone. Docker touches no
//! firewall and makes no bridge of its own; its network `lab` reuses the host's `br0`,
//! in the lab's address range, so that `docker run --network lab --ip …` gives a
//! container an address `client` reaches.
//!
//! `dockerd` enters only the host's network namespace (`nsenter --net`): `ip netns exec`
//! remounts `/sys`, which hides the cgroup mounts Docker needs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::state::LabHost;
use crate::LabError;

/// Where Docker's own addresses for `--network lab` come from when `--ip` is not given.
const IP_RANGE: &str = "10.77.4.0/24";

pub fn docker_dir(host: &LabHost) -> PathBuf {
    host.state_dir.join("docker")
}

/// The socket of `host`'s daemon.
pub fn socket(host: &LabHost) -> PathBuf {
    docker_dir(host).join("docker.sock")
}

fn pid_file(host: &LabHost) -> PathBuf {
    docker_dir(host).join("dockerd.pid")
}

/// The variable that points the `docker` client at a host's daemon, once it runs.
pub fn docker_env(host: &LabHost) -> Vec<(String, String)> {
    match socket(host).exists() {
        true => vec![(
            "DOCKER_HOST".into(),
            format!("unix://{}", socket(host).display()),
        )],
        false => Vec::new(),
    }
}

/// Starts `host`'s daemon; returns its pid.
pub fn start(host: &LabHost) -> Result<u32, LabError> {
    let dir = docker_dir(host);
    for d in ["root", "exec"] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(|e| LabError::io(p.display().to_string(), e))?;
    }
    // Its own configuration file: the system's (`/etc/docker/daemon.json`) is for the
    // system's daemon, and may name what the flags below name too.
    let conf = dir.join("daemon.json");
    std::fs::write(&conf, "{}\n").map_err(|e| LabError::io(conf.display().to_string(), e))?;
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!(
        "--net={}",
        ferry_netns::netns_path(&host.netns).display()
    ))
    .args(["dockerd", "--experimental", "--config-file"])
    .arg(&conf)
    .arg("--data-root")
    .arg(dir.join("root"))
    .arg("--exec-root")
    .arg(dir.join("exec"))
    .arg("--pidfile")
    .arg(pid_file(host))
    .arg("-H")
    .arg(format!("unix://{}", socket(host).display()))
    .args([
        "--iptables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
    ]);
    crate::spawn::daemon(cmd, &dir.join("dockerd.log"), "dockerd")
}

/// `docker ARGS` against `host`'s daemon.
pub fn docker(host: &LabHost, args: &[&str]) -> std::io::Result<std::process::Output> {
    std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", socket(host).display()))
        .stdin(Stdio::null())
        .output()
}

/// Waits until `host`'s daemon answers, then makes its `lab` network.
pub async fn ready(host: &LabHost) -> Result<(), LabError> {
    let start = Instant::now();
    loop {
        if docker(host, &["version", "--format", "{{.Server.Version}}"])
            .is_ok_and(|o| o.status.success())
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let log =
                std::fs::read_to_string(docker_dir(host).join("dockerd.log")).unwrap_or_default();
            let last = log.lines().last().unwrap_or("no output").to_string();
            return Err(LabError::Invalid(format!(
                "Docker's daemon on host {} did not answer within 60 s: {last}",
                host.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The host's bridge, with the host's own address as the gateway Docker looks for on
    // it: Docker adds no address and no bridge of its own.
    let gateway = host.address.to_string();
    let out = docker(
        host,
        &[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            "10.77.0.0/16",
            "--ip-range",
            IP_RANGE,
            "--gateway",
            &gateway,
            "--opt",
            "com.docker.network.bridge.name=br0",
            crate::engines::NETWORK,
        ],
    )
    .map_err(|e| LabError::io("docker network create", e))?;
    if !out.status.success() {
        return Err(LabError::Invalid(format!(
            "Docker on host {} could not make the lab network: {}",
            host.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Removes `host`'s Docker containers and stops its daemon (`ferry lab down`).
pub async fn stop(host: &LabHost) {
    if !socket(host).exists() {
        return;
    }
    if let Ok(out) = docker(host, &["ps", "--all", "--quiet"]) {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "--force"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker(host, &args);
        }
    }
    let containerd = docker_dir(host).join("exec/containerd/containerd.pid");
    stop_process(&pid_file(host), "dockerd").await;
    // The containerd it started stops with it; not if it was killed.
    stop_process(&containerd, "containerd").await;
}

/// Stops the process a pid file names, if it is still the program `comm`.
async fn stop_process(pid_file: &std::path::Path, comm: &str) {
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 1);
    let Some(pid) = pid else { return };
    let is_it =
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm);
    if !is_it() {
        return;
    }
    // SAFETY: kill(2) on the daemon this lab started (its pid file, its name checked).
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let start = Instant::now();
    while is_it() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if is_it() {
        // SAFETY: as above; it did not stop in time.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}
