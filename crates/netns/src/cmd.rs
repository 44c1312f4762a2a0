//! Commands and the seam that runs them.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use crate::NetError;

/// One command: a program, its arguments, optional standard input, and optionally the
/// network namespace to run it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Option<String>,
    pub netns: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: &str, args: &[&str]) -> Self {
        Self {
            program: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            stdin: None,
            netns: None,
        }
    }

    pub fn with_stdin(mut self, input: String) -> Self {
        self.stdin = Some(input);
        self
    }

    pub fn in_netns(mut self, path: PathBuf) -> Self {
        self.netns = Some(path);
        self
    }

    /// How the command reads in logs and errors.
    pub fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        if let Some(ns) = &self.netns {
            s.push_str(&format!(" (in {})", ns.display()));
        }
        s
    }
}

/// Runs commands. The real one spawns processes; the recording one keeps them for tests.
pub trait Runner: Send + Sync {
    /// Runs `cmd` and returns its standard output.
    fn run(&self, cmd: &Cmd) -> impl Future<Output = Result<String, NetError>> + Send;

    /// Whether this runner acts on the real system (so that callers may take a faster
    /// path than a command, such as an ioctl).
    fn is_real(&self) -> bool {
        false
    }
}

/// Spawns each command, entering its network namespace first when it has one.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealRunner;

impl Runner for RealRunner {
    fn is_real(&self) -> bool {
        true
    }

    async fn run(&self, cmd: &Cmd) -> Result<String, NetError> {
        let mut c = tokio::process::Command::new(&cmd.program);
        c.args(&cmd.args)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = &cmd.netns {
            let fd = std::fs::File::open(ns)
                .map_err(|_| NetError::NoNamespace(ns.display().to_string()))?;
            let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
            // SAFETY: runs in the forked child before exec; setns is async-signal-safe
            // and the descriptor stays open in the parent until the spawn returns.
            unsafe {
                c.pre_exec(move || {
                    if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = c.spawn();
            drop(fd);
            return finish(cmd, child).await;
        }
        let child = c.spawn();
        finish(cmd, child).await
    }
}

async fn finish(
    cmd: &Cmd,
    child: std::io::Result<tokio::process::Child>,
) -> Result<String, NetError> {
    use tokio::io::AsyncWriteExt;
    let mut child = child.map_err(|source| NetError::Spawn {
        program: cmd.program.clone(),
        source,
    })?;
    if let (Some(input), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|source| NetError::Spawn {
                program: cmd.program.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| NetError::Spawn {
            program: cmd.program.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetError::Failed {
            command: cmd.display(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Records commands instead of running them, answering each with a canned output.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    pub seen: Mutex<Vec<Cmd>>,
    pub reply: String,
}

impl Runner for RecordingRunner {
    async fn run(&self, cmd: &Cmd) -> Result<String, NetError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(cmd.clone());
        }
        Ok(self.reply.clone())
    }
}
