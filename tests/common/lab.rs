//! A lab per test: unique name, torn down when the test ends.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Env;

pub struct Lab {
    pub name: String,
    pub ferry: PathBuf,
    pub work: PathBuf,
}

pub const REDIS_ARGS: &[&str] = &[
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
];

impl Lab {
    /// Brings a lab up (with fault injection allowed).
    pub fn up(env: &Env, hosts: usize) -> Lab {
        let name = super::unique("t").replace('x', "");
        let lab = Lab {
            name: name.chars().take(12).collect(),
            ferry: env.ferry.clone(),
            work: env.work.clone(),
        };
        lab.ok(&["up", "--hosts", &hosts.to_string(), "--faults"]);
        lab
    }

    /// Brings a lab up with more arguments to `ferry lab up` (`--docker`).
    pub fn up_args(env: &Env, hosts: usize, args: &[&str]) -> Lab {
        let name = super::unique("t").replace('x', "");
        let lab = Lab {
            name: name.chars().take(12).collect(),
            ferry: env.ferry.clone(),
            work: env.work.clone(),
        };
        let mut all = vec!["up", "--hosts"];
        let n = hosts.to_string();
        all.push(&n);
        all.push("--faults");
        all.extend_from_slice(args);
        lab.ok(&all);
        lab
    }

