//! End-to-end: the compatibility suite's web servers and language runtimes. nginx, a
//! Node.js server, a JVM, a Python asyncio server and a Python process tree sharing
//! memory and sockets, each in a lab container, each with a client session that holds
//! its connections across the move: the application's state and every connection carry
//! on where they were.

// Test code: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod common;

use common::apps::{moves, start, Session};
use common::lab::Lab;
use common::*;

/// HTTP/1.1 over one raw socket, so that a closed connection is an error and never a
/// silent reconnect: `get(path)` returns the status line, the headers and the body.
const RAW_HTTP: &str = r#"
import socket
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((ip, port))
f = s.makefile("rb")
def get(path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
    line = f.readline()
    if not line:
        raise SystemExit("the server closed the connection")
    h = {}
    while True:
        l = f.readline().decode().strip()
        if not l:
            break
        k, v = l.split(":", 1)
        h[k.strip().lower()] = v.strip()
    return line.decode().strip(), h, f.read(int(h["content-length"]))
"#;

/// nginx's configuration: a master and one worker, everything it writes under /data and
/// /tmp, connections kept open for minutes. `/conn` answers with nginx's connection
/// serial number, the requests made on it so far and the client's port.
const NGINX_CONF: &str = r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid /data/nginx.pid;
error_log /data/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    include /etc/nginx/mime.types;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    server {
        listen 80;
        root /data/www;
        location = /conn {
            default_type text/plain;
            return 200 "$connection $connection_requests $remote_port\n";
        }
    }
}
"#;

/// An nginx client on one connection: a static file and `/conn` three times before the
/// move and three times after.
const NGINX_CLIENT: &str = r#"
big = "".join(f"{i}\n" for i in range(1, 20001)).encode()
def round():
    st, h, body = get("/big.txt")
    st2, _, conn = get("/conn")
    return {"status": st, "big": body == big, "status2": st2, "conn": conn.decode().split()}
port = s.getsockname()[1]
before = [round() for _ in range(3)]
ready()
wait_go()
after = [round() for _ in range(3)]
st, _, index = get("/index.html")
done({"port": port, "port_after": s.getsockname()[1], "rounds": before + after,
      "index": index.decode()})
"#;

#[test]
fn nginx_serves_static_files_on_a_keep_alive_connection_across_moves() {
    let Some(env) = e2e("nginx_serves_static_files_on_a_keep_alive_connection_across_moves") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let script = format!(
        "mkdir -p /data/www && seq 1 20000 > /data/www/big.txt && echo hello > /data/www/index.html \
         && cat > /data/nginx.conf <<'EOF'\n{NGINX_CONF}EOF\n\
         exec /usr/sbin/nginx -p /data -e /data/error.log -c /data/nginx.conf"
    );
    let ip = start(&lab, "nginx", &["/bin/sh", "-c", &script], 80, 10);
    for (from, to, strategy) in [("a", "b", "cold"), ("b", "a", "precopy")] {
        let s = Session::start(&lab, &format!("{RAW_HTTP}{NGINX_CLIENT}"), &[&ip, "80"]);
        let r = moves(&lab, "nginx", from, to, strategy);
        eprintln!(
            "nginx {strategy}: downtime {} ms, total {} ms",
            r["downtime_ms"], r["total_ms"]
        );
        let c = s.finish();
        assert_eq!(c["port"], c["port_after"], "{strategy}: {c}");
        assert_eq!(c["index"], "hello\n", "{strategy}: {c}");
        let rounds = c["rounds"].as_array().unwrap();
        let serial = &rounds[0]["conn"][0];
        for (i, round) in rounds.iter().enumerate() {
            assert_eq!(round["status"], "HTTP/1.1 200 OK", "{strategy}: {c}");
            assert_eq!(round["status2"], "HTTP/1.1 200 OK", "{strategy}: {c}");
            assert_eq!(round["big"], true, "{strategy}: {c}");
            // One connection, as nginx sees it: the same serial number, its requests
            // counted on, and the client's port.
            assert_eq!(&round["conn"][0], serial, "{strategy}: {c}");
            assert_eq!(round["conn"][1], (2 * i + 2).to_string(), "{strategy}: {c}");
            assert_eq!(round["conn"][2], c["port"].to_string(), "{strategy}: {c}");
        }
    }
}

