//! End-to-end: `ferry images` on checkpoints CRIU wrote of real containers: every image
//! of the compatibility suite's servers (Redis, memcached, nginx, Node.js, Python, the
//! JVM, a sparse 1 TB reservation, SQLite and MariaDB under file locks; each with a
//! client connection open) comes back
//! byte for byte, and a checkpoint changed with `ferry images edit` restores with the
//! change.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::apps::{run, wait_port};
use common::lab::Lab;
use common::*;

fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// A client in the lab's client namespace that holds one connection to `ip:port` open.
fn hold_connection(lab: &Lab, ip: &str, port: u16) -> Child {
    let code = format!(
        "import socket,time\ns=socket.create_connection(('{ip}',{port}))\nprint('up',flush=True)\ntime.sleep(300)"
    );
    let mut c = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.netns("client"),
            "python3",
            "-c",
            &code,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(c.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "up", "the client connected to {ip}:{port}");
    c
}

/// The suite's nginx: its configuration file is written where it runs.
const NGINX_CONF: &str = include_str!("../crates/bench/src/apps/programs/nginx.conf");
const NGINX: &str = "mkdir -p /data/www && echo hello > /data/www/index.html && printf '%s' \"$1\" > /data/nginx.conf && exec /usr/sbin/nginx -p /data -e /data/error.log -c /data/nginx.conf";
/// The suite's JVM, sparse and SQLite servers.
const JAVA: &str = include_str!("../crates/bench/src/apps/programs/S.java");
const JVM: &str = "printf '%s' \"$1\" > /data/S.java && exec java -Xmx64m /data/S.java";
const SPARSE: &str = include_str!("../crates/bench/src/apps/programs/sparse.py");
const SQLITE: &str = include_str!("../crates/bench/src/apps/programs/sqlite.py");
const MARIADB: &str = "mariadb-install-db --no-defaults --user=root --datadir=/data/db --auth-root-authentication-method=normal --skip-test-db >/data/install.log 2>&1 && exec /usr/sbin/mariadbd --no-defaults --user=root --datadir=/data/db --bind-address=0.0.0.0 --port=3306 --socket=/run/mysqld.sock --skip-grant-tables --log-error=/data/error.log --innodb-use-native-aio=0 --performance-schema=0";

const NODE: &str = "require('http').createServer((q, s) => s.end('hi')).listen(8080)";
const PYTHON: &str = "import socketserver\nclass H(socketserver.StreamRequestHandler):\n  def handle(self):\n    for l in self.rfile: self.wfile.write(l)\nsocketserver.ThreadingTCPServer(('0.0.0.0', 7000), H).serve_forever()";

