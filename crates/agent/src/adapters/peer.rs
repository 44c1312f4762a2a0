//! The peer port over ferry's transport: a framed, authenticated connection (mutual TLS
//! between agents) carrying one message family each way.

use async_trait::async_trait;
use ferry_engine::ports::peer::{Dialer, Frame, Link, LinkError, ToDest};
use ferry_proto::{Role, WireMessage};
use ferry_transport::{
    connect, ClientHello, Conn, Credentials, Endpoint, Incoming, TransportError,
};

fn link_err(e: TransportError) -> LinkError {
    match e {
        TransportError::Closed => LinkError::Closed,
        other => LinkError::Broken(other.to_string()),
    }
}

/// A transport connection as a link.
#[derive(Debug)]
pub struct ConnLink(pub Conn);

#[async_trait]
impl<Out: WireMessage, In: WireMessage> Link<Out, In> for ConnLink {
    async fn send(&mut self, msg: &Out) -> Result<(), LinkError> {
        self.0.send(msg).await.map_err(link_err)
    }

    async fn send_data(&mut self, data: &[u8]) -> Result<(), LinkError> {
        self.0.send_data(data).await.map_err(link_err)
    }

    async fn recv(&mut self) -> Result<Frame<In>, LinkError> {
        match self.0.recv::<In>().await.map_err(link_err)? {
            Incoming::Message(m) => Ok(Frame::Message(m)),
            Incoming::Data(d) => Ok(Frame::Data(d)),
        }
    }

    fn bytes_sent(&self) -> u64 {
        self.0.bytes_sent()
    }

    fn peer_host(&self) -> &str {
        self.0.peer_host()
    }
}

/// The destination agent at `dest`, reached as this host.
#[derive(Debug, Clone)]
pub struct PeerDialer {
    pub dest: Endpoint,
    pub host: String,
    pub creds: Credentials,
}

impl PeerDialer {
    /// A connection for `role` (the page channels name their session).
    pub async fn dial(&self, role: Role, session: Option<String>) -> Result<Conn, TransportError> {
        let hello = ClientHello {
            role,
            host: self.host.clone(),
            session,
        };
        connect(&self.dest, hello, &self.creds).await
    }
}

#[async_trait]
impl Dialer for PeerDialer {
    async fn connect(&self) -> Result<Box<ToDest>, LinkError> {
        let conn = self.dial(Role::Peer, None).await.map_err(link_err)?;
        Ok(Box::new(ConnLink(conn)))
    }

    fn describe(&self) -> String {
        self.dest.to_string()
    }
}