/// A Node.js HTTP server with its state in the process: a count of every request and,
/// per connection, the requests served on it. Idle keep-alive connections stay open.
const NODE_SERVER: &str = r#"
const http = require("http");
let count = 0;
const server = http.createServer((req, res) => {
  count += 1;
  req.socket.served = (req.socket.served || 0) + 1;
  const body = JSON.stringify({count, served: req.socket.served, port: req.socket.remotePort});
  res.writeHead(200, {"Content-Type": "application/json", "Content-Length": Buffer.byteLength(body)});
  res.end(body);
});
server.keepAliveTimeout = 600000;
server.requestTimeout = 0;
server.headersTimeout = 0;
server.listen(8080, "0.0.0.0");
"#;

/// A Node.js client on one connection: five requests before the move, five after.
const NODE_CLIENT: &str = r#"
def one():
    st, h, body = get("/")
    return {"status": st, **json.loads(body)}
port = s.getsockname()[1]
before = [one() for _ in range(5)]
ready()
wait_go()
after = [one() for _ in range(5)]
done({"port": port, "port_after": s.getsockname()[1], "replies": before + after})
"#;

#[test]
fn node_keeps_its_request_count_and_keep_alive_connection_across_moves() {
    let Some(env) = e2e("node_keeps_its_request_count_and_keep_alive_connection_across_moves")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let script = format!(
        "cat > /data/server.js <<'EOF'\n{NODE_SERVER}EOF\nexec /usr/bin/node /data/server.js"
    );
    let ip = start(&lab, "node", &["/bin/sh", "-c", &script], 8080, 20);
    let mut count = 0;
    for (from, to, strategy) in [("a", "b", "cold"), ("b", "a", "hybrid")] {
        let s = Session::start(&lab, &format!("{RAW_HTTP}{NODE_CLIENT}"), &[&ip, "8080"]);
        let r = moves(&lab, "node", from, to, strategy);
        eprintln!(
            "node {strategy}: downtime {} ms, total {} ms",
            r["downtime_ms"], r["total_ms"]
        );
        let c = s.finish();
        assert_eq!(c["port"], c["port_after"], "{strategy}: {c}");
        for (i, reply) in c["replies"].as_array().unwrap().iter().enumerate() {
            count += 1;
            assert_eq!(reply["status"], "HTTP/1.1 200 OK", "{strategy}: {c}");
            // The server's count goes on by one per request, across both moves.
            assert_eq!(reply["count"], count, "{strategy}: {c}");
            assert_eq!(reply["served"], i + 1, "{strategy}: {c}");
            assert_eq!(reply["port"], c["port"], "{strategy}: {c}");
        }
    }
}

/// A Java TCP server: a thread per connection answers each line with the connection's
/// count and the server's total, and keeps a list on the heap that grows per request.
/// It runs with the JVM's defaults (G1 and its threads, the JIT, class data sharing, a
/// dual-stack socket, hsperfdata mapped from /tmp), only the heap capped.
const JAVA_SERVER: &str = r#"
import java.io.*;
import java.net.*;
import java.util.*;

public class S {
    static long total = 0;
    static final List<String> heap = new ArrayList<>();

    public static void main(String[] args) throws Exception {
        ServerSocket ss = new ServerSocket(7000);
        while (true) {
            Socket c = ss.accept();
            new Thread(() -> serve(c)).start();
        }
    }

    static void serve(Socket c) {
        long mine = 0;
        try (c;
             BufferedReader r = new BufferedReader(new InputStreamReader(c.getInputStream()));
             PrintWriter w = new PrintWriter(c.getOutputStream(), true)) {
            while (r.readLine() != null) {
                mine++;
                long t, n;
                synchronized (heap) {
                    t = ++total;
                    for (int i = 0; i < 1000; i++) heap.add("item-" + t + "-" + i);
                    n = heap.size();
                }
                w.println(mine + " " + t + " " + n);
            }
        } catch (IOException e) {
        }
    }
}
"#;

