//! How ferry speaks to people: one clear sentence on failure, reports as tables or JSON.

use std::path::Path;

use ferry_engine::Report;

pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints `ferry: <message>` and exits with status 1.
pub fn fail(message: &str) -> ! {
    eprintln!("ferry: {message}");
    std::process::exit(1)
}

/// Prints a report for people (and as JSON when asked), and writes it to `file`.
pub fn emit_report(report: &Report, json: bool, file: Option<&Path>) -> anyhow::Result<()> {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    if let Some(f) = file {
        std::fs::write(f, report.to_json())
            .map_err(|e| anyhow::anyhow!("cannot write the report to {}: {e}", f.display()))?;
    }
    Ok(())
}

/// A progress bar on the terminal during transfers (nothing when stderr is not one).
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self { bar: Some(bar) }
    }

    pub fn update(&self, ev: &ferry_proto::ControlReply) {
        if let (Some(bar), ferry_proto::ControlReply::Progress { phase, done, total }) =
            (&self.bar, ev)
        {
            bar.set_message(phase.clone());
            if *total > 0 {
                bar.set_length(*total);
            }
            bar.set_position(*done);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
