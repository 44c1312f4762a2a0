//! `ferry doctor`.

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the stable JSON form (documented in docs/doctor.md).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let report = tokio::task::spawn_blocking(ferry_host::doctor::run).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", ferry_host::doctor::render(&report));
    }
    Ok(if report.ok { 0 } else { 1 })
}