/// A line client on one connection: five requests before the move, five after.
const LINE_CLIENT: &str = r#"
import socket
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((ip, port))
f = s.makefile("rb")
def ask(line):
    s.sendall(line.encode() + b"\n")
    reply = f.readline()
    if not reply:
        raise SystemExit("the server closed the connection")
    return [int(x) for x in reply.split()]
port = s.getsockname()[1]
before = [ask("inc") for _ in range(5)]
ready()
wait_go()
after = [ask("inc") for _ in range(5)]
done({"port": port, "port_after": s.getsockname()[1], "replies": before + after})
"#;

#[test]
fn a_jvm_keeps_its_heap_threads_and_client_connection_across_moves() {
    let Some(env) = e2e("a_jvm_keeps_its_heap_threads_and_client_connection_across_moves") else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let script = format!(
        "cat > /data/S.java <<'EOF'\n{JAVA_SERVER}EOF\n\
         javac -d /data /data/S.java && exec java -Xmx64m -cp /data S"
    );
    let ip = start(&lab, "jvm", &["/bin/sh", "-c", &script], 7000, 60);
    let mut total = 0;
    for (from, to, strategy) in [("a", "b", "cold"), ("b", "a", "postcopy")] {
        let s = Session::start(&lab, LINE_CLIENT, &[&ip, "7000"]);
        let r = moves(&lab, "jvm", from, to, strategy);
        eprintln!(
            "jvm {strategy}: downtime {} ms, total {} ms",
            r["downtime_ms"], r["total_ms"]
        );
        let c = s.finish();
        assert_eq!(c["port"], c["port_after"], "{strategy}: {c}");
        for (i, reply) in c["replies"].as_array().unwrap().iter().enumerate() {
            total += 1;
            // The connection's own count, the server's total, and the heap's list.
            assert_eq!(reply[0], i + 1, "{strategy}: {c}");
            assert_eq!(reply[1], total, "{strategy}: {c}");
            assert_eq!(reply[2], total * 1000, "{strategy}: {c}");
        }
    }
}

/// A Python asyncio server: per connection a running sum of what the client adds, and a
/// count of every request.
const ASYNCIO_SERVER: &str = r#"
import asyncio
total = 0
async def handle(r, w):
    global total
    mine = 0
    while True:
        line = await r.readline()
        if not line:
            break
        total += 1
        mine += int(line.split()[1])
        w.write(f"{mine} {total}\n".encode())
        await w.drain()
async def main():
    srv = await asyncio.start_server(handle, "0.0.0.0", 8000)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"#;

/// Five connections to the asyncio server, each adding its own number: three times
/// before the move, three times after.
const ASYNCIO_CLIENT: &str = r#"
import socket
ip = sys.argv[1]
conns = []
for k in range(5):
    s = socket.create_connection((ip, 8000))
    conns.append((s, s.makefile("rb")))
def add(k):
    s, f = conns[k]
    s.sendall(f"add {k + 1}\n".encode())
    reply = f.readline()
    if not reply:
        raise SystemExit(f"the server closed connection {k}")
    return [int(x) for x in reply.split()]
ports = [s.getsockname()[1] for s, _ in conns]
replies = [[] for _ in conns]
for _ in range(3):
    for k in range(5):
        replies[k].append(add(k))
ready()
wait_go()
for _ in range(3):
    for k in range(5):
        replies[k].append(add(k))
done({"ports": ports, "ports_after": [s.getsockname()[1] for s, _ in conns],
      "replies": replies})
"#;

