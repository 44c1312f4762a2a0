//! Load on a Redis during a bench, from inside the lab's client namespace:
//! - a writer that rewrites random keys at a fixed rate (pages keep changing);
//! - a meter that asks as fast as Redis answers and records when each batch returned, so
//!   that the throughput in any window can be compared with the throughput before.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Requests per meter batch.
const BATCH: usize = 32;
/// Writer ticks per second.
const TICKS: u64 = 100;

fn enter(netns: &PathBuf) -> anyhow::Result<()> {
    let f = std::fs::File::open(netns)?;
    // SAFETY: setns on a valid descriptor; it changes only this thread.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "cannot enter {}: {}",
            netns.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn connect(target: SocketAddr) -> anyhow::Result<(TcpStream, BufReader<TcpStream>)> {
    let s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .with_context(|| format!("cannot reach Redis at {target}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let r = BufReader::new(s.try_clone()?);
    Ok((s, r))
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A running load; [`Load::stop`] ends it.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    writer: Option<std::thread::JoinHandle<anyhow::Result<u64>>>,
    meter: Option<std::thread::JoinHandle<anyhow::Result<Vec<f64>>>>,
    pub started: Instant,
}

/// What a load saw.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub writes: u64,
    /// When each meter batch of [`BATCH`] requests returned, in ms since the start.
    pub batches: Vec<f64>,
}

impl LoadResult {
    /// Requests per second between `from_ms` and `to_ms` (since the start).
    pub fn rate(&self, from_ms: f64, to_ms: f64) -> Option<f64> {
        if to_ms <= from_ms {
            return None;
        }
        let n = self
            .batches
            .iter()
            .filter(|&&t| t > from_ms && t <= to_ms)
            .count();
        Some((n * BATCH) as f64 / ((to_ms - from_ms) / 1e3))
    }
}

/// Starts the load from `netns` against `target`: `writes_per_s` SETs of 1000-byte values
/// over `keys` keys (named as `DEBUG POPULATE` names them), and, with `meter`, the meter.
pub fn start(netns: &str, target: SocketAddr, keys: u64, writes_per_s: u64, meter: bool) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let path = ferry_netns::netns_path(netns);
    let started = Instant::now();
    let writer = (writes_per_s > 0 && keys > 0).then(|| {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || -> anyhow::Result<u64> {
            enter(&path)?;
            let (mut w, mut r) = connect(target)?;
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let per_tick = (writes_per_s / TICKS).max(1);
            let mut value = vec![b'x'; 1000];
            let mut line = String::new();
            let mut done = 0u64;
            let mut tick = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let mut cmd = Vec::with_capacity(per_tick as usize * 1100);
                for _ in 0..per_tick {
                    let key = format!("key:{}", rng.next() % keys);
                    for b in value.iter_mut().step_by(61) {
                        *b = b'a' + (rng.next() % 26) as u8;
                    }
                    write!(
                        cmd,
                        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1000\r\n",
                        key.len()
                    )?;
                    cmd.extend_from_slice(&value);
                    cmd.extend_from_slice(b"\r\n");
                }
                w.write_all(&cmd)?;
                for _ in 0..per_tick {
                    line.clear();
                    r.read_line(&mut line)?;
                    if !line.starts_with('+') {
                        bail!("the writer got '{}' from Redis", line.trim());
                    }
                }
                done += per_tick;
                tick += Duration::from_millis(1000 / TICKS);
                if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(done)
        })
    });
    let meter = meter.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
            enter(&path)?;
            let (mut w, mut r) = connect(target)?;
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let mut batches = Vec::new();
            let mut line = String::new();
            while !stop.load(Ordering::Relaxed) {
                let mut cmd = Vec::new();
                for _ in 0..BATCH {
                    let key = format!("key:{}", rng.next() % keys.max(1));
                    write!(cmd, "*2\r\n$6\r\nEXISTS\r\n${}\r\n{key}\r\n", key.len())?;
                }
                w.write_all(&cmd)?;
                for _ in 0..BATCH {
                    line.clear();
                    r.read_line(&mut line)?;
                    if !line.starts_with(':') {
                        bail!("the meter got '{}' from Redis", line.trim());
                    }
                }
                batches.push(started.elapsed().as_secs_f64() * 1e3);
            }
            Ok(batches)
        })
    });
    Load {
        stop,
        writer,
        meter,
        started,
    }
}

impl Load {
    pub fn stop(mut self) -> anyhow::Result<LoadResult> {
        self.stop.store(true, Ordering::Relaxed);
        let writes = match self.writer.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the writer panicked"))??,
            None => 0,
        };
        let batches = match self.meter.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the meter panicked"))??,
            None => Vec::new(),
        };
        Ok(LoadResult { writes, batches })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_batches_in_the_window() {
        let r = LoadResult {
            writes: 0,
            batches: vec![10.0, 20.0, 30.0, 1010.0],
        };
        assert_eq!(r.rate(0.0, 1000.0), Some(3.0 * BATCH as f64));
        assert_eq!(r.rate(5.0, 5.0), None);
    }
}
