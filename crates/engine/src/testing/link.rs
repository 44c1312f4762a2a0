//! An in-memory link: the two halves of a migration talk over channels, every message
//! encoded and decoded as on the wire, and either end can vanish after so many frames.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use ferry_proto::WireMessage;
use tokio::sync::mpsc;

use crate::ports::peer::{Frame, Link, LinkError, ToDest, ToSource};

/// Frames on the wire: messages as their JSON bytes.
enum Wire {
    Message(Vec<u8>),
    Data(Vec<u8>),
}

/// One end of an in-memory connection.
pub struct ChanLink {
    tx: Option<mpsc::UnboundedSender<Wire>>,
    rx: mpsc::UnboundedReceiver<Wire>,
    sent: u64,
    host: String,
    /// The connection breaks once this many frames were sent through it.
    cut_after: Option<Arc<AtomicUsize>>,
}

/// A connected pair: the source's end, the destination's end.
pub fn pair(cut_after: Option<usize>) -> (Box<ToDest>, Box<ToSource>) {
    let (a_tx, a_rx) = mpsc::unbounded_channel();
    let (b_tx, b_rx) = mpsc::unbounded_channel();
    let cut = cut_after.map(|n| Arc::new(AtomicUsize::new(n)));
    let src = ChanLink {
        tx: Some(a_tx),
        rx: b_rx,
        sent: 0,
        host: "dst".into(),
        cut_after: cut.clone(),
    };
    let dst = ChanLink {
        tx: Some(b_tx),
        rx: a_rx,
        sent: 0,
        host: "src".into(),
        cut_after: cut,
    };
    (Box::new(src), Box::new(dst))
}

impl ChanLink {
    fn push(&mut self, w: Wire, len: usize) -> Result<(), LinkError> {
        if let Some(c) = &self.cut_after {
            if c.load(Ordering::SeqCst) == 0 {
                self.tx = None;
                return Err(LinkError::Closed);
            }
            c.fetch_sub(1, Ordering::SeqCst);
        }
        let tx = self.tx.as_ref().ok_or(LinkError::Closed)?;
        tx.send(w).map_err(|_| LinkError::Closed)?;
        self.sent += len as u64 + 12;
        Ok(())
    }
}

#[async_trait]
impl<Out: WireMessage, In: WireMessage> Link<Out, In> for ChanLink {
    async fn send(&mut self, msg: &Out) -> Result<(), LinkError> {
        let bytes = msg.encode();
        let len = bytes.len();
        self.push(Wire::Message(bytes), len)
    }

    async fn send_data(&mut self, data: &[u8]) -> Result<(), LinkError> {
        self.push(Wire::Data(data.to_vec()), data.len())
    }

    async fn recv(&mut self) -> Result<Frame<In>, LinkError> {
        match self.rx.recv().await {
            Some(Wire::Message(b)) => In::decode(&b)
                .map(Frame::Message)
                .map_err(|e| LinkError::Broken(e.to_string())),
            Some(Wire::Data(d)) => Ok(Frame::Data(d)),
            None => Err(LinkError::Closed),
        }
    }

    fn bytes_sent(&self) -> u64 {
        self.sent
    }

    fn peer_host(&self) -> &str {
        &self.host
    }
}
