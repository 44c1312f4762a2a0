//! The hold lock's copies, on real namespaces and a real TCP connection: what a peer
//! sent while the lock was on, and what the locked side sent, arrive once delivered,
//! long before either side's retransmission timer would have resent them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_netns::held::{deliver, Catcher};
use ferry_netns::{NetLock, RealRunner};

fn enabled() -> bool {
    if std::env::var("FERRY_E2E").ok().as_deref() != Some("1") {
        eprintln!("skipping: set FERRY_E2E=1 and run as root to run end-to-end tests");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "FERRY_E2E=1 but not root");
    true
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

/// Two namespaces joined by a veth: the client at .1, the server at .2.
struct Pair {
    client: String,
    server: String,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let p = Pair {
            client: format!("ferry-held-c-{tag}"),
            server: format!("ferry-held-s-{tag}"),
        };
        p.remove();
        ip(&["netns", "add", &p.client]);
        ip(&["netns", "add", &p.server]);
        let (a, b) = (format!("fhc{tag}"), format!("fhs{tag}"));
        ip(&[
            "link", "add", &a, "netns", &p.client, "type", "veth", "peer", "name", &b, "netns",
            &p.server,
        ]);
        for (ns, dev, addr) in [
            (&p.client, &a, "10.99.7.1/24"),
            (&p.server, &b, "10.99.7.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    fn path(name: &str) -> PathBuf {
        Path::new("/run/netns").join(name)
    }

    fn remove(&self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Pair {
    /// A listener on the server's `port`.
    fn listen(&self, port: u16) -> TcpListener {
        in_ns(&self.server, move || {
            TcpListener::bind(("10.99.7.2", port)).expect("bind")
        })
        .join()
        .expect("the listening thread")
    }

    /// A connection from the client to the server's `port`.
    fn connect(&self, port: u16) -> TcpStream {
        in_ns(&self.client, move || {
            TcpStream::connect(("10.99.7.2", port)).expect("connect")
        })
        .join()
        .expect("the connecting thread")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = Pair::path(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).expect("the namespace");
        // SAFETY: setns on a valid descriptor, for this thread only.
        let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0);
        f()
    })
}

#[test]
fn what_the_lock_held_arrives_once_delivered_not_at_the_next_retransmission() {
    if !enabled() {
        return;
    }
    let pair = Pair::new("1");
    let listener = pair.listen(7070);
    let mut client = pair.connect(7070);
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).unwrap();

    let rt = runtime();
    let ns = Pair::path(&pair.server);
    let lock = NetLock::ferry_hold(ns.clone());
    rt.block_on(lock.install(&RealRunner)).unwrap();
    let catcher = Catcher::start(&ns).unwrap();
    client.write_all(b"ping").unwrap();
    server.write_all(b"pong").unwrap();
    // Long enough for the first retransmissions (about 200 ms) to be dropped as well:
    // the next ones are 400 ms later.
    std::thread::sleep(Duration::from_millis(350));
    let held = catcher.finish();
    assert!(
        !held.inbound.is_empty() && !held.outbound.is_empty(),
        "{held:?}"
    );
    rt.block_on(lock.remove(&RealRunner)).unwrap();
    let t = Instant::now();
    let done = rt
        .block_on(deliver(&ns, Ipv4Addr::new(10, 99, 7, 2), held))
        .unwrap();
    assert!(
        done.inbound >= 1 && done.outbound >= 1 && done.refused == 0,
        "{done:?}"
    );

    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut got = [0u8; 4];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    let to_server = t.elapsed();
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
    let to_client = t.elapsed();
    assert!(
        to_server < Duration::from_millis(150) && to_client < Duration::from_millis(150),
        "held packets took {to_server:?} and {to_client:?}: they waited for a retransmission"
    );
    // The connection carries on both ways.
    client.write_all(b"more").unwrap();
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"more");
}

#[test]
fn a_watch_hears_each_peer_once_and_says_which_stayed_silent() {
    use ferry_netns::held::watch::{established, Watch};
    if !enabled() {
        return;
    }
    let pair = Pair::new("2");
    let listener = pair.listen(7071);
    let mut talker = pair.connect(7071);
    let _silent = pair.connect(7071);
    let (_a, _) = listener.accept().unwrap();
    let (_b, _) = listener.accept().unwrap();

    let rt = runtime();
    let ns = Pair::path(&pair.server);
    let conns = rt.block_on(established(&ns)).unwrap();
    assert_eq!(conns.len(), 2, "{conns:?}");
    let watch = rt
        .block_on(Watch::start(&ns, conns, Duration::from_millis(600)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    talker.write_all(b"hi").unwrap();
    let t = Instant::now();
    let seen = rt.block_on(watch.finish());
    assert!(
        t.elapsed() > Duration::from_millis(300),
        "it waited for the silent one"
    );
    let talker_port = talker.local_addr().unwrap().port();
    for (c, at) in &seen {
        if c.peer.port() == talker_port {
            let at = at.expect("the talker was heard");
            assert!(
                at >= Duration::from_millis(100) && at < Duration::from_millis(400),
                "{at:?}"
            );
        } else {
            assert_eq!(*at, None, "the silent one sent nothing");
        }
    }
    let tables = Command::new("ip")
        .args(["netns", "exec", &pair.server, "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("ferry-watch"),
        "the watch's table is gone"
    );
}
