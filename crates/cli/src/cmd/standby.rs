//! `ferry standby` and `ferry failover`: an up-to-date checkpoint of a running container
//! on another host, and restoring it there when the source is gone (docs/standby.md).

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container (running on this host, or, in a lab, on the host that runs it).
    #[arg(required_unless_present = "list")]
    container: Option<String>,
    /// The standby host: a lab host name, or its agent's address HOST:PORT.
    #[arg(long, required_unless_present_any = ["stop", "list"], conflicts_with_all = ["stop", "list"])]
    to: Option<String>,
    /// How often a new checkpoint is taken (e.g. 30s, 5s, 1500ms; at least 1s).
    #[arg(long, value_parser = super::migrate::parse_duration_ms, value_name = "DUR", default_value = "30s")]
    every: u64,
    /// Stop keeping the container's standby.
    #[arg(long)]
    stop: bool,
    /// The standbys kept, and the checkpoints held, by the agent (or by every lab host).
    #[arg(long, conflicts_with = "stop")]
    list: bool,
    /// The agent that runs the container: a lab host name, a Unix socket, or HOST:PORT.
    #[arg(long)]
    agent: Option<String>,
    #[command(flatten)]
    creds: ferry_transport::cli::CredArgs,
    #[arg(long, env = "FERRY_LAB", default_value = "lab")]
    lab: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let lab = ferry_lab::LabState::load(&a.lab).ok();
    let creds = a.creds.load()?;
    if a.list {
        return list(&a, lab.as_ref(), &creds).await;
    }
    let name = a.container.clone().unwrap_or_default();
    let source = super::agent_of(a.agent.as_deref(), lab.as_ref(), &name, "running").await?;
    if a.stop {
        ferry_controller::standby::stop(&source, &creds, &name).await?;
        println!("{name}: its standby is no longer kept");
        return Ok(0);
    }
    let to = a.to.clone().unwrap_or_default();
    let (dest, _) = super::migrate::dest_of(&to, lab.as_ref())?;
    let round = ferry_controller::standby::start(&source, &creds, &name, &dest, a.every).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&round)?);
    } else {
        println!(
            "{name}: standby checkpoint {} stored on {to} (paused {:.1} ms, {:.1} MB sent, {} of {} pages already there); a new one every {:.1} s",
            round.seq,
            round.paused_ms,
            round.bytes_sent as f64 / 1e6,
            round.pages_held,
            round.pages,
            a.every as f64 / 1000.0
        );
    }
    Ok(0)
}

async fn list(
    a: &Args,
    lab: Option<&ferry_lab::LabState>,
    creds: &ferry_transport::Credentials,
) -> anyhow::Result<i32> {
    let agents: Vec<(String, ferry_transport::Endpoint)> = match (&a.agent, lab) {
        (None, Some(l)) => l
            .hosts
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    ferry_transport::Endpoint::Unix(h.control.clone()),
                )
            })
            .collect(),
        (agent, _) => {
            let ep = super::agent_of(agent.as_deref(), lab, "", "running").await?;
            vec![(ep.to_string(), ep)]
        }
    };
    let several = agents.len() > 1;
    let mut rows = Vec::new();
    for (host, ep) in agents {
        match ferry_controller::standby::list(&ep, creds).await {
            Ok((keeping, holding)) => {
                rows.push(serde_json::json!({"host": host, "keeping": keeping, "holding": holding}))
            }
            // Across a lab, a host that does not answer is one row among the others.
            Err(e) if several => {
                eprintln!("ferry: host {host} does not answer: {e}");
                rows.push(serde_json::json!({"host": host, "error": e.to_string()}));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    for r in &rows {
        for k in r["keeping"].as_array().into_iter().flatten() {
            println!(
                "{}: keeps a standby of {} at {} every {} ms ({} rounds{})",
                r["host"].as_str().unwrap_or(""),
                k["container"].as_str().unwrap_or(""),
                k["to"].as_str().unwrap_or(""),
                k["every_ms"],
                k["rounds"],
                k["last_error"]
                    .as_str()
                    .map(|e| format!("; the last failed: {e}"))
                    .unwrap_or_default()
            );
        }
        for h in r["holding"].as_array().into_iter().flatten() {
            println!(
                "{}: holds checkpoint {} of {} from {}, {:.1} s old",
                r["host"].as_str().unwrap_or(""),
                h["seq"],
                h["container"].as_str().unwrap_or(""),
                h["source"].as_str().unwrap_or(""),
                h["age_ms"].as_f64().unwrap_or(0.0) / 1000.0
            );
        }
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// The container whose source is gone.
    container: String,
    /// The host holding its standby: a lab host name, a Unix socket, or HOST:PORT.
    #[arg(long)]
    on: String,
    #[command(flatten)]
    creds: ferry_transport::cli::CredArgs,
    #[arg(long, env = "FERRY_LAB", default_value = "lab")]
    lab: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn failover(a: FailoverArgs) -> anyhow::Result<i32> {
    let lab = ferry_lab::LabState::load(&a.lab).ok();
    if let Some(l) = &lab {
        // The one check a lab allows: a container still running somewhere must not
        // start a second time here.
        if let Some(h) = ferry_lab::host_of(l, &a.container, "running").await {
            anyhow::bail!(
                "'{}' still runs on {}: a failover would run it twice; move it with 'ferry migrate', or stop it there first",
                a.container,
                h.name
            );
        }
    }
    let on = super::agent_of(Some(&a.on), lab.as_ref(), &a.container, "running").await?;
    let creds = a.creds.load()?;
    let f = ferry_controller::standby::failover(&on, &creds, &a.container).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
    } else {
        println!(
            "{} runs on {} from checkpoint {} of {}, taken {:.1} s before; restored in {:.1} ms; its TCP connections were restored closed (their peers reconnect)",
            f.container,
            f.on,
            f.checkpoint.seq,
            f.checkpoint.source,
            f.checkpoint.age_ms as f64 / 1000.0,
            f.restore.total_ms
        );
    }
    Ok(0)
}