#[test]
fn every_image_of_the_suites_servers_comes_back_byte_for_byte() {
    let Some(env) = e2e("every_image_of_the_suites_servers_comes_back_byte_for_byte") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("/run/ferry/lab/{}/lab.json", lab.name())).unwrap(),
    )
    .unwrap();
    let root = state["hosts"][0]["runtime_root"]
        .as_str()
        .unwrap()
        .to_string();
    let servers: [(&str, Vec<&str>, u16); 9] = [
        ("redis", vec![], 6379),
        (
            "memcached",
            vec![
                "/usr/bin/memcached",
                "-u",
                "root",
                "-l",
                "0.0.0.0",
                "-p",
                "11211",
            ],
            11211,
        ),
        ("nginx", vec!["/bin/sh", "-c", NGINX, "sh", NGINX_CONF], 80),
        ("node", vec!["/usr/bin/node", "-e", NODE], 8080),
        ("python", vec!["/usr/bin/python3", "-c", PYTHON], 7000),
        ("jvm", vec!["/bin/sh", "-c", JVM, "sh", JAVA], 7000),
        ("sparse", vec!["/usr/bin/python3", "-c", SPARSE], 7100),
        ("sqlite", vec!["/usr/bin/python3", "-c", SQLITE], 7000),
        ("mariadb", vec!["/bin/sh", "-c", MARIADB], 3306),
    ];
    let mut seen_types = std::collections::BTreeSet::new();
    for (name, argv, port) in servers {
        let ip = if argv.is_empty() {
            lab.run_redis("a", name)
        } else {
            let ip = run(&lab, "a", name, &argv);
            wait_port(&lab, &ip, port, Duration::from_secs(90));
            ip
        };
        let mut client = hold_connection(&lab, &ip, port);
        let images = env.work.join(format!("images-{name}"));
        let mut args = vec![
            "checkpoint",
            name,
            "--images",
            images.to_str().unwrap(),
            "--tcp-established",
            "--leave-running",
            "--runtime-root",
            &root,
        ];
        // SQLite and MariaDB hold their files under locks.
        if name == "sqlite" || name == "mariadb" {
            args.push("--file-locks");
        }
        env.ferry_ok(&args);
        client.kill().ok();
        client.wait().ok();
        let r = json_of(&env.ferry_ok(&["images", "check", images.to_str().unwrap()]));
        assert_eq!(names(&r["differ"]), Vec::<String>::new(), "{name}: {r}");
        let decoded = names(&r["decoded"]);
        for must in ["inventory.img", "pstree.img", "files.img", "stats-dump"] {
            assert!(decoded.iter().any(|d| d == must), "{name}: {must} in {r}");
        }
        for prefix in ["core-", "mm-", "pagemap-", "tcp-stream-"] {
            assert!(
                decoded.iter().any(|d| d.starts_with(prefix)),
                "{name}: {prefix}* in {r}"
            );
        }
        let tails: Vec<String> = names(&r["with_tail"])
            .into_iter()
            .filter(|t| !t.starts_with("ghost-file-"))
            .collect();
        assert!(
            tails.is_empty(),
            "{name}: entries that did not decode: {tails:?}"
        );
        // Every image shows as JSON, with its socket's addresses by name.
        let shown = json_of(&env.ferry_ok(&["images", "show", images.to_str().unwrap()]));
        let files = shown["files"].as_array().unwrap();
        let sockets = files
            .iter()
            .filter(|f| f["file"] == "files.img")
            .flat_map(|f| f["entries"].as_array().unwrap())
            .filter(|e| e["isk"]["state"] == 1)
            .count();
        assert!(sockets >= 1, "{name}: an established socket in files.img");
        seen_types.extend(
            files
                .iter()
                .filter_map(|f| f["magic"].as_str().map(String::from)),
        );
        lab.ok(&["rm", "--host", "a", name]);
    }
    eprintln!("image types seen: {seen_types:?}");
}

#[test]
fn a_checkpoint_changed_with_images_edit_restores_with_the_change() {
    let Some(mut env) = e2e("a_checkpoint_changed_with_images_edit_restores_with_the_change")
    else {
        return;
    };
    let (ns, bundle) = env.running_redis("redis", "fi", 1000);
    let images = env.work.join("images");
    let root = env.root_arg();
    env.checkpoint("redis", &images, &[]);
    let dir = images.to_str().unwrap();
    let pid = json_of(&env.ferry_ok(&["images", "show", dir, "--file", "pstree.img"]))["files"][0]
        ["entries"][0]["pid"]
        .as_u64()
        .unwrap();
    let core = format!("core-{pid}.img");
    let change = env.work.join("change.json");
    std::fs::write(
        &change,
        format!(r#"[{{"file": "{core}", "path": "entries/0/tc/comm", "set": "ferried"}}]"#),
    )
    .unwrap();
    let edited = env.work.join("edited");
    env.ferry_ok(&[
        "images",
        "edit",
        dir,
        "--change",
        change.to_str().unwrap(),
        "--out",
        edited.to_str().unwrap(),
    ]);
    // The difference is exactly the change.
    let d = json_of(&String::from_utf8_lossy(
        &env.ferry(&["images", "diff", dir, edited.to_str().unwrap(), "--json"])
            .stdout,
    ));
    let d = d.as_array().unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0]["file"].as_str(), d[0]["path"].as_str()),
        (Some(core.as_str()), Some("entries/0/tc/comm"))
    );
    assert_eq!(d[0]["b"], "ferried");
    // Bad changes: one sentence, nothing written.
    std::fs::write(
        &change,
        r#"[{"file": "../x.img", "path": "entries/0/a", "set": 1}]"#,
    )
    .unwrap();
    let out = env.ferry(&["images", "edit", dir, "--change", change.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the name of an image file"));
    env.ferry_ok(&[
        "restore",
        "redis",
        "--images",
        edited.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        "--runtime-root",
        &root,
    ]);
    assert_eq!(env.status("redis"), "running");
    check_keys(&ns, 1000);
    let state = Command::new("runc")
        .args(["--root", &root, "state", "redis"])
        .output()
        .unwrap();
    let host_pid = json_of(&String::from_utf8_lossy(&state.stdout))["pid"]
        .as_u64()
        .unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{host_pid}/comm")).unwrap();
    assert_eq!(
        comm.trim(),
        "ferried",
        "the restored process has the edited name"
    );
}
