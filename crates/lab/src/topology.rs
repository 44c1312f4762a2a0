//! Building and removing a lab.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_netns::{shape, Cmd, RealRunner, Runner};
use ferry_proto::{ControlReply, ControlRequest};
use ferry_transport::Secret;

use crate::state::{lab_dir, LabHost, LabState};
use crate::LabError;

/// Port the lab's agents listen on.
pub const AGENT_PORT: u16 = 7070;

/// What `ferry lab up` builds.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub name: String,
    pub hosts: usize,
    /// Shape the links to this rate (`1gbit`), with `delay_ms` of delay each way.
    pub link: Option<String>,
    pub delay_ms: f64,
    /// The ferry binary the agents run.
    pub ferry: PathBuf,
    /// Let tests inject faults into the agents.
    pub faults: bool,
    /// Give each host its own Docker daemon.
    pub docker: bool,
}

fn host_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| ((b'a' + i as u8) as char).to_string())
        .collect()
}

async fn run(c: Cmd) -> Result<String, LabError> {
    Ok(RealRunner.run(&c).await?)
}

fn ip(args: &[&str]) -> Cmd {
    Cmd::new("ip", args)
}

/// Builds the lab and starts its agents.
pub async fn up(spec: &LabSpec) -> Result<LabState, LabError> {
    if LabState::load(&spec.name).is_ok() {
        return Err(LabError::AlreadyUp(spec.name.clone()));
    }
    if !(1..=8).contains(&spec.hosts) {
        return Err(LabError::Invalid("a lab has 1 to 8 hosts".into()));
    }
    if spec.name.is_empty()
        || spec.name.len() > 12
        || !spec.name.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(LabError::Invalid(format!(
            "lab name '{}' must be 1 to 12 letters or digits",
            spec.name
        )));
    }
    if let Some(rate) = &spec.link {
        shape::validate_rate(rate)?;
    }
    let dir = lab_dir(&spec.name);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::io(dir.display().to_string(), e))?;
    let prefix = format!("ferry-{}", spec.name);
    let fabric = format!("{prefix}-fabric");
    let client = format!("{prefix}-client");
    let secret = dir.join("secret");
    Secret::generate(&secret)?;
    // The lab's own CA; each host gets a certificate for its name and address, and an
    // operator certificate (`operator-lab.pem`) lets a CLI control the agents over TCP.
    let tls_dir = dir.join("tls");
    ferry_transport::certs::init_ca(&tls_dir, true)?;
    ferry_transport::certs::issue_operator(&tls_dir, "lab", true)?;
    let mut state = LabState {
        name: spec.name.clone(),
        fabric: fabric.clone(),
        client_netns: client.clone(),
        client_address: Ipv4Addr::new(10, 77, 0, 100),
        hosts: Vec::new(),
        secret: secret.clone(),
        tls_dir: Some(tls_dir),
        link: spec.link.clone(),
        delay_ms: spec.delay_ms,
        next_ip: 0,
    };
    state.save()?;
    let built = build(spec, &mut state, &prefix).await;
    if let Err(e) = built {
        let _ = down(&spec.name).await;
        return Err(e);
    }
    state.save()?;
    Ok(state)
}

async fn build(spec: &LabSpec, state: &mut LabState, prefix: &str) -> Result<(), LabError> {
    build_fabric(state).await?;
    for (i, name) in host_names(spec.hosts).iter().enumerate() {
        let (ns, address, fabric_if) = build_host(state, prefix, i, name).await?;
        if let Some(rate) = &spec.link {
            shape_uplink(spec, rate, &ns, &state.fabric, &fabric_if).await?;
        }
        let state_dir = lab_dir(&spec.name).join(name);
        let host = LabHost {
            name: name.clone(),
            netns: ns.clone(),
            address,
            listen: SocketAddr::new(address.into(), AGENT_PORT),
            runtime_root: state_dir.join("runc"),
            control: state_dir.join("agent.sock"),
            state_dir,
            agent_pid: None,
        };
        if let Some(tls) = &state.tls_dir {
            ferry_transport::certs::issue(tls, &host.name, &[host.address.into()], true)?;
        }
        crate::engines::setup_podman(&host)?;
        let pid = start_agent(spec, &host, state, prefix, &AgentExtras::default())?;
        state.hosts.push(LabHost {
            agent_pid: Some(pid),
            ..host
        });
        state.save()?;
    }
    for h in &state.hosts {
        wait_agent(h).await?;
    }
    if crate::ssh::available() {
        crate::ssh::start_all(state, spec.faults).await?;
    } else {
        eprintln!("ferry lab: no OpenSSH server on this machine (/usr/sbin/sshd): the hosts run none, and --to ssh://HOST cannot be tried; run scripts/install-deps.sh");
    }
    if spec.docker {
        if crate::engines::which("dockerd").is_none() {
            return Err(LabError::Invalid(
                "--docker needs Docker's daemon, and dockerd is not installed: run scripts/install-deps.sh".into(),
            ));
        }
        for h in &state.hosts {
            crate::docker::start(h)?;
        }
        for h in &state.hosts {
            crate::docker::ready(h).await?;
        }
    }
    Ok(())
}