#[test]
fn asyncio_keeps_five_concurrent_connections_and_their_state_across_moves() {
    let Some(env) = e2e("asyncio_keeps_five_concurrent_connections_and_their_state_across_moves")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = start(
        &lab,
        "aio",
        &["/usr/bin/python3", "-u", "-c", ASYNCIO_SERVER],
        8000,
        10,
    );
    let mut total = 0;
    for (from, to, strategy) in [("a", "b", "cold"), ("b", "a", "precopy")] {
        let s = Session::start(&lab, ASYNCIO_CLIENT, &[&ip]);
        let r = moves(&lab, "aio", from, to, strategy);
        eprintln!(
            "asyncio {strategy}: downtime {} ms, total {} ms",
            r["downtime_ms"], r["total_ms"]
        );
        let c = s.finish();
        assert_eq!(c["ports"], c["ports_after"], "{strategy}: {c}");
        let replies = c["replies"].as_array().unwrap();
        // Round by round, every connection's sum grows by its own number and the
        // server's total by one per request.
        for round in 0..6 {
            for (k, conn) in replies.iter().enumerate() {
                total += 1;
                assert_eq!(conn[round][0], (round + 1) * (k + 1), "{strategy}: {c}");
                assert_eq!(conn[round][1], total, "{strategy}: {c}");
            }
        }
    }
}

/// A parent and its forked child sharing an anonymous MAP_SHARED page (the child counts
/// in it), a socketpair (the parent pings, the child pongs), a UNIX listener at
/// /data/ctl.sock (the parent serves it; the child connects to it anew for every ping)
/// and an inotify watch on /data (the parent creates a file per request and reads its
/// event). The parent answers `state` on TCP port 9000 with what it found.
const IPC_TREE: &str = r#"
import ctypes, json, mmap, os, select, socket, struct, time
shm = mmap.mmap(-1, 4096)
a, b = socket.socketpair()
try:
    os.unlink("/data/ctl.sock")
except FileNotFoundError:
    pass
ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ctl.bind("/data/ctl.sock")
ctl.listen(8)
libc = ctypes.CDLL(None, use_errno=True)
ino = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
IN_CLOSE_WRITE, IN_CREATE = 0x8, 0x100
assert libc.inotify_add_watch(ino, b"/data", IN_CLOSE_WRITE | IN_CREATE) >= 0
child = os.fork()
if child == 0:
    a.close(); ctl.close(); os.close(ino)
    buf = b""
    while True:
        n = struct.unpack_from("Q", shm, 0)[0] + 1
        struct.pack_into("Q", shm, 0, n)
        if select.select([b], [], [], 0.005)[0]:
            data = b.recv(4096)
            if not data:
                os._exit(0)
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                seq = line.split()[1].decode()
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect("/data/ctl.sock")
                c.sendall(f"ctl {seq}\n".encode())
                ack = c.makefile("rb").readline().decode().strip()
                c.close()
                b.sendall(f"pong {seq} {n} {os.getppid()}|{ack}\n".encode())
b.close()
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", 9000))
tcp.listen(8)
seq = 0
pending = {}
bufs = {}
abuf = b""
def inotify_names():
    names = []
    try:
        data = os.read(ino, 65536)
    except BlockingIOError:
        return names
    i = 0
    while i < len(data):
        wd, mask, cookie, ln = struct.unpack_from("iIII", data, i)
        name = data[i + 16:i + 16 + ln].rstrip(b"\0").decode()
        names.append([name, mask])
        i += 16 + ln
    return names
