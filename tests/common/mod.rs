//! Harness for end-to-end tests: real runc, real CRIU, real network namespaces.
//!
//! These tests need root and the tools `scripts/install-deps.sh` installs. They run when
//! `FERRY_E2E=1` (the README's test command and CI set it). Without it they print why
//! they were skipped and pass, so a plain `cargo test` works anywhere. With it, a missing
//! prerequisite is a failure, never a skip.

#![allow(dead_code)]
// Test harness code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

pub mod apps;
pub mod handmade;
pub mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short tag for names in this test process.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Waits until `cond` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Returns `None` (and says so) when end-to-end tests are not enabled.
pub fn e2e(test: &str) -> Option<Env> {
    if std::env::var("FERRY_E2E").ok().as_deref() != Some("1") {
        eprintln!(
            "skipping {test}: set FERRY_E2E=1 and run as root (see README) to run end-to-end tests"
        );
        return None;
    }
    assert!(
        is_root(),
        "FERRY_E2E=1 but not root: end-to-end tests need root"
    );
    for tool in ["runc", "redis-server", "redis-cli", "ip", "nft"] {
        assert!(
            which(tool),
            "FERRY_E2E=1 but {tool} is missing: run scripts/install-deps.sh"
        );
    }
    Some(Env::new())
}

/// Whether this process runs as root (effective uid 0), from /proc.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

pub fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One test's private world: a runc root, a scratch directory, and what must be cleaned.
pub struct Env {
    pub ferry: PathBuf,
    pub runc_root: PathBuf,
    pub work: PathBuf,
    netns: Vec<String>,
}

impl Env {
    fn new() -> Self {
        let work = PathBuf::from(format!("/run/ferry-e2e/{}", unique("t")));
        std::fs::create_dir_all(&work).expect("create work dir");
        let runc_root = work.join("runc");
        std::fs::create_dir_all(&runc_root).expect("create runc root");
        Env {
            ferry: PathBuf::from(env!("CARGO_BIN_EXE_ferry")),
            runc_root,
            work,
            netns: Vec::new(),
        }
    }

    /// Runs ferry and returns its output.
    pub fn ferry(&self, args: &[&str]) -> Output {
        Command::new(&self.ferry)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ferry")
    }

