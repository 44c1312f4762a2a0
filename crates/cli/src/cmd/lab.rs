//! `ferry lab`: a multi-host testbed on this machine.

use ferry_proto::WireMessage;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ferry_lab::{LabSpec, LabState};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The lab's name (several labs can run side by side).
    #[arg(long, global = true, env = "FERRY_LAB", default_value = "lab")]
    lab: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create hosts a, b, … and client, and start an agent on each host.
    Up {
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        /// Shape every host's link to this rate, e.g. 1gbit.
        #[arg(long)]
        link: Option<String>,
        /// One-way delay added to each shaped link, in milliseconds.
        #[arg(long, default_value_t = 0.0)]
        delay: f64,
        /// Let migrations inject faults (tests).
        #[arg(long, hide = true)]
        faults: bool,
        /// Give each host its own Docker daemon (and a Docker network `lab`).
        #[arg(long)]
        docker: bool,
    },
    /// Remove everything the lab made.
    Down,
    /// Hosts, agents and containers.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Start a container on a lab host, with its own address.
    Run {
        #[arg(long)]
        host: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Join the network namespace of this pod (created with its first member)
        #[arg(long)]
        pod: Option<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Remove a container from a lab host.
    Rm {
        #[arg(long)]
        host: String,
        name: String,
    },
    /// Restart a host's agent.
    Restart {
        host: String,
        #[arg(long, hide = true)]
        faults: bool,
        /// Start the agent with the TLS files of this directory instead of the lab's:
        /// DIR/ca.pem, DIR/HOST.pem, DIR/HOST-key.pem (to try other certificates).
        #[arg(long)]
        tls_dir: Option<std::path::PathBuf>,
        /// More arguments for the agent.
        #[arg(last = true)]
        agent_args: Vec<String>,
    },
    /// Build an image from this machine's programs (and the libraries they load) and
    /// import it into the engines of lab hosts: there is no registry.
    Image {
        /// The image's name, e.g. localhost/redis:1.
        name: String,
        /// The hosts that get it (default: every host).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Absolute paths of the programs it holds.
        #[arg(last = true, required = true)]
        programs: Vec<PathBuf>,
    },
    /// Run a command in a host's namespace or in `client`.
    Exec {
        host: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    match a.command {
        Command::Up {
            hosts,
            link,
            delay,
            faults,
            docker,
        } => {
            let ferry = std::env::current_exe()?;
            let spec = LabSpec {
                name: a.lab.clone(),
                hosts,
                link,
                delay_ms: delay,
                ferry,
                faults,
                docker,
            };
            let lab = ferry_lab::up(&spec).await?;
            for h in &lab.hosts {
                println!(
                    "host {}: {} (agent {}, control {})",
                    h.name,
                    h.address,
                    h.listen,
                    h.control.display()
                );
            }
            println!("client: {}", lab.client_address);
            Ok(0)
        }
        Command::Down => {
            ferry_lab::down(&a.lab).await?;
            println!("lab '{}' removed", a.lab);
            Ok(0)
        }
        Command::Status { json } => status(&a.lab, json).await,
        Command::Run {
            host,
            name,
            ip,
            pod,
            command,
        } => {
            let mut lab = LabState::load(&a.lab)?;
            let c = ferry_lab::run(&mut lab, &host, &name, ip, pod, command).await?;
            let addr = c.net.map(|n| n.address).unwrap_or_default();
            println!("{} runs on {} at {}", c.name, host, addr);
            Ok(0)
        }
        Command::Rm { host, name } => {
            let lab = LabState::load(&a.lab)?;
            match ferry_lab::ask(
                lab.host(&host)?,
                &ferry_proto::ControlRequest::Remove { name },
            )
            .await?
            {
                ferry_proto::ControlReply::Removed => Ok(0),
                ferry_proto::ControlReply::Error { message } => anyhow::bail!("{message}"),
                other => anyhow::bail!("unexpected {}", other.name()),
            }
        }
        Command::Restart {
            host,
            faults,
            tls_dir,
            agent_args,
        } => {
            let mut lab = LabState::load(&a.lab)?;
            let extra = ferry_lab::AgentExtras {
                tls_dir,
                args: agent_args,
            };
            ferry_lab::restart_agent(&mut lab, &host, &std::env::current_exe()?, faults, &extra)
                .await?;
            println!("agent of host {host} restarted");
            Ok(0)
        }
        Command::Image {
            name,
            hosts,
            programs,
        } => image(&a.lab, &name, &hosts, &programs),
        Command::Exec { host, command } => {
            let lab = LabState::load(&a.lab)?;
            let ns = lab.netns_of(&host)?;
            exec_in(&ns, &command, engines_env(&lab, &host))
        }
    }
}

/// What points Podman and Docker at a host's own (nothing for `client`).
fn engines_env(lab: &LabState, host: &str) -> Vec<(String, String)> {
    let Some(h) = lab.hosts.iter().find(|h| h.name == host) else {
        return Vec::new();
    };
    let mut env = ferry_lab::engines::podman_env(h);
    env.extend(ferry_lab::docker::docker_env(h));
    env.extend(ferry_lab::ssh::env(lab, h));
    env
}

/// A host's standbys, one line each.
fn print_standbys(sb: &serde_json::Value) {
    for k in sb["keeping"].as_array().into_iter().flatten() {
        let last = &k["last"];
        println!(
            "  standby of {} at {}: checkpoint {} every {} ms, last paused it {:.1} ms and sent {} bytes{}",
            k["container"].as_str().unwrap_or(""),
            k["to"].as_str().unwrap_or(""),
            last["seq"],
            k["every_ms"],
            last["paused_ms"].as_f64().unwrap_or(0.0),
            last["bytes_sent"],
            k["last_error"]
                .as_str()
                .map(|e| format!("; the last round failed: {e}"))
                .unwrap_or_default()
        );
    }
    for c in sb["holding"].as_array().into_iter().flatten() {
        println!(
            "  holds standby checkpoint {} of {} from {}, {:.1} s old, {} bytes",
            c["seq"],
            c["container"].as_str().unwrap_or(""),
            c["source"].as_str().unwrap_or(""),
            c["age_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            c["bytes"]
        );
    }
}

/// `ferry lab image`: an image of this machine's programs, into the hosts' engines.
fn image(lab: &str, name: &str, hosts: &[String], programs: &[PathBuf]) -> anyhow::Result<i32> {
    let lab = LabState::load(lab)?;
    let imported = ferry_lab::image::import_image(&lab, name, hosts, programs)?;
    println!("image {name} imported on {}", imported.join(", "));
    Ok(0)
}

/// Replaces this process with `command`, inside the namespace `ns`: signals and the exit
/// status are the command's own.
fn exec_in(ns: &str, command: &[String], env: Vec<(String, String)>) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt;
    let path: PathBuf = ferry_netns::netns_path(ns);
    let f = std::fs::File::open(&path)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]).envs(env);
    // SAFETY: runs right before execvp in this process; setns is async-signal-safe and
    // the descriptor is open.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let err = cmd.exec();
    anyhow::bail!("cannot run {}: {err}", command[0])
}

