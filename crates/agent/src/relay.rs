//! Relaying the page channel: bytes between a local CRIU socket and the authenticated
//! connection to the peer agent, counted as they go.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

const BUF: usize = 1 << 20;

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    /// Bytes moved from the local side to the remote side so far.
    pub forward: Arc<AtomicU64>,
    task: JoinHandle<std::io::Result<(u64, u64)>>,
}

async fn pump<R, W>(mut r: R, mut w: W, counter: Arc<AtomicU64>) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Starts relaying between `local` and `remote` until both directions end.
pub fn start<L, R>(local: L, remote: R) -> Relay
where
    L: AsyncRead + AsyncWrite + Send + 'static,
    R: AsyncRead + AsyncWrite + Send + 'static,
{
    let forward = Arc::new(AtomicU64::new(0));
    let back = Arc::new(AtomicU64::new(0));
    let f = forward.clone();
    let task = tokio::spawn(async move {
        let (lr, lw) = tokio::io::split(local);
        let (rr, rw) = tokio::io::split(remote);
        let (a, b) = tokio::join!(pump(lr, rw, f), pump(rr, lw, back));
        Ok((a?, b?))
    });
    Relay { forward, task }
}

impl Relay {
    pub fn forwarded(&self) -> u64 {
        self.forward.load(Ordering::Relaxed)
    }

    /// Waits for both directions to end; returns the bytes forwarded.
    pub async fn finish(self, limit: Duration) -> std::io::Result<u64> {
        let forward = self.forward.clone();
        match tokio::time::timeout(limit, self.task).await {
            Ok(Ok(Ok((a, _)))) => Ok(a),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
            Err(_) => Err(std::io::Error::other(format!(
                "the page channel did not finish within {limit:?} ({} bytes relayed)",
                forward.load(Ordering::Relaxed)
            ))),
        }
    }

    /// Stops relaying at once.
    pub fn abort(self) {
        self.task.abort();
    }

    /// A handle that stops the relay from elsewhere (closing both sockets).
    pub fn cutter(&self) -> tokio::task::AbortHandle {
        self.task.abort_handle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_both_ways_and_counts_forward_bytes() {
        let (local_app, local_relay) = tokio::io::duplex(1 << 16);
        let (remote_relay, remote_app) = tokio::io::duplex(1 << 16);
        let relay = start(local_relay, remote_relay);
        let (mut lr, mut lw) = tokio::io::split(local_app);
        let (mut rr, mut rw) = tokio::io::split(remote_app);
        let payload = vec![5u8; 300_000];
        let p2 = payload.clone();
        let sender = tokio::spawn(async move {
            lw.write_all(&p2).await.unwrap();
            lw.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        rr.read_to_end(&mut got).await.unwrap();
        sender.await.unwrap();
        rw.write_all(b"ack").await.unwrap();
        rw.shutdown().await.unwrap();
        let mut back = Vec::new();
        lr.read_to_end(&mut back).await.unwrap();
        assert_eq!(got, payload);
        assert_eq!(back, b"ack");
        assert_eq!(relay.finish(Duration::from_secs(5)).await.unwrap(), 300_000);
    }
}
