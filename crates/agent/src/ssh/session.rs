//! The SSH connection to the far side: one master connection, whose channels run the
//! commands ferry needs there and carry the forwarded socket.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::{SshError, SshTarget};

/// The environment variable naming an ssh configuration file (`ssh -F`).
pub const SSH_CONFIG_ENV: &str = "FERRY_SSH_CONFIG";

/// The line the far side prints once it listens.
pub const READY: &str = "ferry-ssh ready ";

/// How long the connection, and the far side's start, may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);
const START_LIMIT: Duration = Duration::from_secs(60);

/// The last lines a process wrote on its standard error.
#[derive(Debug, Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn follow(&self, from: impl AsyncRead + Unpin + Send + 'static) {
        let lines = self.0.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(from).lines();
            while let Ok(Some(l)) = r.next_line().await {
                tracing::debug!(target: "ferry::ssh", "{l}");
                if let Ok(mut q) = lines.lock() {
                    if q.len() == 8 {
                        q.pop_front();
                    }
                    q.push_back(l);
                }
            }
        });
    }

    /// The last line that says something, or `fallback`.
    pub fn last(&self, fallback: &str) -> String {
        let q = self.0.lock().map(|q| q.clone()).unwrap_or_default();
        q.iter()
            .rev()
            .map(|l| l.trim().trim_start_matches("ferry: ").to_string())
            .find(|l| !l.is_empty())
            .unwrap_or_else(|| fallback.to_string())
    }
}

/// One SSH master connection, closed when dropped.
#[derive(Debug)]
pub struct SshSession {
    pub target: SshTarget,
    dir: PathBuf,
    ctl: PathBuf,
    master: Child,
    tail: Tail,
}

/// ferry on the far side, serving this run.
#[derive(Debug)]
pub struct Remote {
    /// Its socket there.
    pub socket: String,
    /// Closing it tells it to finish.
    stdin: Option<ChildStdin>,
    child: Child,
    pub tail: Tail,
}

/// Where this build of ferry lives on the far side, and whether it was copied now.
#[derive(Debug, Clone)]
pub struct RemoteBinary {
    pub path: String,
    /// Bytes copied, when the far side lacked it.
    pub copied: Option<u64>,
}