    /// Brings a lab up whose agents start with `vars` in their environment.
    pub fn up_with_env(env: &Env, hosts: usize, vars: &[(&str, &str)]) -> Lab {
        let name = super::unique("t").replace('x', "");
        let lab = Lab {
            name: name.chars().take(12).collect(),
            ferry: env.ferry.clone(),
            work: env.work.clone(),
        };
        let out = lab
            .cmd()
            .args(["up", "--hosts", &hosts.to_string(), "--faults"])
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("ferry lab up");
        assert!(
            out.status.success(),
            "ferry lab up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// Brings a lab up whose links are shaped to `rate` (for example `100mbit`).
    pub fn up_shaped(env: &Env, hosts: usize, rate: &str) -> Lab {
        let name = super::unique("t").replace('x', "");
        let lab = Lab {
            name: name.chars().take(12).collect(),
            ferry: env.ferry.clone(),
            work: env.work.clone(),
        };
        lab.ok(&[
            "up",
            "--hosts",
            &hosts.to_string(),
            "--faults",
            "--link",
            rate,
        ]);
        lab
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.ferry);
        c.arg("lab").arg("--lab").arg(&self.name);
        c
    }

    /// `ferry lab ARGS`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ferry lab");
        assert!(
            out.status.success(),
            "ferry lab {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lab's name (`--lab`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the lab keeps its state: hosts' state directories, TLS files, the secret.
    pub fn dir(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/ferry/lab").join(&self.name)
    }

    pub fn netns(&self, host: &str) -> String {
        format!("ferry-{}-{host}", self.name)
    }

    /// Runs a command in the client namespace and returns its stdout.
    pub fn client(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns("client")])
            .args(args)
            .output()
            .expect("exec");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if stdout.is_empty() {
            return String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        stdout
    }

    pub fn redis(&self, ip: &str, args: &[&str]) -> String {
        let mut a = vec!["redis-cli", "-h", ip];
        a.extend_from_slice(args);
        self.client(&a)
    }

    /// Starts Redis on `host` and returns its address.
    pub fn run_redis(&self, host: &str, name: &str) -> String {
        let mut args = vec!["run", "--host", host, "--name", name, "--"];
        args.extend_from_slice(REDIS_ARGS);
        let ip = address_of(&self.ok(&args));
        self.wait_redis(&ip);
        ip
    }

    /// Waits until the Redis at `ip` answers the lab's client.
    pub fn wait_redis(&self, ip: &str) {
        for _ in 0..200 {
            if self.redis(ip, &["ping"]) == "PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis at {ip} did not answer");
    }

    /// Starts the INCR probe from `client`; stop it with [`Probe::stop`].
    pub fn probe(&self, ip: &str) -> Probe {
        let out = self.work.join(format!("probe-{}.json", super::unique("p")));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns("client")])
            .arg(&self.ferry)
            .args([
                "probe",
                "redis",
                &format!("{ip}:6379"),
                "--interval-ms",
                "1",
                "--out",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .expect("probe");
        std::thread::sleep(Duration::from_millis(300));
        Probe { child, out }
    }

    /// `ferry migrate`; returns whether it succeeded and its JSON report.
    pub fn migrate(&self, container: &str, to: &str, extra: &[&str]) -> (bool, serde_json::Value) {
        let report = self
            .work
            .join(format!("report-{}.json", super::unique("r")));
        let out = Command::new(&self.ferry)
            .args([
                "migrate", container, "--to", to, "--lab", &self.name, "--report",
            ])
            .arg(&report)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("ferry migrate");
        let text = std::fs::read(&report).unwrap_or_else(|_| {
            panic!(
                "no report; stdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (
            out.status.success(),
            serde_json::from_slice(&text).expect("report json"),
        )
    }

    /// `ferry lab status --json`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status json")
    }

    /// Names of the containers on `host`.
    pub fn containers_on(&self, host: &str) -> Vec<String> {
        let s = self.status();
        s["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == host)
            .map(|h| {
                h["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The runc status of `name` on `host` ("running", "paused", …), if it is there.
    pub fn container_status(&self, host: &str, name: &str) -> Option<String> {
        let s = self.status();
        let hosts = s["hosts"].as_array()?;
        let h = hosts.iter().find(|h| h["name"] == host)?;
        let c = h["containers"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)?;
        c["status"].as_str().map(str::to_string)
    }

    /// `ferry ARGS` with this lab selected; returns whether it succeeded and its output.
    pub fn ferry(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(&self.ferry)
            .args(args)
            .env("FERRY_LAB", &self.name)
            .stdin(Stdio::null())
            .output()
            .expect("ferry");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn netns_exists(&self, name: &str) -> bool {
        std::path::Path::new("/run/netns").join(name).exists()
    }
}

/// The address in `ferry lab run`'s answer (`NAME runs on HOST at IP/PREFIX`).
pub fn address_of(out: &str) -> String {
    out.split(" at ")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("address")
        .trim()
        .to_string()
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.cmd().arg("down").output();
    }
}

/// After a failed migration: the container `redis` runs on `a` only, with its `keys`
/// keys, and `b` kept nothing of it.
pub fn assert_rolled_back(lab: &Lab, r: &serde_json::Value, ip: &str, keys: &str) {
    eprintln!("checking the rollback of: {}", r["reason"]);
    assert_eq!(r["outcome"], "rolled_back", "{r}");
    assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    assert_eq!(lab.containers_on("a"), vec!["redis".to_string()], "{r}");
    assert_eq!(
        lab.container_status("a", "redis").as_deref(),
        Some("running")
    );
    assert_eq!(lab.redis(ip, &["dbsize"]), keys);
    assert!(
        !lab.netns_exists(&format!("{}-redis", lab.netns("b"))),
        "b dropped its namespace"
    );
}

pub struct Probe {
    child: Child,
    out: PathBuf,
}

impl Probe {
    /// Stops the probe and returns what it saw.
    pub fn stop(mut self) -> serde_json::Value {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let _ = self.child.wait();
        serde_json::from_slice(&std::fs::read(&self.out).expect("probe output"))
            .expect("probe json")
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Asserts a probe saw an unbroken run: no error, no lost or repeated INCR.
pub fn assert_unbroken(p: &serde_json::Value) {
    assert!(
        p["errors"].as_array().unwrap().is_empty(),
        "client errors: {p}"
    );
    assert_eq!(p["lost_or_repeated"], 0, "lost INCRs: {p}");
    let first = p["first_value"].as_i64().unwrap();
    let last = p["last_value"].as_i64().unwrap();
    assert_eq!(
        last - first + 1,
        p["requests"].as_i64().unwrap(),
        "every reply was the previous plus one: {p}"
    );
}

/// Copies `from` to `to`, keeping its mode (keys stay 0600).
fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
}

/// A directory of TLS files for `host`: the CA of `ca_dir`, the certificate and key of
/// `cert` from `cert_dir`.
pub fn tls_dir(
    work: &std::path::Path,
    ca_dir: &std::path::Path,
    cert_dir: &std::path::Path,
    cert: &str,
    host: &str,
) -> PathBuf {
    let d = work.join(super::unique("tls"));
    std::fs::create_dir_all(&d).expect("a TLS directory");
    copy(&ca_dir.join("ca.pem"), &d.join("ca.pem"));
    copy(
        &cert_dir.join(format!("{cert}.pem")),
        &d.join(format!("{host}.pem")),
    );
    copy(
        &cert_dir.join(format!("{cert}-key.pem")),
        &d.join(format!("{host}-key.pem")),
    );
    d
}