    /// Runs ferry and fails the test with its output unless it succeeds.
    pub fn ferry_ok(&self, args: &[&str]) -> String {
        let out = self.ferry(args);
        assert!(
            out.status.success(),
            "ferry {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh network namespace with loopback up, deleted with the environment.
    pub fn netns(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        self.netns.push(name.clone());
        name
    }

    /// Redis (`name`) running in a fresh namespace, with `keys` keys; returns the
    /// namespace and the bundle.
    pub fn running_redis(&mut self, name: &str, prefix: &str, keys: usize) -> (String, PathBuf) {
        let ns = self.netns(prefix);
        let bundle = self.redis_bundle(name, &ns);
        self.run(name, &bundle);
        wait_redis(&ns);
        load_keys(&ns, keys);
        (ns, bundle)
    }

    /// `ferry checkpoint NAME --images DIR` in this environment's runc root, with `extra`.
    pub fn checkpoint(&self, name: &str, images: &Path, extra: &[&str]) -> String {
        let root = self.root_arg();
        let mut args = vec![
            "checkpoint",
            name,
            "--images",
            images.to_str().unwrap_or_default(),
            "--runtime-root",
            &root,
        ];
        args.extend_from_slice(extra);
        self.ferry_ok(&args)
    }

    /// A bundle running redis-server in `netns`.
    pub fn redis_bundle(&self, name: &str, netns: &str) -> PathBuf {
        let dir = self.work.join(format!("bundle-{name}"));
        self.ferry_ok(&[
            "bundle",
            "create",
            dir.to_str().unwrap_or_default(),
            "--netns",
            &format!("/run/netns/{netns}"),
            "--",
            "/usr/bin/redis-server",
            "--port",
            "6379",
            "--bind",
            "0.0.0.0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--enable-debug-command",
            "yes",
        ]);
        dir
    }

    /// A bundle running `sh -c script` in `netns`.
    pub fn shell_bundle(&self, name: &str, netns: &str, script: &str) -> PathBuf {
        let dir = self.work.join(format!("bundle-{name}"));
        self.ferry_ok(&[
            "bundle",
            "create",
            dir.to_str().unwrap_or_default(),
            "--netns",
            &format!("/run/netns/{netns}"),
            "--",
            "/bin/sh",
            "-c",
            script,
        ]);
        dir
    }

    /// `runc run -d`, in a cgroup of this test's own: runc's default (`/NAME`) would be
    /// shared by tests running containers of the same name side by side.
    pub fn run(&self, name: &str, bundle: &Path) {
        let config = bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).expect("the bundle's config.json"))
                .expect("config.json");
        let id = self.work.file_name().unwrap_or_default().to_string_lossy();
        spec["linux"]["cgroupsPath"] = format!("/ferry-e2e-{id}-{name}").into();
        std::fs::write(
            &config,
            serde_json::to_vec_pretty(&spec).expect("config.json"),
        )
        .expect("writing config.json");
        // The container inherits runc's standard streams: they must be /dev/null.
        let log = self.work.join(format!("runc-run-{name}.log"));
        let status = Command::new("runc")
            .args(["--root", self.runc_root.to_str().unwrap_or_default()])
            .arg("--log")
            .arg(&log)
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("runc run");
        assert!(
            status.success(),
            "runc run failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// runc's view of a container's status, or "absent".
    pub fn status(&self, name: &str) -> String {
        let out = Command::new("runc")
            .args([
                "--root",
                self.runc_root.to_str().unwrap_or_default(),
                "state",
                name,
            ])
            .output()
            .expect("runc state");
        if !out.status.success() {
            return "absent".into();
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state json");
        v["status"].as_str().unwrap_or("unknown").to_string()
    }

    pub fn root_arg(&self) -> String {
        self.runc_root.display().to_string()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let root = self.runc_root.display().to_string();
        if let Ok(out) = Command::new("runc")
            .args(["--root", &root, "list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("runc")
                    .args(["--root", &root, "delete", "-f", id])
                    .output();
            }
        }
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "delete", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Runs a shell command and fails the test if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `redis-cli` inside a network namespace.
pub fn redis_cli(netns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "redis-cli"])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until Redis in `netns` answers PING.
pub fn wait_redis(netns: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if redis_cli(netns, &["ping"]) == "PONG" {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis in {netns} did not answer PING within 10 s");
}

/// Loads `n` keys `key:<i>` = `value-<i>` through redis-cli's pipe mode.
pub fn load_keys(netns: &str, n: usize) {
    let mut proto = String::new();
    for i in 0..n {
        let k = format!("key:{i}");
        let v = format!("value-{i}");
        proto.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
            k.len(),
            v.len()
        ));
    }
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "redis-cli", "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli --pipe");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(proto.as_bytes())
        .expect("write keys");
    let out = child.wait_with_output().expect("wait redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("replies: {n}")) && text.contains("errors: 0"),
        "loading keys: {text}"
    );
}

/// Checks that every one of the `n` keys holds its value.
pub fn check_keys(netns: &str, n: usize) {
    assert_eq!(redis_cli(netns, &["dbsize"]), n.to_string(), "DBSIZE");
    let keys: Vec<String> = (0..n).map(|i| format!("key:{i}")).collect();
    for chunk in keys.chunks(1000) {
        let mut args = vec!["mget"];
        args.extend(chunk.iter().map(String::as_str));
        let out = redis_cli(netns, &args);
        let values: Vec<&str> = out.lines().collect();
        assert_eq!(values.len(), chunk.len());
        for (k, v) in chunk.iter().zip(values) {
            let i = k.trim_start_matches("key:");
            assert_eq!(v, format!("value-{i}"), "value of {k}");
        }
    }
}

/// Whether root here has CAP_SYS_RESOURCE (bit 24 of the effective set).
pub fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    u64::from_str_radix(&hex, 16).unwrap() & (1 << 24) != 0
}

/// The host pids whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether `/proc/locks` shows a lock held by host pid `pid`.
pub fn holds_a_lock(pid: u32) -> bool {
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&pid.to_string()))
}

/// Whether an engine's tests may run: its `tools` are installed. Missing, they are a
/// failure unless the installer was told to leave the engines out
/// (`FERRY_SKIP_ENGINES=1`), which the test then says.
pub fn engine_present(engine: &str, tools: &[&str]) -> bool {
    if tools.iter().all(|t| which(t)) {
        return true;
    }
    assert!(
        std::env::var("FERRY_SKIP_ENGINES").is_ok_and(|v| v == "1"),
        "{engine} is missing: run scripts/install-deps.sh (or set FERRY_SKIP_ENGINES=1 to leave the engine tests out)"
    );
    eprintln!("skipping: {engine} was not installed (FERRY_SKIP_ENGINES=1)");
    false
}