impl SshSession {
    /// Connects, or says in one sentence why not.
    pub async fn open(target: &SshTarget) -> Result<Self, SshError> {
        let dir = super::private_dir()?;
        let ctl = dir.join("ssh.ctl");
        let mut cmd = base(&ctl);
        cmd.args([
            "-M",
            "-N",
            "-o",
            "ControlPersist=no",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .args(target.ssh_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut master = cmd.spawn().map_err(|e| SshError::NoSsh(e.to_string()))?;
        let tail = Tail::default();
        if let Some(e) = master.stderr.take() {
            tail.follow(e);
        }
        let mut s = Self {
            target: target.clone(),
            dir,
            ctl,
            master,
            tail,
        };
        s.wait_up().await?;
        Ok(s)
    }

    async fn wait_up(&mut self) -> Result<(), SshError> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.master.try_wait() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(self.unreachable(&format!("ssh exited ({status})")));
            }
            if self.ctl.exists() && self.check().await {
                return Ok(());
            }
            if start.elapsed() > CONNECT_LIMIT {
                return Err(self.unreachable("no connection within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn unreachable(&self, fallback: &str) -> SshError {
        SshError::Connect {
            target: self.target.to_string(),
            host: self.target.host.clone(),
            why: self.tail.last(fallback),
        }
    }

    async fn check(&self) -> bool {
        let mut c = self.command();
        c.args(["-O", "check"]).args(self.target.ssh_args());
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c.status().await.is_ok_and(|s| s.success())
    }

    /// An ssh command through the master connection (options only; the caller adds the
    /// host and what to run).
    fn command(&self) -> Command {
        base(&self.ctl)
    }

    /// Runs `script` with the far side's shell; its output, or why it failed.
    pub async fn run(&self, script: &str, input: Option<std::fs::File>) -> Result<String, String> {
        let mut c = self.command();
        c.args(self.target.ssh_args()).arg(script);
        c.stdin(input.map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = c.output().await.map_err(|e| e.to_string())?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or_else(|| format!("it exited with {}", out.status), str::to_string))
    }

    /// This build of ferry on the far side: found in its cache (`FERRY_SSH_CACHE` there,
    /// else `/var/lib/ferry/ssh/bin`), or copied there now.
    pub async fn ensure_binary(&self) -> Result<RemoteBinary, SshError> {
        let id = super::build_id::of_this_binary();
        let cache =
            format!(r#"d="${{FERRY_SSH_CACHE:-/var/lib/ferry/ssh/bin}}"; b="$d/ferry-{id}""#);
        let probe = format!(
            r#"{cache}; uname -m; if [ -x "$b" ]; then echo "have $b"; else echo "need $b"; fi"#
        );
        let out = self
            .run(&probe, None)
            .await
            .map_err(|why| SshError::Connect {
                target: self.target.to_string(),
                host: self.target.host.clone(),
                why,
            })?;
        let mut lines = out.lines();
        let arch = lines.next().unwrap_or("").trim().to_string();
        if arch != std::env::consts::ARCH {
            return Err(SshError::Arch {
                target: self.target.to_string(),
                remote: arch,
                local: std::env::consts::ARCH.into(),
            });
        }
        let answer = lines.next().unwrap_or("");
        if let Some(path) = answer.strip_prefix("have ") {
            return Ok(RemoteBinary {
                path: path.to_string(),
                copied: None,
            });
        }
        let Some(path) = answer.strip_prefix("need ") else {
            return Err(SshError::Copy {
                target: self.target.to_string(),
                why: format!("its shell answered '{answer}' where ferry expected where to put it"),
            });
        };
        let exe = std::fs::File::open("/proc/self/exe")
            .map_err(|e| SshError::io("this ferry's binary", e))?;
        let size = exe.metadata().map(|m| m.len()).unwrap_or(0);
        let copy = format!(
            r#"set -e; {cache}; umask 077; mkdir -p "$d"; t="$d/.ferry-{id}.$$"; cat > "$t"; [ "$(wc -c < "$t")" -eq {size} ]; chmod 700 "$t"; mv -f "$t" "$b""#
        );
        self.run(&copy, Some(exe))
            .await
            .map_err(|why| SshError::Copy {
                target: self.target.to_string(),
                why,
            })?;
        Ok(RemoteBinary {
            path: path.to_string(),
            copied: Some(size),
        })
    }

    /// Starts `ferry ssh-serve` from `binary` on the far side, and waits until it listens.
    pub async fn start_remote(&self, binary: &RemoteBinary) -> Result<Remote, SshError> {
        let fail = |why: String| SshError::RemoteStart {
            target: self.target.to_string(),
            why,
        };
        let mut c = self.command();
        c.args(self.target.ssh_args())
            .arg(format!("exec '{}' --log info ssh-serve", binary.path))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = c.spawn().map_err(|e| fail(e.to_string()))?;
        let tail = Tail::default();
        if let Some(e) = child.stderr.take() {
            tail.follow(e);
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("no output".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_LIMIT, async {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(s) = l.strip_prefix(READY) {
                    return Some(s.trim().to_string());
                }
            }
            None
        })
        .await;
        match ready {
            Ok(Some(socket)) => {
                // Its later output is not read; keep the pipe drained.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Ok(Remote {
                    socket,
                    stdin: child.stdin.take(),
                    child,
                    tail,
                })
            }
            Ok(None) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(fail(tail.last("it exited without a word")))
            }
            Err(_) => Err(fail("it did not say it was ready within 60 s".into())),
        }
    }

    /// Forwards the local socket `local` to `remote` on the far side.
    pub async fn forward(&self, local: &Path, remote: &str) -> Result<(), SshError> {
        let mut c = self.command();
        c.args(["-O", "forward", "-L"])
            .arg(format!("{}:{remote}", local.display()))
            .args(self.target.ssh_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = c
            .output()
            .await
            .map_err(|e| SshError::NoSsh(e.to_string()))?;
        if !out.status.success() {
            return Err(SshError::Forward {
                target: self.target.to_string(),
                why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// A path for a local socket of this run.
    pub fn local_socket(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ssh")
            .args(options(&self.ctl))
            .args(["-O", "exit"])
            .args(self.target.ssh_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.master.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Remote {
    /// Tells the far side to finish (its input closes), and waits for it to exit once
    /// its migrations have ended.
    pub async fn finish(mut self, limit: Duration) {
        drop(self.stdin.take());
        if tokio::time::timeout(limit, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
    }
}

/// ssh with ferry's options: batch mode (no prompt), the master socket `ctl`, a dead
/// link noticed within 15 s, and the configuration file `FERRY_SSH_CONFIG` names.
/// Each ssh runs in a process group of its own: a Ctrl-C at the terminal reaches ferry
/// (which finishes the migration first), not the connection the migration runs over.
fn base(ctl: &Path) -> Command {
    let mut c = Command::new("ssh");
    c.args(options(ctl)).process_group(0);
    c
}

fn options(ctl: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = Vec::new();
    if let Some(f) = std::env::var_os(SSH_CONFIG_ENV).filter(|f| !f.is_empty()) {
        v.extend(["-F".into(), f]);
    }
    v.extend(["-S".into(), ctl.as_os_str().to_owned()]);
    v.extend(
        [
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "StreamLocalBindUnlink=yes",
        ]
        .map(std::ffi::OsString::from),
    );
    // One SSH connection is one core's encryption: with AES instructions, AES-GCM
    // carries ~30 % more than SSH's default ChaCha20 here (docs/ssh.md).
    if cpu_has_aes() {
        v.extend(
            [
                "-o",
                "Ciphers=^aes128-gcm@openssh.com,aes256-gcm@openssh.com",
            ]
            .map(Into::into),
        );
    }
    v
}

fn cpu_has_aes() -> bool {
    static AES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AES.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
            c.lines()
                .find(|l| l.starts_with("flags"))
                .is_some_and(|l| l.split_whitespace().any(|f| f == "aes"))
        })
    })
}
