//! Framed messages and data over an authenticated stream.

use ferry_proto::{FrameHeader, FrameKind, ProtoError, WireMessage, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Stream, TransportError};

/// Size of the `Data` frames ferry sends.
pub const DATA_CHUNK: usize = 1 << 20;

/// What arrived: a message of the family `M` the caller expects, or data.
#[derive(Debug)]
pub enum Incoming<M> {
    Message(M),
    Data(Vec<u8>),
}

/// A connection after the handshake.
#[derive(Debug)]
pub struct Conn<S = Stream> {
    stream: S,
    peer_host: String,
    version: u16,
    sent: u64,
    received: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(stream: S, peer_host: String, version: u16) -> Self {
        Self {
            stream,
            peer_host,
            version,
            sent: 0,
            received: 0,
        }
    }

    /// The peer's host name, as it announced itself during the handshake.
    pub fn peer_host(&self) -> &str {
        &self.peer_host
    }

    /// The protocol version both sides agreed on.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Bytes written so far, frames included.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    pub async fn send<M: WireMessage>(&mut self, msg: &M) -> Result<(), TransportError> {
        let mut buf = Vec::new();
        ferry_proto::encode_frame(FrameKind::Message, &msg.encode(), &mut buf)?;
        self.stream.write_all(&buf).await?;
        self.stream.flush().await?;
        self.sent += buf.len() as u64;
        Ok(())
    }

    /// Sends bytes as one or more `Data` frames.
    pub async fn send_data(&mut self, data: &[u8]) -> Result<(), TransportError> {
        for chunk in data.chunks(DATA_CHUNK) {
            let header = FrameHeader::for_payload(FrameKind::Data, chunk)?;
            self.stream.write_all(&header.encode()).await?;
            self.stream.write_all(chunk).await?;
            self.sent += (HEADER_LEN + chunk.len()) as u64;
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Receives the next frame; a message must be of the family `M`. A clean end of
    /// stream between frames is [`TransportError::Closed`].
    pub async fn recv<M: WireMessage>(&mut self) -> Result<Incoming<M>, TransportError> {
        let mut head = [0u8; HEADER_LEN];
        match self.stream.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(TransportError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        let header = FrameHeader::parse(&head)?;
        let mut payload = vec![0u8; header.len as usize];
        self.stream.read_exact(&mut payload).await?;
        header.verify(&payload)?;
        self.received += (HEADER_LEN + payload.len()) as u64;
        match header.kind {
            FrameKind::Message => Ok(Incoming::Message(M::decode(&payload)?)),
            FrameKind::Data => Ok(Incoming::Data(payload)),
            FrameKind::Invalid => Err(ProtoError::BadKind(0).into()),
        }
    }

    /// Receives the next frame, which must be a message.
    pub async fn recv_msg<M: WireMessage>(&mut self) -> Result<M, TransportError> {
        match self.recv::<M>().await? {
            Incoming::Message(m) => Ok(m),
            Incoming::Data(_) => Err(ProtoError::Unexpected {
                got: "data".into(),
                state: "waiting for a message".into(),
            }
            .into()),
        }
    }

    /// Gives the stream back, for protocols that continue with raw bytes (the page
    /// channel).
    pub fn into_stream(self) -> S {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::ControlRequest;

    #[tokio::test]
    async fn messages_and_data_cross_a_pipe() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut ca = Conn::new(a, "a".into(), 1);
        let mut cb = Conn::new(b, "b".into(), 1);
        let big = vec![9u8; DATA_CHUNK + 10];
        let writer = tokio::spawn(async move {
            ca.send(&ControlRequest::Ping).await.unwrap();
            ca.send_data(&big).await.unwrap();
            ca
        });
        assert!(matches!(
            cb.recv::<ControlRequest>().await.unwrap(),
            Incoming::Message(ControlRequest::Ping)
        ));
        let mut total = 0;
        while total < DATA_CHUNK + 10 {
            match cb.recv::<ControlRequest>().await.unwrap() {
                Incoming::Data(d) => total += d.len(),
                Incoming::Message(m) => panic!("unexpected {m:?}"),
            }
        }
        let ca = writer.await.unwrap();
        assert_eq!(ca.bytes_sent(), cb.bytes_received());
        drop(ca);
        assert!(matches!(
            cb.recv::<ControlRequest>().await,
            Err(TransportError::Closed)
        ));
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error_not_a_panic() {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut cb = Conn::new(b, "b".into(), 1);
        a.write_all(&[0xff; 64]).await.unwrap();
        assert!(matches!(
            cb.recv::<ControlRequest>().await,
            Err(TransportError::Proto(_))
        ));
    }
}