/// The fabric (one bridge) and the client's namespace on it.
async fn build_fabric(state: &LabState) -> Result<(), LabError> {
    let fabric = state.fabric.clone();
    run(ip(&["netns", "add", &fabric])).await?;
    run(ip(&["-n", &fabric, "link", "set", "lo", "up"])).await?;
    run(ip(&["-n", &fabric, "link", "add", "br0", "type", "bridge"])).await?;
    run(ip(&["-n", &fabric, "link", "set", "br0", "up"])).await?;

    // The client: one veth into the fabric.
    let client = state.client_netns.clone();
    run(ip(&["netns", "add", &client])).await?;
    run(ip(&["-n", &client, "link", "set", "lo", "up"])).await?;
    run(ip(&[
        "link", "add", "eth0", "netns", &client, "type", "veth", "peer", "name", "h-client",
        "netns", &fabric,
    ]))
    .await?;
    run(ip(&[
        "-n", &fabric, "link", "set", "h-client", "master", "br0", "up",
    ]))
    .await?;
    run(ip(&[
        "-n",
        &client,
        "addr",
        "add",
        "10.77.0.100/16",
        "dev",
        "eth0",
    ]))
    .await?;
    run(ip(&["-n", &client, "link", "set", "eth0", "up"])).await?;

    Ok(())
}

/// Host `i`'s namespace: its bridge (with a fixed MAC), its address, its uplink to the
/// fabric. Returns the namespace, the address and the uplink's fabric end.
async fn build_host(
    state: &LabState,
    prefix: &str,
    i: usize,
    name: &str,
) -> Result<(String, Ipv4Addr, String), LabError> {
    let fabric = state.fabric.clone();
    let ns = format!("{prefix}-{name}");
    let address = Ipv4Addr::new(10, 77, 0, 1 + i as u8);
    let fabric_if = format!("h-{name}");
    run(ip(&["netns", "add", &ns])).await?;
    run(ip(&["-n", &ns, "link", "set", "lo", "up"])).await?;
    run(ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])).await?;
    // A bridge takes the lowest MAC of its ports unless it has one of its own: without
    // this, every container joining or leaving would change the host's MAC and leave
    // the other hosts' ARP caches pointing at a MAC that no longer exists.
    let mac = format!("02:fe:0a:4d:00:{:02x}", 1 + i);
    run(ip(&["-n", &ns, "link", "set", "br0", "address", &mac])).await?;
    run(ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{address}/16"),
        "dev",
        "br0",
    ]))
    .await?;
    run(ip(&["-n", &ns, "link", "set", "br0", "up"])).await?;
    run(ip(&[
        "link", "add", "up0", "netns", &ns, "type", "veth", "peer", "name", &fabric_if, "netns",
        &fabric,
    ]))
    .await?;
    run(ip(&[
        "-n", &ns, "link", "set", "up0", "master", "br0", "up",
    ]))
    .await?;
    run(ip(&[
        "-n", &fabric, "link", "set", &fabric_if, "master", "br0", "up",
    ]))
    .await?;
    Ok((ns, address, fabric_if))
}

/// Shapes both directions of a host's uplink.
async fn shape_uplink(
    spec: &LabSpec,
    rate: &str,
    ns: &str,
    fabric: &str,
    fabric_if: &str,
) -> Result<(), LabError> {
    // Shape both directions of the host's uplink.
    let up = shape::plan_shape("up0", rate, spec.delay_ms)?
        .into_iter()
        .map(|c| c.in_netns(ferry_netns::netns_path(ns)));
    let down = shape::plan_shape(fabric_if, rate, spec.delay_ms)?
        .into_iter()
        .map(|c| c.in_netns(ferry_netns::netns_path(fabric)));
    for c in up.chain(down).collect::<Vec<_>>() {
        run(c).await.map_err(|e| match e.to_string() {
            m if spec.delay_ms > 0.0 && shape::netem_missing(&m) => LabError::Invalid(
                "this kernel lacks the netem qdisc (sch_netem), so the lab cannot add a delay; shape the rate alone with --link RATE and no --delay".into(),
            ),
            _ => e,
        })?;
    }
    Ok(())
}

