//! The compatibility suite's harness: an application in a lab container, and a client
//! session in `client` that does its work before the move and again, on the same
//! connections, after it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::lab::Lab;

/// What every client script starts with: `ready()` says its session is open and its
/// "before" step done, `wait_go()` waits for the test to say the move is over, `done(x)`
/// hands the test its findings (any JSON value).
const PRELUDE: &str = r#"
import json, os, sys, time
def ready():
    open(os.environ["FERRY_READY"], "w").close()
def wait_go(limit=300):
    t = time.time()
    while not os.path.exists(os.environ["FERRY_GO"]):
        if time.time() - t > limit:
            raise SystemExit("no go")
        time.sleep(0.01)
def done(x):
    tmp = os.environ["FERRY_OUT"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(x, f)
    os.rename(tmp, os.environ["FERRY_OUT"])
"#;

/// A client session running in `client`.
pub struct Session {
    child: Child,
    ready: PathBuf,
    go: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

impl Session {
    /// Starts `script` (Python, after [`PRELUDE`]) with `args` in `client`, and waits
    /// until it calls `ready()`.
    pub fn start(lab: &Lab, script: &str, args: &[&str]) -> Session {
        let tag = super::unique("s");
        let base = lab.work.join(&tag);
        let (ready, go, out, err) = (
            base.with_extension("ready"),
            base.with_extension("go"),
            base.with_extension("json"),
            base.with_extension("err"),
        );
        let code = format!("{PRELUDE}\n{script}");
        let child = python_in_client(lab, &code)
            .args(args)
            .env("FERRY_READY", &ready)
            .env("FERRY_GO", &go)
            .env("FERRY_OUT", &out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("python3 in client");
        let mut s = Session {
            child,
            ready,
            go,
            out,
            err,
        };
        let t = Instant::now();
        while !s.ready.exists() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!(
                    "the client session ended ({st}) before it was ready:\n{}",
                    s.stderr()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the client session was not ready within 60 s:\n{}",
                s.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Lets the session do its "after" step and returns what it found.
    pub fn finish(mut self) -> serde_json::Value {
        std::fs::write(&self.go, b"").unwrap();
        let t = Instant::now();
        loop {
            if let Ok(text) = std::fs::read(&self.out) {
                let _ = self.child.wait();
                return serde_json::from_slice(&text).expect("session json");
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the client session failed ({st}):\n{}", self.stderr());
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "the client session did not finish within 120 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `args` in container `name` on `host`; returns its address.
pub fn run(lab: &Lab, host: &str, name: &str, args: &[&str]) -> String {
    let mut a = vec!["run", "--host", host, "--name", name, "--"];
    a.extend_from_slice(args);
    super::lab::address_of(&lab.ok(&a))
}

/// `python3 -c CODE` in the lab's `client` namespace.
fn python_in_client(lab: &Lab, code: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.netns("client"), "python3", "-c", code]);
    c
}

/// Starts `args` in container `name` on `a` and waits (up to `secs`) until its `port`
/// answers from `client`; returns its address.
pub fn start(lab: &Lab, name: &str, args: &[&str], port: u16, secs: u64) -> String {
    let ip = run(lab, "a", name, args);
    wait_port(lab, &ip, port, Duration::from_secs(secs));
    ip
}

/// Waits until `ip:port` accepts connections from `client`.
pub fn wait_port(lab: &Lab, ip: &str, port: u16, limit: Duration) {
    let code = format!(
        "import socket,time,sys\nt=time.time()\nwhile True:\n  try:\n    socket.create_connection(('{ip}',{port}),1).close(); break\n  except OSError:\n    if time.time()-t>{}: sys.exit(1)\n    time.sleep(0.05)",
        limit.as_secs()
    );
    let ok = python_in_client(lab, &code).status().unwrap().success();
    assert!(ok, "nothing listens on {ip}:{port} after {limit:?}");
}

/// Moves `name` from `from` to `to` with `strategy`; asserts it migrated and runs there
/// alone, and returns the report.
pub fn moves(lab: &Lab, name: &str, from: &str, to: &str, strategy: &str) -> serde_json::Value {
    let (ok, r) = lab.migrate(name, to, &["--strategy", strategy]);
    assert!(ok, "{name} with {strategy}: {r}");
    assert_eq!(r["outcome"], "migrated", "{r}");
    assert_eq!(
        lab.container_status(to, name).as_deref(),
        Some("running"),
        "{r}"
    );
    assert!(
        !lab.containers_on(from).contains(&name.to_string()),
        "{name} left {from}: {r}"
    );
    r
}
