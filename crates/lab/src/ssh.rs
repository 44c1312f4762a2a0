//! An OpenSSH server on each host, for ferry without agents (`--to ssh://HOST`).
//!
//! `up` makes the lab's own keys under `DIR/ssh/`: one host key for every host, a client
//! key root logs in with, and a client configuration (`DIR/ssh/config`) that names the
//! hosts (`ssh -F DIR/ssh/config b`) and trusts exactly the lab's host key. Each host's
//! sshd listens on the host's address only, takes that key and nothing else, and gives
//! its sessions the host's ferry settings (`FERRY_HOST_CONF=DIR/HOST/host.conf`): a
//! state directory, runc root, namespace prefix and restore policy of its own, as
//! `ferry agent` would take them on that machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::state::{lab_dir, LabHost, LabState};
use crate::LabError;

/// The OpenSSH server, where Debian installs it.
const SSHD: &str = "/usr/sbin/sshd";

/// The lab's SSH files.
pub fn dir(lab: &str) -> PathBuf {
    lab_dir(lab).join("ssh")
}

/// Whether this machine has an OpenSSH server and client.
pub fn available() -> bool {
    Path::new(SSHD).is_file() && crate::engines::which("ssh").is_some()
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::io(path.display().to_string(), e))
}

fn keygen(path: &Path) -> Result<String, LabError> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-lab", "-f"])
        .arg(path)
        .output()
        .map_err(|e| LabError::io("ssh-keygen", e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: "ssh-keygen".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let public = path.with_extension("pub");
    std::fs::read_to_string(&public)
        .map(|s| s.trim().to_string())
        .map_err(|e| LabError::io(public.display().to_string(), e))
}

/// The keys, the client configuration and the hosts' known key; then each host's
/// settings and server.
pub async fn start_all(lab: &LabState, faults: bool) -> Result<(), LabError> {
    let d = dir(&lab.name);
    std::fs::create_dir_all(d.join("bin")).map_err(|e| LabError::io(d.display().to_string(), e))?;
    let host_key = keygen(&d.join("host_key"))?;
    let client_key = keygen(&d.join("id_ed25519"))?;
    write(&d.join("authorized_keys"), &format!("{client_key}\n"))?;
    let mut known = String::new();
    let mut config = String::new();
    for h in &lab.hosts {
        known.push_str(&format!("{},{} {host_key}\n", h.name, h.address));
        config.push_str(&format!("Host {}\n    HostName {}\n", h.name, h.address));
    }
    write(&d.join("known_hosts"), &known)?;
    config.push_str(&format!(
        "Host *\n    User root\n    IdentityFile {id}\n    IdentitiesOnly yes\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n    StrictHostKeyChecking yes\n",
        id = d.join("id_ed25519").display(),
        kh = d.join("known_hosts").display(),
    ));
    write(&d.join("config"), &config)?;
    std::fs::create_dir_all("/run/sshd").map_err(|e| LabError::io("/run/sshd", e))?;
    for h in &lab.hosts {
        start(lab, h, faults)?;
    }
    for h in &lab.hosts {
        wait(h).await?;
    }
    Ok(())
}

/// `DIR/HOST/host.conf`: the host's ferry settings for sessions over SSH.
fn host_conf(lab: &LabState, h: &LabHost, faults: bool) -> String {
    let root = lab_dir(&lab.name);
    let mut s = format!(
        "# ferry without an agent on lab host {name} (docs/ssh.md)\n--name {name}\n--state-dir {state}\n--runtime-root {runc}\n--bridge br0\n--netns-prefix ferry-{lab}-{name}-ssh\n--restore-policy {policy}\n--max-sessions 16\n--podman none\n--docker none\n",
        name = h.name,
        lab = lab.name,
        state = h.state_dir.join("ssh").display(),
        runc = h.runtime_root.display(),
        policy = root.join("restore-policy").display(),
    );
    if faults {
        s.push_str("--allow-fault-injection\n");
    }
    s
}

fn pid_file(h: &LabHost) -> PathBuf {
    h.state_dir.join("sshd.pid")
}

fn start(lab: &LabState, h: &LabHost, faults: bool) -> Result<(), LabError> {
    let d = dir(&lab.name);
    std::fs::create_dir_all(&h.state_dir)
        .map_err(|e| LabError::io(h.state_dir.display().to_string(), e))?;
    let conf = h.state_dir.join("host.conf");
    write(&conf, &host_conf(lab, h, faults))?;
    let sshd_config = h.state_dir.join("sshd_config");
    write(
        &sshd_config,
        &format!(
            "ListenAddress {addr}\nPort 22\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowStreamLocalForwarding yes\nAllowTcpForwarding local\nPermitListen none\nX11Forwarding no\nPrintMotd no\nMaxSessions 64\nMaxStartups 64\nSetEnv FERRY_HOST_CONF={conf} FERRY_SSH_CACHE={cache}\n",
            addr = h.address,
            hk = d.join("host_key").display(),
            pid = pid_file(h).display(),
            ak = d.join("authorized_keys").display(),
            conf = conf.display(),
            cache = d.join("bin").display(),
        ),
    )?;
    // Only the network namespace (`ip netns exec` would remount /sys, and runc would
    // find no cgroups in the sessions).
    let out = Command::new("nsenter")
        .arg(format!(
            "--net={}",
            ferry_netns::netns_path(&h.netns).display()
        ))
        .args([SSHD, "-f"])
        .arg(&sshd_config)
        .arg("-E")
        .arg(h.state_dir.join("sshd.log"))
        .output()
        .map_err(|e| LabError::io("starting sshd", e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("sshd of host {}", h.name),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Waits until the host's sshd wrote its pid file (it has bound its address then).
async fn wait(h: &LabHost) -> Result<(), LabError> {
    let start = Instant::now();
    while !pid_file(h).exists() {
        if start.elapsed() > Duration::from_secs(10) {
            let log = std::fs::read_to_string(h.state_dir.join("sshd.log")).unwrap_or_default();
            return Err(LabError::Invalid(format!(
                "the SSH server of host {} did not start within 10 s: {}",
                h.name,
                log.lines().last().unwrap_or("its log is empty")
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Stops the host's sshd (sessions it forked end with their connections).
pub fn stop(state_dir: &Path) {
    let pid = std::fs::read_to_string(state_dir.join("sshd.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|&p| p > 1) {
        // SAFETY: kill(2) with the pid of the sshd this lab started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// What `ferry lab exec HOST` sets for ferry over SSH: the host's settings and the
/// lab's client configuration.
pub fn env(lab: &LabState, h: &LabHost) -> Vec<(String, String)> {
    let d = dir(&lab.name);
    if !d.join("config").exists() {
        return Vec::new();
    }
    vec![
        (
            "FERRY_HOST_CONF".into(),
            h.state_dir.join("host.conf").display().to_string(),
        ),
        (
            "FERRY_SSH_CONFIG".into(),
            d.join("config").display().to_string(),
        ),
    ]
}
