//! `ferry resume`: resume a container an agent keeps frozen after a failed migration.

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The frozen container.
    name: String,
    /// Its agent: a lab host name, a Unix socket, or HOST:PORT (with --secret-file).
    /// Default: in a lab, the host holding it; otherwise the local agent.
    #[arg(long)]
    agent: Option<String>,
    #[command(flatten)]
    creds: ferry_transport::cli::CredArgs,
    #[arg(long, env = "FERRY_LAB", default_value = "lab")]
    lab: String,
}

pub async fn run(a: Args) -> anyhow::Result<i32> {
    let lab = ferry_lab::LabState::load(&a.lab).ok();
    let endpoint = super::agent_of(a.agent.as_deref(), lab.as_ref(), &a.name, "paused").await?;
    let creds = a.creds.load()?;
    ferry_controller::resume(&endpoint, &creds, &a.name).await?;
    println!("{} runs again", a.name);
    Ok(0)
}