while True:
    ready, _, _ = select.select([tcp, a, ctl] + list(bufs), [], [])
    for r in ready:
        if r is tcp:
            conn, _ = tcp.accept()
            bufs[conn] = b""
        elif r is ctl:
            conn, _ = ctl.accept()
            bufs[conn] = b""
        elif r is a:
            abuf += a.recv(4096)
            while b"\n" in abuf:
                line, abuf = abuf.split(b"\n", 1)
                pong, ack = line.decode().split("|")
                _, s, n, ppid = pong.split()
                conn, state = pending.pop(int(s))
                state.update({"pong": int(s), "child_count": int(n), "child_ppid": int(ppid),
                              "ack": ack, "parent_count": struct.unpack_from("Q", shm, 0)[0]})
                conn.sendall(json.dumps(state).encode() + b"\n")
        else:
            data = r.recv(4096)
            if not data:
                del bufs[r]
                r.close()
                continue
            bufs[r] += data
            while b"\n" in bufs[r]:
                line, bufs[r] = bufs[r].split(b"\n", 1)
                words = line.decode().split()
                if words[0] == "ctl":
                    r.sendall(f"ack {words[1]}\n".encode())
                elif words[0] == "state":
                    seq += 1
                    with open(f"/data/mark-{seq}", "w") as m:
                        m.write("x")
                    state = {"seq": seq, "child": child, "count": struct.unpack_from("Q", shm, 0)[0],
                             "inotify": inotify_names()}
                    pending[seq] = (r, state)
                    a.sendall(f"ping {seq}\n".encode())
"#;

/// Asks the process tree for its state on one connection: three times before the move,
/// three times after, a fifth of a second apart.
const IPC_CLIENT: &str = r#"
import socket
s = socket.create_connection((sys.argv[1], 9000))
f = s.makefile("rb")
def state():
    s.sendall(b"state\n")
    line = f.readline()
    if not line:
        raise SystemExit("the server closed the connection")
    time.sleep(0.2)
    return json.loads(line)
port = s.getsockname()[1]
before = [state() for _ in range(3)]
ready()
wait_go()
after = [state() for _ in range(3)]
done({"port": port, "port_after": s.getsockname()[1], "states": before + after})
"#;

#[test]
fn a_process_tree_keeps_shared_memory_socketpair_unix_listener_and_inotify_across_moves() {
    let Some(env) =
        e2e("a_process_tree_keeps_shared_memory_socketpair_unix_listener_and_inotify_across_moves")
    else {
        return;
    };
    let lab = Lab::up(&env, 2);
    let ip = start(
        &lab,
        "tree",
        &["/usr/bin/python3", "-u", "-c", IPC_TREE],
        9000,
        10,
    );
    let mut seq = 0;
    let mut last = 0;
    let mut child = serde_json::Value::Null;
    for (from, to, strategy) in [("a", "b", "cold"), ("b", "a", "postcopy")] {
        let s = Session::start(&lab, IPC_CLIENT, &[&ip]);
        let r = moves(&lab, "tree", from, to, strategy);
        eprintln!(
            "process tree {strategy}: downtime {} ms, total {} ms",
            r["downtime_ms"], r["total_ms"]
        );
        let c = s.finish();
        assert_eq!(c["port"], c["port_after"], "{strategy}: {c}");
        for st in c["states"].as_array().unwrap() {
            seq += 1;
            assert_eq!(st["seq"], seq, "{strategy}: {c}");
            if child.is_null() {
                child = st["child"].clone();
            }
            assert_eq!(st["child"], child, "{strategy}: {c}");
            // The socketpair carried the ping to the child and its pong back; the child
            // reached the UNIX listener by its path; its parent is still its parent.
            assert_eq!(st["pong"], seq, "{strategy}: {c}");
            assert_eq!(st["ack"], format!("ack {seq}"), "{strategy}: {c}");
            assert_eq!(st["child_ppid"], 1, "{strategy}: {c}");
            // The child's count in the shared page, seen by the parent, keeps rising.
            let count = st["count"].as_u64().unwrap();
            let child_count = st["child_count"].as_u64().unwrap();
            let parent_count = st["parent_count"].as_u64().unwrap();
            assert!(count > last, "{strategy}: the shared count stalled: {c}");
            assert!(child_count >= count, "{strategy}: {c}");
            assert!(parent_count >= child_count, "{strategy}: {c}");
            last = parent_count;
            // The inotify watch on /data saw the file made for this request.
            let name = format!("mark-{seq}");
            let seen = st["inotify"].as_array().unwrap();
            assert!(
                seen.iter().any(|e| e[0] == name.as_str()),
                "{strategy}: no inotify event for {name}: {c}"
            );
        }
    }
}
