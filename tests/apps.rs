//! End-to-end: the compatibility suite (docs/compatibility.md). Real servers from Debian
//! in lab containers, each with a client session that holds its connections across the
//! move: each application moves with its data and connections, or is refused before the
//! freeze, and none is lost.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::apps::{moves, run, start, Session};
use common::lab::Lab;
use common::*;

/// A memcached client over one connection: sets before, reads and increments after.
const MEMCACHED_CLIENT: &str = r#"
import socket
ip = sys.argv[1]
s = socket.create_connection((ip, 11211))
f = s.makefile("rb")
def cmd(line, data=None):
    s.sendall(line.encode() + b"\r\n" + ((data + b"\r\n") if data is not None else b""))
    return f.readline().strip().decode()
for i in range(1000):
    assert cmd(f"set k{i} 0 0 6", b"v%05d" % i) == "STORED"
assert cmd("set n 0 0 1", b"1") == "STORED"
ready()
wait_go()
got = cmd("get k999")
val = f.readline().strip().decode(); f.readline()
done({"get": got, "value": val, "incr": cmd("incr n 41"), "peer": s.getsockname()[1]})
"#;

#[test]
fn memcached_keeps_its_items_and_its_client_connection() {
    let Some(env) = e2e("memcached_keeps_its_items_and_its_client_connection") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = start(
        &lab,
        "mc",
        &[
            "/usr/bin/memcached",
            "-u",
            "root",
            "-l",
            "0.0.0.0",
            "-p",
            "11211",
            "-m",
            "64",
        ],
        11211,
        10,
    );
    for (from, to, strategy) in [("a", "b", "cold"), ("b", "a", "postcopy")] {
        let s = Session::start(&lab, MEMCACHED_CLIENT, &[&ip]);
        moves(&lab, "mc", from, to, strategy);
        let r = s.finish();
        assert_eq!(r["get"], "VALUE k999 0 6", "{strategy}: {r}");
        assert_eq!(r["value"], "v00999", "{strategy}: {r}");
        assert_eq!(r["incr"], "42", "{strategy}: {r}");
    }
}

/// A server that reserves 1 TB of address space it never uses (`PROT_NONE`, as
/// databases and JVMs do) beside 200 MB of data, and answers `SUM` with the data's hash.
const SPARSE_SERVER: &str = r#"
import ctypes, hashlib, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
reserved = libc.mmap(None, 1 << 40, 0, 0x02 | 0x20, -1, 0)  # PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS
assert reserved not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
data = bytearray(os.urandom(1 << 20)) * 200
for i in range(0, len(data), 4096):
    data[i] = i % 251
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 7100))
l.listen()
while True:
    c, _ = l.accept()
    for line in c.makefile("rb"):
        if line.strip() == b"SUM":
            c.sendall(hashlib.sha256(data).hexdigest().encode() + b"\n")
"#;

const SPARSE_CLIENT: &str = r#"
import socket
s = socket.create_connection((sys.argv[1], 7100))
f = s.makefile("rb")
def ask():
    s.sendall(b"SUM\n")
    return f.readline().strip().decode()
before = ask()
ready()
wait_go()
done({"before": before, "after": ask()})
"#;

#[test]
fn a_terabyte_reservation_beside_200_mb_moves_as_200_mb() {
    let Some(env) = e2e("a_terabyte_reservation_beside_200_mb_moves_as_200_mb") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = start(
        &lab,
        "sparse",
        &["/usr/bin/python3", "-c", SPARSE_SERVER],
        7100,
        60,
    );
    // Lazy dumps size their page pipes by the address space: refused before the freeze.
    let (ok, out) = lab.ferry(&["migrate", "sparse", "--to", "b", "--strategy", "postcopy"]);
    assert!(
        !ok && out.contains("postcopy does not fit") && out.contains("page pipes"),
        "{out}"
    );
    assert_eq!(
        lab.container_status("a", "sparse").as_deref(),
        Some("running")
    );
    for (from, to, strategy) in [("a", "b", "cold"), ("b", "a", "precopy")] {
        let s = Session::start(&lab, SPARSE_CLIENT, &[&ip]);
        let r = moves(&lab, "sparse", from, to, strategy);
        let sent = r["bytes_sent"].as_u64().unwrap_or(0);
        assert!(
            sent < 400 << 20,
            "{strategy} sent what is populated, not reserved: {r}"
        );
        let got = s.finish();
        assert_eq!(
            got["before"], got["after"],
            "{strategy}: the data is intact: {got}"
        );
    }
}

/// Appends the next number to `/data/seq` every 5 ms, reopening the file each time.
const APPENDER: &str = r#"
import time
i = 0
while True:
    i += 1
    with open("/data/seq", "a") as f:
        f.write(f"{i}\n")
    time.sleep(0.005)
"#;

/// Whether `/data/seq` of `name` on `host` counts 1, 2, 3, … without a gap.
fn counts_without_a_gap(lab: &Lab, host: &str, name: &str) -> (bool, usize) {
    let seq = lab
        .dir()
        .join(format!("{host}/bundles/{name}/rootfs/data/seq"));
    let text = std::fs::read_to_string(&seq).unwrap();
    let nums: Vec<usize> = text.lines().filter_map(|l| l.parse().ok()).collect();
    let ok = nums.iter().enumerate().all(|(k, &n)| n == k + 1);
    (ok, nums.len())
}

#[test]
fn files_written_while_the_bundle_travels_arrive_too() {
    let Some(env) = e2e("files_written_while_the_bundle_travels_arrive_too") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    run(&lab, "a", "appender", &["/usr/bin/python3", "-c", APPENDER]);
    std::thread::sleep(Duration::from_millis(500));
    for (from, to, strategy) in [("a", "b", "precopy"), ("b", "a", "cold")] {
        let r = moves(&lab, "appender", from, to, strategy);
        let (ok, n) = counts_without_a_gap(&lab, to, "appender");
        assert!(
            ok,
            "{strategy}: the file at {to} has a gap ({n} lines): {r}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let (ok, after) = counts_without_a_gap(&lab, to, "appender");
        assert!(
            ok && after > n,
            "{strategy}: it goes on from where it was: {r}"
        );
    }
}