/// What a restarted agent gets beyond the lab's defaults (tests of certificates and
/// protocol versions).
#[derive(Debug, Clone, Default)]
pub struct AgentExtras {
    /// TLS files from this directory instead of the lab's.
    pub tls_dir: Option<PathBuf>,
    pub args: Vec<String>,
}

/// Starts a host's agent as a daemon of its own session, logging to its state dir.
/// What the lab's agents restore beyond the default policy: the containers `ferry lab
/// run` makes see the host's `/usr` and `/etc`, read-only. Nothing else.
pub const LAB_POLICY: &str = "# The lab's restore policy (docs/security.md#restore-policy).
# Its containers run programs of the host: its /usr and /etc, read-only.
host-mount /usr ro
host-mount /etc ro
";

fn write_policy(lab: &LabState) -> Result<PathBuf, LabError> {
    let path = lab_dir(&lab.name).join("restore-policy");
    std::fs::write(&path, LAB_POLICY).map_err(|e| LabError::io(path.display().to_string(), e))?;
    Ok(path)
}

pub fn start_agent(
    spec: &LabSpec,
    host: &LabHost,
    lab: &LabState,
    prefix: &str,
    extra: &AgentExtras,
) -> Result<u32, LabError> {
    std::fs::create_dir_all(&host.state_dir)
        .map_err(|e| LabError::io(host.state_dir.display().to_string(), e))?;
    let mut cmd = std::process::Command::new(&spec.ferry);
    cmd.args([
        "--log",
        "info",
        "agent",
        "--netns",
        &host.netns,
        "--name",
        &host.name,
    ])
    .arg("--listen")
    .arg(host.listen.to_string())
    .arg("--state-dir")
    .arg(&host.state_dir)
    .arg("--runtime-root")
    .arg(&host.runtime_root)
    .arg("--control")
    .arg(&host.control)
    // A lab host runs many containers; groups move them all at once.
    .arg("--max-sessions")
    .arg("16")
    .arg("--restore-policy")
    .arg(write_policy(lab)?)
    // Mutual TLS between the agents, and the shared secret as defence in depth.
    .arg("--secret-file")
    .arg(&lab.secret)
    .args([
        "--bridge",
        "br0",
        "--netns-prefix",
        &format!("{prefix}-{}", host.name),
    ]);
    if let Some(tls) = extra.tls_dir.as_ref().or(lab.tls_dir.as_ref()) {
        let f = ferry_transport::TlsFiles::in_dir(tls, &host.name);
        cmd.arg("--tls-ca")
            .arg(f.ca)
            .arg("--tls-cert")
            .arg(f.cert)
            .arg("--tls-key")
            .arg(f.key);
    }
    if spec.faults {
        cmd.arg("--allow-fault-injection");
    }
    // The host's own Podman, if the lab gave it one.
    let podman = crate::engines::podman_env(host);
    match podman.is_empty() {
        true => cmd.args(["--podman", "none"]),
        false => cmd
            .envs(podman)
            .arg("--podman-runc-root")
            .arg(crate::engines::podman_runc_root(host))
            // Hosts share this machine's cgroups: each its own parent, as for its agent.
            .arg("--podman-cgroup-parent")
            .arg(format!("/ferry/{prefix}-{}/podman", host.name)),
    };
    // The host's own Docker, whether it runs yet or not.
    cmd.env(
        "DOCKER_HOST",
        format!("unix://{}", crate::docker::socket(host).display()),
    )
    .arg("--docker-socket")
    .arg(crate::docker::socket(host))
    .arg("--docker-runc-root")
    .arg(crate::docker::docker_dir(host).join("exec/runtime-runc/moby"));
    cmd.args(&extra.args);
    crate::spawn::daemon(cmd, &host.state_dir.join("agent.log"), "agent")
}

