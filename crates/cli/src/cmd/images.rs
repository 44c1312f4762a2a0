//! `ferry images show|edit|diff`: a checkpoint's CRIU images as JSON, changed at a path,
//! and compared with another checkpoint, without losing a byte.

use std::path::PathBuf;

use anyhow::Context;
use ferry_criu::images::wire::{self, diff::Difference, ChangeSpec};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print every image of a checkpoint as JSON (fields by name; page data by size).
    Show {
        /// The checkpoint's directory.
        dir: PathBuf,
        /// Only this image file (e.g. core-1.img).
        #[arg(long)]
        file: Option<String>,
    },
    /// Apply a JSON list of changes, e.g.
    /// [{"file": "core-1.img", "path": "entries/0/tc/comm", "set": "worker"}]
    /// ("remove": true instead of "set" removes the field). Nothing is written if any
    /// change fails; the images that change are rewritten whole.
    Edit {
        dir: PathBuf,
        /// The changes: a JSON file, or - for standard input.
        #[arg(long)]
        change: String,
        /// Write the changed checkpoint to this new directory instead of in place.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare two checkpoints: changed fields by path, files only one has, page data
    /// by page.
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// Print the differences as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decode and write back every image of a checkpoint in memory, and say whether
    /// each comes back byte for byte.
    Check { dir: PathBuf },
}

fn read_changes(from: &str) -> anyhow::Result<Vec<ChangeSpec>> {
    let text = if from == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read the changes from standard input")?
    } else {
        std::fs::read_to_string(from).with_context(|| format!("cannot read {from}"))?
    };
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{from} is not a JSON list of changes like \
             [{{\"file\": \"core-1.img\", \"path\": \"entries/0/tc/comm\", \"set\": \"x\"}}]"
        )
    })
}

fn print_diff(d: &Difference) {
    let show =
        |v: &Option<serde_json::Value>| v.as_ref().map_or("-".to_string(), |v| v.to_string());
    let at = if d.path.is_empty() {
        String::new()
    } else {
        format!(" {}", d.path)
    };
    println!("{}{at}: {} -> {}", d.file, show(&d.a), show(&d.b));
}

pub async fn run(c: Command) -> anyhow::Result<i32> {
    match c {
        Command::Show { dir, file } => {
            let j = wire::show(&dir, file.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&j)?);
            Ok(0)
        }
        Command::Edit { dir, change, out } => {
            let changes = read_changes(&change)?;
            let written = wire::edit(&dir, &changes, out.as_deref())?;
            let to = out.as_ref().unwrap_or(&dir);
            println!(
                "{} changes applied; rewrote {} in {}",
                changes.len(),
                written.join(", "),
                to.display()
            );
            Ok(0)
        }
        Command::Diff { a, b, json } => {
            let diffs = wire::diff::diff(&a, &b)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&diffs)?);
            } else {
                diffs.iter().for_each(print_diff);
            }
            Ok(if diffs.is_empty() { 0 } else { 1 })
        }
        Command::Check { dir } => {
            let r = wire::round_trip(&dir)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            if r.differ.is_empty() {
                Ok(0)
            } else {
                anyhow::bail!(
                    "{} did not come back byte for byte: {}",
                    r.differ.len(),
                    r.differ.join(", ")
                )
            }
        }
    }
}
