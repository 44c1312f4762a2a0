//! `ferry keeper` (hidden): started by an agent during post-copy; holds copies of the
//! container's userfaultfds and stops the container if the agent dies first
//! (docs/postcopy.md).

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The container's cgroup, as runc names it.
    #[arg(long)]
    cgroup: String,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    Ok(ferry_runtime::keeper::watch(&a.cgroup))
}
