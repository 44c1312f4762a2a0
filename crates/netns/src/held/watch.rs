//! Watching a restored container's connections for their peers' first packets.
//!
//! Right after the commit, an accepting chain logs the first bytes of each TCP packet
//! coming in to the namespace (log group [`GROUP_WATCH`]), and a reader notes when each
//! established connection's peer first sent one. The watch ends when every connection
//! was heard from, or at its deadline; then its table goes.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::catch::LogReader;
use super::packet;
use crate::{Cmd, NetError, RealRunner, Runner};

/// Log group for the packets a watch sees.
pub const GROUP_WATCH: u16 = 17922;
const TABLE: &str = "ferry-watch";

/// One established TCP connection of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conn {
    pub local: SocketAddrV4,
    pub peer: SocketAddrV4,
}

/// Reads `ss -tnH state established` (IPv4): one connection per line, the local and the
/// peer's address in the last two columns of the four.
pub fn parse_ss(text: &str) -> Vec<Conn> {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local = cols.get(2)?.parse().ok()?;
            let peer = cols.get(3)?.parse().ok()?;
            Some(Conn { local, peer })
        })
        .collect()
}

/// The container's established IPv4 connections, in the namespace at `netns`.
pub async fn established(netns: &Path) -> Result<Vec<Conn>, NetError> {
    let out = RealRunner
        .run(
            &Cmd::new("ss", &["-4", "-t", "-n", "-H", "state", "established"])
                .in_netns(netns.to_path_buf()),
        )
        .await?;
    Ok(parse_ss(&out))
}

/// When each watched peer was first heard, from the reader's side.
#[derive(Debug, Default)]
struct Seen {
    /// (peer address, peer port, local port) → still waited for.
    waiting: HashSet<(Ipv4Addr, u16, u16)>,
    first: HashMap<(Ipv4Addr, u16, u16), Instant>,
}

fn on_packet(seen: &mut Seen, _group: u16, p: &[u8]) -> bool {
    // Only the headers are logged: parse them as a whole packet of that length.
    if let Some(t) = packet::parse_headers(p) {
        let key = (t.src, t.src_port, t.dst_port);
        if seen.waiting.remove(&key) {
            seen.first.insert(key, Instant::now());
        }
    }
    seen.waiting.is_empty()
}

/// A watch in progress.
#[derive(Debug)]
pub struct Watch {
    netns: PathBuf,
    conns: Vec<Conn>,
    started: Instant,
    reader: LogReader<Seen>,
}

impl Watch {
    /// Starts watching `conns` in the namespace at `netns`, for at most `limit`.
    pub async fn start(netns: &Path, conns: Vec<Conn>, limit: Duration) -> Result<Watch, NetError> {
        let started = Instant::now();
        let path = netns.to_path_buf();
        let keys: Vec<_> = conns
            .iter()
            .map(|c| (*c.peer.ip(), c.peer.port(), c.local.port()))
            .collect();
        let deadline = started + limit;
        let seen = Seen {
            waiting: keys.into_iter().collect(),
            first: HashMap::new(),
        };
        // Bound before the table logs anything, so no first packet is missed.
        let reader = tokio::task::spawn_blocking(move || {
            LogReader::start(&path, &[GROUP_WATCH], Some(deadline), seen, on_packet)
        })
        .await
        .map_err(|e| NetError::Invalid(e.to_string()))??;
        RealRunner.run(&plan_install(netns)).await?;
        Ok(Watch {
            netns: netns.to_path_buf(),
            conns,
            started,
            reader,
        })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Waits for the watch to end; returns each connection with the time from the start
    /// of the watch until its peer's first packet (`None`: nothing came).
    pub async fn finish(self) -> Vec<(Conn, Option<Duration>)> {
        let Watch {
            netns,
            conns,
            started,
            reader,
        } = self;
        let seen = tokio::task::spawn_blocking(move || reader.wait())
            .await
            .unwrap_or_default();
        let remove = Cmd::new("nft", &["delete", "table", "inet", TABLE]).in_netns(netns);
        if let Err(e) = RealRunner.run(&remove).await {
            tracing::debug!("removing the watch table: {e}");
        }
        conns
            .into_iter()
            .map(|c| {
                let key = (*c.peer.ip(), c.peer.port(), c.local.port());
                let at = seen
                    .first
                    .get(&key)
                    .map(|t| t.saturating_duration_since(started));
                (c, at)
            })
            .collect()
    }
}

/// The accepting chain that logs the headers of every TCP packet coming in.
pub fn plan_install(netns: &Path) -> Cmd {
    let script = format!(
        "table inet {TABLE} {{\n\tchain input {{ type filter hook input priority -10; policy accept; \
         meta nfproto ipv4 meta l4proto tcp log group {GROUP_WATCH} snaplen 80 queue-threshold 1; }}\n}}\n"
    );
    Cmd::new("nft", &["-f", "-"])
        .with_stdin(script)
        .in_netns(netns.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines_become_connections() {
        let text = "0      0         10.77.1.10:6379     10.77.0.2:41234\n\
                    0      0         10.77.1.10:6379     10.77.0.3:5000   \n\
                    garbage\n0 0 [::1]:80 [::1]:9\n";
        let c = parse_ss(text);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].local, "10.77.1.10:6379".parse().unwrap());
        assert_eq!(c[1].peer, "10.77.0.3:5000".parse().unwrap());
    }

    #[test]
    fn the_watch_accepts_everything_and_logs_headers_only() {
        let s = plan_install(Path::new("/run/netns/x")).stdin.unwrap();
        assert!(s.contains("policy accept") && !s.contains("drop"));
        assert!(s.contains("log group 17922 snaplen 80"));
    }

    #[test]
    fn a_peer_counts_once_and_the_watch_ends_when_all_were_heard() {
        let mut seen = Seen::default();
        let a = (Ipv4Addr::new(10, 0, 0, 1), 40000, 6379);
        let b = (Ipv4Addr::new(10, 0, 0, 9), 40000, 6379);
        seen.waiting.insert(a);
        seen.waiting.insert(b);
        let p = packet::tests::packet([10, 0, 0, 1], [10, 0, 0, 2], 0x18, b"x");
        assert!(!on_packet(&mut seen, GROUP_WATCH, &p[..40]));
        assert!(seen.first.contains_key(&a));
        let first = seen.first[&a];
        assert!(!on_packet(&mut seen, GROUP_WATCH, &p));
        assert_eq!(seen.first[&a], first, "the first packet counts");
        let q = packet::tests::packet([10, 0, 0, 9], [10, 0, 0, 2], 0x10, b"");
        assert!(on_packet(&mut seen, GROUP_WATCH, &q), "all heard");
    }
}