async fn status(name: &str, json: bool) -> anyhow::Result<i32> {
    let lab = LabState::load(name)?;
    let containers = ferry_lab::containers(&lab).await;
    let standbys = ferry_lab::standbys(&lab).await;
    if json {
        let hosts: Vec<serde_json::Value> = lab
            .hosts
            .iter()
            .zip(&containers)
            .zip(&standbys)
            .map(|((h, (_, c)), sb)| {
                serde_json::json!({
                    "standby": sb,
                    "name": h.name,
                    "netns": h.netns,
                    "address": h.address,
                    "agent": { "listen": h.listen, "pid": h.agent_pid, "up": c.is_ok(), "error": c.as_ref().err() },
                    "containers": c.clone().unwrap_or_default(),
                    "resources": ferry_lab::resources::of_host(&lab, h),
                })
            })
            .collect();
        let v = serde_json::json!({
            "name": lab.name,
            "hosts": hosts,
            "client": { "netns": lab.client_netns, "address": lab.client_address },
            "link": lab.link,
            "delay_ms": lab.delay_ms,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "lab {}{}",
        lab.name,
        lab.link
            .as_ref()
            .map(|l| format!(" (links {l}, {} ms delay)", lab.delay_ms))
            .unwrap_or_default()
    );
    for ((h, (_, c)), sb) in lab.hosts.iter().zip(&containers).zip(&standbys) {
        let agent = if c.is_ok() { "up" } else { "DOWN" };
        println!("host {} {} agent {} {}", h.name, h.address, h.listen, agent);
        let r = ferry_lab::resources::of_host(&lab, h);
        println!(
            "  holds: {} agent fds, {} container namespaces, {} mounts, {} cgroups, {} sessions, {} nft tables, {} iptables rules",
            r.agent_fds, r.netns, r.mounts, r.cgroups, r.sessions, r.nft_tables, r.iptables_rules
        );
        if let Ok(items) = c {
            for i in items {
                let addr = i.net.as_ref().map(|n| n.address.as_str()).unwrap_or("-");
                println!("  {:<16} {:<8} {:<7} {}", i.name, i.status, i.engine, addr);
            }
        }
        print_standbys(sb);
    }
    println!("client {}", lab.client_address);
    Ok(0)
}
