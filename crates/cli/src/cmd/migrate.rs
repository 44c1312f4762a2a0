//! `ferry migrate`: move a running container to another host.

use std::path::PathBuf;

use anyhow::Context;
use ferry_transport::{Credentials, Endpoint};
use ferry_types::{Fault, MigrateOptions, StrategyChoice};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container to move (or --group FILE).
    #[arg(required_unless_present = "group", conflicts_with = "group")]
    container: Option<String>,
    /// Move the containers of a group file together, in order (docs/groups.md).
    #[arg(long, value_name = "FILE")]
    group: Option<PathBuf>,
    /// With --group: sequential, parallel or pipeline.
    #[arg(long, default_value = "pipeline", requires = "group")]
    schedule: ferry_engine::group::Schedule,
    /// Destination: a lab host name, an agent address HOST:PORT, or ssh://[USER@]HOST[:PORT]
    /// (no agent on either side: docs/ssh.md).
    #[arg(long)]
    to: String,
    /// cold (every page moves before the container restarts), precopy (pages move while
    /// it runs, then what changed), postcopy (the container restarts at once, its pages
    /// follow), hybrid (precopy rounds, then postcopy), or auto (see docs/strategies.md).
    #[arg(long, default_value = "cold")]
    strategy: StrategyChoice,
    /// Let --strategy auto choose post-copy. Post-copy ties the container to the source
    /// until its last page arrived: if the link or the source is lost before, the
    /// container stops at the destination and stays frozen at the source.
    #[arg(long)]
    allow_postcopy: bool,
    /// Pre-copy: freeze once the predicted downtime is below this (e.g. 300ms, 1.5s).
    #[arg(long, value_parser = parse_duration_ms, value_name = "DUR")]
    max_downtime: Option<u64>,
    /// Pre-copy: freeze after at most this many rounds (default 8).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000), value_name = "N")]
    max_rounds: Option<u32>,
    /// Pre-copy: freeze once a round sends less than this percent of the first round.
    #[arg(long, value_parser = parse_percent, value_name = "PCT")]
    threshold: Option<f64>,
    /// Pre-copy: compress pages on the wire where it pays (zstd) or never (none).
    #[arg(long, value_parser = ["zstd", "none"])]
    compress: Option<String>,
    /// The address the container takes at the destination (ADDR[/PREFIX], the current
    /// prefix without one); its established connections carry on (docs/new-address.md).
    #[arg(long, value_name = "ADDR[/PREFIX]", conflicts_with = "group")]
    new_ip: Option<String>,
    /// With --new-ip: containers (on any of ferry's hosts) whose connections to this one
    /// follow it to the new address; each is checkpointed, rewritten and restored in
    /// place while the container waits for its own restore.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "P1,P2,…",
        requires = "new_ip"
    )]
    peers: Vec<String>,
    /// The agent that runs the container now: a lab host name, a Unix socket, or
    /// HOST:PORT. Default: in a lab, the host running it; otherwise /var/lib/ferry/agent.sock.
    #[arg(long)]
    agent: Option<String>,
    /// How to prove ferry's identity to an agent reached over TCP.
    #[command(flatten)]
    creds: ferry_transport::cli::CredArgs,
    /// Lab to resolve host names in.
    #[arg(long, env = "FERRY_LAB", default_value = "lab")]
    lab: String,
    /// Do not checkpoint established TCP connections.
    #[arg(long)]
    no_tcp_established: bool,
    /// Checkpoint file locks.
    #[arg(long)]
    file_locks: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Inject a fault (tests; agents must allow it).
    #[arg(long, hide = true, value_parser = parse_fault)]
    inject_fault: Option<Fault>,
    /// With --group: the member that gets --inject-fault (tests).
    #[arg(long, hide = true)]
    fault_member: Option<String>,
}

/// `300ms`, `1.5s`, or a plain number of milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (t, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * scale < 86_400_000.0 => {
            Ok((v * scale).round() as u64)
        }
        Ok(v) if v.is_finite() && v <= 0.0 => Err(format!(
            "'{s}' is not above zero; the downtime to aim for must be above zero, like 300ms"
        )),
        _ => Err(format!(
            "'{s}' is not a duration; write it like 300ms or 1.5s"
        )),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 100.0 => Ok(v),
        _ => Err(format!("'{s}' is not a percentage between 0 and 100")),
    }
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    serde_json::from_value(serde_json::Value::String(s.replace('-', "_")))
        .map_err(|_| format!("unknown fault '{s}'"))
}

/// The destination's peer address and, in a lab, its control socket.
pub(super) fn dest_of(
    to: &str,
    lab: Option<&ferry_lab::LabState>,
) -> anyhow::Result<(String, Option<Endpoint>)> {
    Ok(match to.parse::<Endpoint>() {
        Ok(Endpoint::Tcp(addr)) => (addr.to_string(), None),
        _ => match lab {
            Some(l) => {
                let h = l.host(to)?;
                (
                    h.listen.to_string(),
                    Some(Endpoint::Unix(h.control.clone())),
                )
            }
            None => anyhow::bail!("'{to}' is neither HOST:PORT nor a host of a running lab"),
        },
    })
}

