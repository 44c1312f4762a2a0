//! End-to-end: the compatibility suite (docs/compatibility.md). Real servers from Debian
//! in lab containers, each with a client session that holds its connections across the
//! move: each application moves with its data and connections, or is refused before the
//! freeze, and none is lost.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::apps::{moves, run, wait_port, Session};
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
    let ip = run(
        &lab,
        "a",
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
    );
    wait_port(&lab, &ip, 11211, Duration::from_secs(10));
    for (from, to, strategy) in [("a", "b", "cold"), ("b", "a", "postcopy")] {
        let s = Session::start(&lab, MEMCACHED_CLIENT, &[&ip]);
        moves(&lab, "mc", from, to, strategy);
        let r = s.finish();
        assert_eq!(r["get"], "VALUE k999 0 6", "{strategy}: {r}");
        assert_eq!(r["value"], "v00999", "{strategy}: {r}");
        assert_eq!(r["incr"], "42", "{strategy}: {r}");
    }
}