/// Restarts a host's agent (after a crash, or to test recovery).
pub async fn restart_agent(
    lab: &mut LabState,
    host: &str,
    ferry: &Path,
    faults: bool,
    extra: &AgentExtras,
) -> Result<(), LabError> {
    let h = lab.host(host)?.clone();
    if let Some(pid) = h.agent_pid {
        if alive(pid) {
            kill(pid, libc::SIGTERM);
            let start = Instant::now();
            while alive(pid) && start.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if alive(pid) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
    let spec = LabSpec {
        name: lab.name.clone(),
        hosts: lab.hosts.len(),
        link: lab.link.clone(),
        delay_ms: lab.delay_ms,
        ferry: ferry.to_path_buf(),
        faults,
        docker: false,
    };
    let pid = start_agent(&spec, &h, lab, &format!("ferry-{}", lab.name), extra)?;
    if let Some(x) = lab.hosts.iter_mut().find(|x| x.name == host) {
        x.agent_pid = Some(pid);
    }
    lab.save()?;
    wait_agent(lab.host(host)?).await
}

/// Whether a host's agent process is alive.
pub fn agent_alive(h: &LabHost) -> bool {
    h.agent_pid.is_some_and(alive)
}

/// Waits until a host's agent answers on its control socket.
pub async fn wait_agent(h: &LabHost) -> Result<(), LabError> {
    let start = Instant::now();
    loop {
        if let Ok(ControlReply::Pong { .. }) = crate::ask(h, &ControlRequest::Ping).await {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            let log = std::fs::read_to_string(h.state_dir.join("agent.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(LabError::Agent(format!(
                "the agent of host {} did not start within 20 s; its log ends with: {}",
                h.name,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) with a pid this lab started.
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

fn alive(pid: u32) -> bool {
    kill(pid, 0)
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Removes everything the lab made: agents, containers, namespaces, mounts, state.
pub async fn down(name: &str) -> Result<(), LabError> {
    let dir = lab_dir(name);
    let state = LabState::load(name).ok();
    if state.is_none() && !dir.exists() {
        return Err(LabError::NotUp(name.to_string()));
    }
    if let Some(s) = &state {
        for h in &s.hosts {
            if let Some(pid) = h.agent_pid {
                if alive(pid) && kill(pid, libc::SIGTERM) {
                    let start = Instant::now();
                    while alive(pid) && start.elapsed() < Duration::from_secs(5) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if alive(pid) {
                        kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
    // Containers of the hosts' engines, then those in every host's runtime root.
    for h in state.iter().flat_map(|s| &s.hosts) {
        crate::ssh::stop(&h.state_dir);
        crate::engines::remove_podman_containers(h);
        crate::docker::stop(h).await;
    }
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.filter_map(Result::ok) {
            let root = e.path().join("runc");
            if !root.is_dir() {
                continue;
            }
            let out = std::process::Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["list", "-q"])
                .output();
            if let Ok(out) = out {
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = std::process::Command::new("runc")
                        .arg("--root")
                        .arg(&root)
                        .args(["delete", "-f", id])
                        .output();
                }
            }
        }
    }
    // Namespaces: the fabric, client, hosts, and every container namespace of this lab.
    let prefix = format!("ferry-{name}-");
    if let Ok(rd) = std::fs::read_dir(ferry_netns::NETNS_DIR) {
        for e in rd.filter_map(Result::ok) {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) {
                let _ = run(ip(&["netns", "delete", &n])).await;
            }
        }
    }
    // Mounts under the lab directory (the agents' image tmpfs), deepest first.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for p in mounts_under(&mounts, &dir) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&p)
            .output();
    }
    // The cgroups the hosts' agents made (each agent's parent, and any container left).
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.filter_map(Result::ok) {
            let host = e.file_name().to_string_lossy().into_owned();
            for prefix in [
                format!("ferry-{name}-{host}"),
                format!("ferry-{name}-{host}-ssh"),
            ] {
                for parent in crate::resources::cgroup_dirs(&prefix) {
                    crate::resources::remove_cgroup_tree(&parent);
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).map_err(|e| LabError::io(dir.display().to_string(), e))?;
    Ok(())
}

/// The mount points of a `/proc/self/mountinfo` text at or under `dir`, deepest first.
/// Under means path components: lab `t1` owns nothing of lab `t12`.
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<String> {
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_unmounts_its_own_mounts_and_not_those_of_a_lab_whose_name_it_prefixes() {
        let info = "\
36 25 0:32 / /run/ferry/lab/t1/a/images rw - tmpfs ferry-images rw
37 25 0:33 / /run/ferry/lab/t12/b/images rw - tmpfs ferry-images rw
38 36 0:34 / /run/ferry/lab/t1/a/images/deep rw - tmpfs x rw
";
        assert_eq!(
            mounts_under(info, Path::new("/run/ferry/lab/t1")),
            vec![
                "/run/ferry/lab/t1/a/images/deep",
                "/run/ferry/lab/t1/a/images"
            ]
        );
    }

    #[test]
    fn hosts_are_named_by_letter() {
        assert_eq!(host_names(3), vec!["a", "b", "c"]);
    }

    #[test]
    fn addresses_are_allocated_in_order_without_repeats() {
        let mut s = LabState {
            name: "t".into(),
            fabric: "f".into(),
            client_netns: "c".into(),
            client_address: Ipv4Addr::new(10, 77, 0, 100),
            hosts: vec![],
            secret: "/s".into(),
            tls_dir: None,
            link: None,
            delay_ms: 0.0,
            next_ip: 0,
        };
        let a = s.allocate_ip().unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 77, 1, 10));
        let mut seen = std::collections::HashSet::new();
        seen.insert(a);
        for _ in 0..600 {
            assert!(seen.insert(s.allocate_ip().unwrap()));
        }
    }
}
