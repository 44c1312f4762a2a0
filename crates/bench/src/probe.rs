//! A Redis client that issues INCR on one connection at a fixed interval and records
//! what a user would see: every reply's latency, gaps, and whether any increment was lost
//! or the connection changed.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What the probe saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub target: String,
    /// The client's own address: unchanged for the whole run, since it never reconnects.
    pub local_addr: String,
    pub requests: u64,
    pub first_value: Option<i64>,
    pub last_value: Option<i64>,
    /// Replies that were not the previous value plus one.
    pub lost_or_repeated: u64,
    pub errors: Vec<String>,
    pub max_latency_ms: f64,
    pub p50_latency_ms: f64,
    pub p99_latency_ms: f64,
    /// Requests slower than 50 ms: when (ms since start) and how long.
    pub stalls: Vec<Stall>,
    pub duration_ms: f64,
    /// When the probe started, and every request: when it was sent (ms since the start)
    /// and how long it took. Kept in memory for benches, not written out.
    #[serde(skip)]
    pub started: Option<Instant>,
    #[serde(skip)]
    pub timeline: Vec<(f64, f64)>,
}

/// Latencies of the requests sent within a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub requests: usize,
    pub max_ms: f64,
    pub p99_ms: f64,
}

impl ProbeResult {
    /// The requests sent between `from` and `to`; `None` if there were none.
    pub fn window(&self, from: Instant, to: Instant) -> Option<WindowStats> {
        let start = self.started?;
        let at = |t: Instant| t.saturating_duration_since(start).as_secs_f64() * 1e3;
        let (a, b) = (at(from), at(to));
        let mut lat: Vec<f64> = self
            .timeline
            .iter()
            .filter(|(sent, _)| *sent >= a && *sent <= b)
            .map(|(_, l)| *l)
            .collect();
        if lat.is_empty() {
            return None;
        }
        lat.sort_by(f64::total_cmp);
        Some(WindowStats {
            requests: lat.len(),
            max_ms: lat[lat.len() - 1],
            p99_ms: percentile(&lat, 0.99),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stall {
    pub at_ms: f64,
    pub ms: f64,
}

/// How long a read waits before the probe looks whether it was told to stop.
const READ_SLICE: Duration = Duration::from_millis(200);
/// How long a reply in flight is still waited for once the probe is told to stop: a
/// request dropped during a freeze is answered after the client's next retransmission,
/// which comes up to as long after the freeze ended as the freeze lasted.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Reads one reply. A server that never answers (its end of the connection vanished
/// without a reset) is given up on a while after the probe is told to stop.
fn read_reply(
    r: &mut BufReader<TcpStream>,
    stop: &AtomicBool,
) -> std::io::Result<Result<i64, String>> {
    use std::io::ErrorKind;
    let mut bytes = Vec::new();
    let mut stopped: Option<Instant> = None;
    loop {
        match r.read_until(b'\n', &mut bytes) {
            Ok(_) if bytes.ends_with(b"\n") => break,
            Ok(_) => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed",
                ))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed)
                    && stopped.get_or_insert_with(Instant::now).elapsed() > STOP_GRACE
                {
                    return Err(std::io::Error::new(
                        ErrorKind::TimedOut,
                        "no answer within 60 s after the probe was told to stop",
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let line = String::from_utf8_lossy(&bytes);
    let line = line.trim_end();
    if let Some(n) = line.strip_prefix(':') {
        return Ok(n.parse::<i64>().map_err(|e| e.to_string()));
    }
    Ok(Err(line.to_string()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs until `stop` is set or `duration` passes (if given).
pub fn run(
    target: SocketAddr,
    key: &str,
    interval: Duration,
    duration: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> ProbeResult {
    let mut res = ProbeResult {
        target: target.to_string(),
        ..Default::default()
    };
    let stream = match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            res.errors.push(format!("connect: {e}"));
            return res;
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(READ_SLICE));
    res.local_addr = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            res.errors.push(e.to_string());
            return res;
        }
    };
    let mut reader = BufReader::new(stream);
    let cmd = format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len());
    let start = Instant::now();
    res.started = Some(start);
    let mut lat = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| start.elapsed() < d) {
        let sent = Instant::now();
        if let Err(e) = writer.write_all(cmd.as_bytes()) {
            res.errors.push(format!("write: {e}"));
            break;
        }
        match read_reply(&mut reader, &stop) {
            Ok(Ok(v)) => {
                if let Some(prev) = res.last_value {
                    if v != prev + 1 {
                        res.lost_or_repeated += 1;
                    }
                }
                res.first_value.get_or_insert(v);
                res.last_value = Some(v);
            }
            Ok(Err(e)) => res.errors.push(e),
            Err(e) => {
                res.errors.push(format!("read: {e}"));
                break;
            }
        }
        let l = sent.elapsed().as_secs_f64() * 1e3;
        if l > 50.0 {
            res.stalls.push(Stall {
                at_ms: (sent - start).as_secs_f64() * 1e3,
                ms: l,
            });
        }
        lat.push(l);
        res.timeline.push(((sent - start).as_secs_f64() * 1e3, l));
        res.requests += 1;
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    res.duration_ms = start.elapsed().as_secs_f64() * 1e3;
    lat.sort_by(f64::total_cmp);
    res.max_latency_ms = lat.last().copied().unwrap_or(0.0);
    res.p50_latency_ms = percentile(&lat, 0.5);
    res.p99_latency_ms = percentile(&lat, 0.99);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A tiny stand-in that answers INCR like Redis, pausing once to make a stall.
    #[test]
    fn counts_and_detects_stalls_against_a_fake_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut n = 0;
            loop {
                let mut line = String::new();
                for _ in 0..5 {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                }
                n += 1;
                if n == 5 {
                    std::thread::sleep(Duration::from_millis(80));
                }
                let _ = w.write_all(format!(":{n}\r\n").as_bytes());
            }
        });
        let res = run(
            addr,
            "k",
            Duration::from_millis(1),
            Some(Duration::from_millis(300)),
            Arc::new(AtomicBool::new(false)),
        );
        assert!(res.requests > 10, "{res:?}");
        assert_eq!(res.lost_or_repeated, 0);
        assert_eq!(res.first_value, Some(1));
        assert_eq!(res.stalls.len(), 1);
        assert!(res.max_latency_ms >= 80.0);
        assert!(res.errors.is_empty());
        let start = res.started.unwrap();
        let all = res.window(start, start + Duration::from_secs(10)).unwrap();
        assert_eq!(all.requests as u64, res.requests);
        assert!(all.max_ms >= 80.0);
        assert!(res
            .window(
                start + Duration::from_secs(5),
                start + Duration::from_secs(6)
            )
            .is_none());
    }
}
