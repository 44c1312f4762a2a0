//! Running an engine's command line (Podman's, Docker's): to the end, with the
//! variables that select this host's engine, its last line of error made the message.

use std::path::Path;
use std::process::Stdio;

use ferry_engine::ports::container::ContainerError;

/// An engine's program and the variables set for every call (nothing else changed).
#[derive(Debug, Clone)]
pub struct Cli<'a> {
    pub program: &'a Path,
    pub env: &'a [(String, String)],
    /// How messages name it: `podman`, `docker`.
    pub label: &'static str,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(self.program);
        c.args(args).stdin(Stdio::null());
        for (k, v) in self.env {
            c.env(k, v);
        }
        c
    }

    fn failed(&self, args: &[&str], out: &std::process::Output) -> ContainerError {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .trim_start_matches("Error: ")
            .trim_start_matches("Error response from daemon: ");
        ContainerError::Failed(format!(
            "{} {} failed: {line}",
            self.label,
            args.first().copied().unwrap_or_default()
        ))
    }

    /// Runs it to the end; its standard output, or its last line of error.
    pub async fn run(&self, args: &[&str]) -> Result<String, ContainerError> {
        let mut c = tokio::process::Command::from(self.command(args));
        c.kill_on_drop(true);
        let out = c
            .output()
            .await
            .map_err(|e| ContainerError::io(self.program, e))?;
        if !out.status.success() {
            return Err(self.failed(args, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The same, blocking: for the port's synchronous questions.
    pub fn run_blocking(&self, args: &[&str]) -> Result<String, ContainerError> {
        let out = self
            .command(args)
            .output()
            .map_err(|e| ContainerError::io(self.program, e))?;
        if !out.status.success() {
            return Err(self.failed(args, &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Whether a program is installed: a path that is a file, or a name found on `PATH`
/// (checked without running it, so that an agent starts without waiting for it).
pub fn installed(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}