fn options(a: &Args) -> MigrateOptions {
    MigrateOptions {
        strategy: a.strategy,
        tcp_established: !a.no_tcp_established,
        file_locks: a.file_locks,
        allow_postcopy: a.allow_postcopy,
        inject_fault: a.inject_fault,
        max_downtime_ms: a.max_downtime,
        max_rounds: a.max_rounds,
        threshold_pct: a.threshold,
        compress: a.compress.clone(),
        hold_freeze: false,
        hold_restore: false,
        new_ip: a.new_ip.clone(),
        group: None,
        pod: Vec::new(),
    }
}

async fn run_group(a: &Args, file: &std::path::Path) -> anyhow::Result<i32> {
    use ferry_controller::group::{GroupRun, Placement};
    if is_ssh(&a.to) {
        anyhow::bail!("--group moves with agents, and --to ssh://… runs none; move the group's containers one by one over SSH, or start agents");
    }
    let group = ferry_controller::group::load(file)?;
    let lab = ferry_lab::LabState::load(&a.lab).ok();
    let (dest, dest_control) = dest_of(&a.to, lab.as_ref())?;
    let creds = a.creds.load()?;
    let mut placements = Vec::new();
    for m in &group.members {
        let (source, source_peer) = match (&a.agent, &lab) {
            (None, Some(l)) => {
                let h = ferry_lab::host_of(l, &m.name, "running").await.with_context(|| {
                    format!(
                        "container '{}' of group '{}' is not running on any host of lab '{}'; start it or remove it from {}",
                        m.name, group.name, l.name, file.display()
                    )
                })?;
                (
                    Endpoint::Unix(h.control.clone()),
                    Some(h.listen.to_string()),
                )
            }
            _ => {
                let ep =
                    super::agent_of(a.agent.as_deref(), lab.as_ref(), &m.name, "running").await?;
                let peer = match &ep {
                    Endpoint::Tcp(addr) => Some(addr.to_string()),
                    _ => None,
                };
                (ep, peer)
            }
        };
        placements.push(Placement {
            source,
            source_peer,
            dest: dest.clone(),
            dest_control: dest_control.clone(),
        });
    }
    if let Some(f) = &a.fault_member {
        if group.member(f).is_none() {
            anyhow::bail!("--fault-member {f}: the group has no such container");
        }
    }
    let pods = ferry_controller::group::discover_pods(&group, &placements, &creds)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let group_name = group.name.clone();
    let run = std::sync::Arc::new(GroupRun {
        group,
        schedule: a.schedule,
        base: MigrateOptions {
            group: Some(group_name),
            ..options(a)
        },
        creds,
        placements,
        pods,
        fault_member: a.fault_member.clone(),
    });
    let report = ferry_controller::group::run_group(run)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &a.report {
        std::fs::write(p, &json)
            .with_context(|| format!("cannot write the report to {}", p.display()))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", ferry_controller::group::render(&report));
    }
    if report.outcome == "migrated" {
        Ok(0)
    } else {
        eprintln!(
            "ferry: {}: {}",
            report.outcome,
            report.reason.as_deref().unwrap_or("see the report")
        );
        Ok(1)
    }
}

/// Where to reach the source agent, and the destination's address.
async fn resolve(a: &Args, container: &str) -> anyhow::Result<(Endpoint, Credentials, String)> {
    let lab = ferry_lab::LabState::load(&a.lab).ok();
    let (dest, _) = dest_of(&a.to, lab.as_ref())?;
    let creds = a.creds.load()?;
    let source = super::agent_of(a.agent.as_deref(), lab.as_ref(), container, "running").await?;
    Ok((source, creds, dest))
}

/// The agents of `--peers`.
async fn peers_of(
    a: &Args,
    container: &str,
) -> anyhow::Result<Vec<ferry_controller::readdress::Peer>> {
    let lab = ferry_lab::LabState::load(&a.lab).ok();
    let mut out = Vec::new();
    for name in &a.peers {
        if name == container {
            anyhow::bail!("--peers names '{name}', the container that moves; name the containers connected to it");
        }
        let agent = super::agent_of(None, lab.as_ref(), name, "running")
            .await
            .with_context(|| format!("peer '{name}'"))?;
        out.push(ferry_controller::readdress::Peer {
            name: name.clone(),
            agent,
        });
    }
    Ok(out)
}

