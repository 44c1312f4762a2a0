//! `ferry check`: the preflight of a migration, changing nothing.

use ferry_types::{MigrateOptions, StrategyChoice};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container to look at.
    container: String,
    /// The destination to check too: a lab host name, or an agent address HOST:PORT.
    #[arg(long)]
    to: Option<String>,
    /// The strategy to judge (every strategy is judged; this one decides the exit code).
    #[arg(long)]
    strategy: Option<StrategyChoice>,
    /// The agent that runs the container: a lab host name, a Unix socket, or HOST:PORT.
    #[arg(long)]
    agent: Option<String>,
    #[command(flatten)]
    creds: ferry_transport::cli::CredArgs,
    #[arg(long, env = "FERRY_LAB", default_value = "lab")]
    lab: String,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

/// Exit code 0 when the container can move (by `--strategy`, when given), 1 when not.
pub async fn run(a: Args) -> anyhow::Result<i32> {
    let lab = ferry_lab::LabState::load(&a.lab).ok();
    let source = super::agent_of(a.agent.as_deref(), lab.as_ref(), &a.container, "running").await?;
    let dest = match &a.to {
        Some(to) => Some(super::migrate::dest_of(to, lab.as_ref())?.0),
        None => None,
    };
    let creds = a.creds.load()?;
    let options = MigrateOptions {
        strategy: a.strategy.unwrap_or(StrategyChoice::Auto),
        ..Default::default()
    };
    let p =
        ferry_controller::check(&source, &creds, &a.container, dest.as_deref(), options).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", p.render());
    }
    let strategy_fits = match a.strategy {
        Some(StrategyChoice::Fixed(s)) => p.fit(s).is_none_or(|f| f.fits),
        Some(StrategyChoice::Auto) | None => true,
    };
    Ok(if p.refusal().is_none() && strategy_fits {
        0
    } else {
        1
    })
}