pub async fn run(a: Args, daemonless: &dyn crate::Daemonless) -> anyhow::Result<i32> {
    if let Some(file) = a.group.clone() {
        return run_group(&a, &file).await;
    }
    let container = a.container.clone().unwrap_or_default();
    let bar = crate::output::Progress::new();
    if is_ssh(&a.to) {
        check_ssh(&a)?;
        let mut progress = |ev: &ferry_proto::ControlReply| bar.update(ev);
        let r = daemonless
            .migrate(&a.to, &container, options(&a), &mut progress)
            .await?;
        bar.finish();
        return conclude(&a, &r);
    }
    let (source, creds, dest) = resolve(&a, &container).await?;
    let (peers, outside) = match a.new_ip.is_some() {
        true => find_peers(&a, &container, &creds).await?,
        false => (Vec::new(), Vec::new()),
    };
    if !outside.is_empty() {
        eprintln!(
            "ferry: the connections of '{container}' with {} cannot follow it to its new address: no container on ferry's hosts has those addresses, so they will break",
            outside.join(", ")
        );
    }
    for p in peers.iter().filter(|_| a.peers.is_empty()) {
        eprintln!(
            "ferry: '{}' is connected to '{container}': it follows it to the new address",
            p.name
        );
    }
    let mut r = if peers.is_empty() {
        ferry_controller::migrate(&source, &creds, &container, &dest, options(&a), |ev| {
            bar.update(ev)
        })
        .await?
    } else {
        ferry_controller::readdress::migrate_with_peers(
            &source,
            &creds,
            &container,
            &dest,
            options(&a),
            &peers,
            |ev| bar.update(ev),
        )
        .await?
    };
    bar.finish();
    if !outside.is_empty() {
        r.notes.push(format!(
            "connections that could not follow to the new address (no container on ferry's hosts has theirs): {}",
            outside.join(", ")
        ));
    }
    conclude(&a, &r)
}

/// With `--new-ip`: the peers named, or, without `--peers` in a lab, the containers of
/// its hosts connected to the container's address; and the container's connections
/// that no container of those hosts holds (they cannot follow).
async fn find_peers(
    a: &Args,
    container: &str,
    creds: &ferry_transport::Credentials,
) -> anyhow::Result<(Vec<ferry_controller::readdress::Peer>, Vec<String>)> {
    let named = peers_of(a, container).await?;
    let Some(lab) = ferry_lab::LabState::load(&a.lab).ok() else {
        return Ok((named, Vec::new()));
    };
    let agents: Vec<Endpoint> = lab
        .hosts
        .iter()
        .map(|h| Endpoint::Unix(h.control.clone()))
        .collect();
    let old = lab_address(&lab, container).await?;
    let found = ferry_controller::readdress::discover(&agents, creds, container, old).await?;
    let peers = match a.peers.is_empty() {
        true => found.peers,
        false => named,
    };
    Ok((peers, found.outside))
}

/// The IPv4 address `container` has on the lab host running it.
async fn lab_address(
    lab: &ferry_lab::LabState,
    container: &str,
) -> anyhow::Result<std::net::Ipv4Addr> {
    for (_, items) in ferry_lab::containers(lab).await {
        let found = items
            .ok()
            .into_iter()
            .flatten()
            .find(|c| c.name == container);
        if let Some(net) = found.and_then(|c| c.net) {
            if let Some(ip) = net.address.split('/').next().and_then(|s| s.parse().ok()) {
                return Ok(ip);
            }
        }
    }
    anyhow::bail!(
        "container '{container}' has no address on a host of lab '{}'",
        lab.name
    )
}

/// Whether `to` is a destination without an agent (`ssh://…`).
fn is_ssh(to: &str) -> bool {
    to.starts_with("ssh://")
}

/// With `--to ssh://…`, the options that need agents are refused.
fn check_ssh(a: &Args) -> anyhow::Result<()> {
    if a.agent.is_some() {
        anyhow::bail!("--agent and --to ssh://… do not go together: over SSH the container moves from this host; run ferry on the host that runs it");
    }
    if !a.peers.is_empty() {
        anyhow::bail!("--peers needs the peers' agents, and --to ssh://… runs none; name no peers, or move with agents");
    }
    Ok(())
}

/// Prints the report; the exit code from its outcome.
fn conclude(a: &Args, r: &ferry_types::Report) -> anyhow::Result<i32> {
    crate::output::emit_report(r, a.json, a.report.as_deref())?;
    if r.outcome.is_success() {
        Ok(0)
    } else {
        eprintln!(
            "ferry: {}: {}",
            r.outcome.name(),
            r.reason.as_deref().unwrap_or("see the report")
        );
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percentages_parse_or_say_why_not() {
        assert_eq!(parse_duration_ms("300ms"), Ok(300));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1500));
        assert_eq!(parse_duration_ms("250"), Ok(250));
        assert!(parse_duration_ms("soon").unwrap_err().contains("300ms"));
        assert!(parse_duration_ms("-1s").is_err());
        assert!(parse_duration_ms("0ms").unwrap_err().contains("above zero"));
        assert_eq!(parse_percent("5%"), Ok(5.0));
        assert!(parse_percent("0").is_err());
        assert!(parse_percent("150").is_err());
    }
}
