//! The opening of every connection: preamble, then mutual authentication.

use std::time::Duration;

use ferry_proto::{negotiate, Handshake, Preamble, Role, WireMessage, PREAMBLE_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Auth, Conn, Credentials, Endpoint, Identity, Secret, Stream, TransportError};

/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client announces.
#[derive(Debug, Clone)]
pub struct ClientHello {
    pub role: Role,
    pub host: String,
    pub session: Option<String>,
}

/// A connection a server accepted.
#[derive(Debug)]
pub struct Accepted<S = Stream> {
    pub conn: Conn<S>,
    pub role: Role,
    pub session: Option<String>,
    /// Who the server accepted: what it may ask for follows from this and `role`.
    pub identity: Identity,
}

fn nonce() -> Result<Vec<u8>, TransportError> {
    let mut n = vec![0u8; 32];
    getrandom::getrandom(&mut n)
        .map_err(|e| TransportError::AuthFailed(format!("no randomness: {e}")))?;
    Ok(n)
}

fn unhex(s: &str, what: &str) -> Result<Vec<u8>, TransportError> {
    let v = hex::decode(s).map_err(|_| TransportError::AuthFailed(format!("{what} is not hex")))?;
    if v.len() != 32 {
        return Err(TransportError::AuthFailed(format!(
            "{what} has the wrong length"
        )));
    }
    Ok(v)
}

async fn exchange_preambles<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    ours: Preamble,
) -> Result<u16, TransportError> {
    s.write_all(&ours.encode()).await?;
    s.flush().await?;
    let mut buf = [0u8; PREAMBLE_LEN];
    s.read_exact(&mut buf).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            TransportError::Closed
        } else {
            e.into()
        }
    })?;
    Ok(negotiate(ours, Preamble::decode(&buf)?)?)
}

/// Connects to `endpoint` and authenticates. Over TCP with a TLS identity, mutual TLS
/// comes first (the server's certificate must be valid for the address dialled). With a
/// secret, the server must prove it holds the same one. A Unix socket needs neither: the
/// server trusts local root.
pub async fn connect(
    endpoint: &Endpoint,
    hello: ClientHello,
    creds: &Credentials,
) -> Result<Conn, TransportError> {
    if matches!(endpoint, Endpoint::Tcp(_)) && creds.tls.is_none() {
        return Err(TransportError::AuthFailed(format!(
            "ferry reaches {endpoint} over TCP with mutual TLS only: give --tls-ca, --tls-cert and --tls-key (for a CLI, an operator certificate from 'ferry certs issue-operator NAME')"
        )));
    }
    let work = async {
        let mut stream = endpoint.connect().await?;
        if let (Stream::Tcp(_), Some(tls), Endpoint::Tcp(addr)) = (&stream, &creds.tls, endpoint) {
            let Stream::Tcp(tcp) = stream else {
                unreachable!("matched above")
            };
            stream = Stream::Tls(Box::new(tls.connect(addr.ip(), tcp).await?));
        }
        let ours = match endpoint {
            Endpoint::Tcp(_) => Preamble::announced(),
            Endpoint::Unix(_) => Preamble::default(),
        };
        client_handshake_with(stream, hello, creds.secret.as_ref(), ours).await
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .map_err(|_| TransportError::Timeout(HANDSHAKE_TIMEOUT, "the handshake"))?
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The server side over TCP: mutual TLS when this host has a TLS identity, then the ferry
/// handshake. A client that does not speak TLS to a host that requires it is told so.
pub async fn accept_tcp(
    tcp: tokio::net::TcpStream,
    my_host: &str,
    creds: &Credentials,
) -> Result<Accepted, TransportError> {
    crate::endpoint::tune_tcp(&tcp);
    let work = async {
        let Some(tls) = &creds.tls else {
            return Err(TransportError::AuthFailed(
                "this agent has no TLS identity, and TCP peers are accepted over mutual TLS only"
                    .into(),
            ));
        };
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await?;
        if n == 0 {
            return Err(TransportError::Closed);
        }
        if first[0] != TLS_HANDSHAKE {
            let mut s = Stream::Tcp(tcp);
            let _ = exchange_preambles(&mut s, Preamble::announced()).await;
            let reason = format!("{my_host} accepts TCP peers over mutual TLS only; give ferry the CA, certificate and key (--tls-ca, --tls-cert, --tls-key)");
            let mut conn = Conn::new(s, String::new(), 0);
            let _ = conn.recv_msg::<Handshake>().await;
            return Err(refuse(&mut conn, reason).await);
        }
        let stream = tls.accept(tcp).await?;
        let peer_cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned());
        let auth = Auth::Tls {
            peer_cert,
            secret: creds.secret.clone(),
            accept_from: creds.accept_from.clone(),
        };
        server_handshake(Stream::Tls(Box::new(stream)), my_host, &auth, None).await
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .map_err(|_| TransportError::Timeout(HANDSHAKE_TIMEOUT, "the handshake"))?
}

/// The client side of the handshake over any stream.
#[cfg(test)]
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    hello: ClientHello,
    secret: Option<&Secret>,
) -> Result<Conn<S>, TransportError> {
    client_handshake_with(stream, hello, secret, Preamble::default()).await
}

async fn client_handshake_with<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    hello: ClientHello,
    secret: Option<&Secret>,
    ours: Preamble,
) -> Result<Conn<S>, TransportError> {
    let version = exchange_preambles(&mut stream, ours).await?;
    let mut conn = Conn::new(stream, String::new(), version);
    let nc = nonce()?;
    conn.send(&Handshake::Hello {
        role: hello.role,
        host: hello.host,
        nonce: hex::encode(&nc),
        session: hello.session,
    })
    .await?;
    let server_host = match conn.recv_msg::<Handshake>().await? {
        Handshake::Welcome if secret.is_none() => String::from("local agent"),
        Handshake::Welcome => {
            return Err(TransportError::AuthFailed(
                "the server did not prove it holds the shared secret".into(),
            ))
        }
        Handshake::Refused { reason } => return Err(TransportError::Refused(reason)),
        Handshake::Challenge { host, nonce, proof } => {
            let secret = secret.ok_or_else(|| {
                TransportError::AuthFailed(
                    "the server asks for the shared secret; pass --secret-file".into(),
                )
            })?;
            let ns = unhex(&nonce, "the server's nonce")?;
            let proof =
                hex::decode(&proof).map_err(|_| TransportError::AuthFailed("bad proof".into()))?;
            if !secret.verify("server", &nc, &ns, &proof) {
                return Err(TransportError::AuthFailed(format!(
                    "{host} does not hold the same shared secret"
                )));
            }
            conn.send(&Handshake::Proof {
                proof: hex::encode(secret.proof("client", &ns, &nc)),
            })
            .await?;
            match conn.recv_msg::<Handshake>().await? {
                Handshake::Welcome => host,
                Handshake::Refused { reason } => return Err(TransportError::Refused(reason)),
                other => {
                    return Err(TransportError::AuthFailed(format!(
                        "unexpected {} during the handshake",
                        other.name()
                    )))
                }
            }
        }
        other => {
            return Err(TransportError::AuthFailed(format!(
                "unexpected {} during the handshake",
                other.name()
            )))
        }
    };
    Ok(Conn::new(conn.into_stream(), server_host, version))
}

/// The server side: refuses anyone who cannot authenticate.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    my_host: &str,
    auth: &Auth,
    peer_uid: Option<u32>,
) -> Result<Accepted<S>, TransportError> {
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        server_handshake(stream, my_host, auth, peer_uid),
    )
    .await
    .map_err(|_| TransportError::Timeout(HANDSHAKE_TIMEOUT, "the handshake"))?
}

/// Tells the client why it is refused (if it still listens), and returns that reason as
/// the server's error.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    reason: String,
) -> TransportError {
    let _ = conn
        .send(&Handshake::Refused {
            reason: reason.clone(),
        })
        .await;
    TransportError::AuthFailed(reason)
}

async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    my_host: &str,
    auth: &Auth,
    peer_uid: Option<u32>,
) -> Result<Accepted<S>, TransportError> {
    let ours = match auth {
        Auth::PeerCredentials => Preamble::default(),
        _ => Preamble::announced(),
    };
    let version = exchange_preambles(&mut stream, ours).await?;
    let mut conn = Conn::new(stream, String::new(), version);
    let (role, host, nonce_c, session) = match conn.recv_msg::<Handshake>().await? {
        Handshake::Hello {
            role,
            host,
            nonce,
            session,
        } => (role, host, nonce, session),
        other => {
            let reason = format!("expected hello, got {}", other.name());
            return Err(refuse(&mut conn, reason).await);
        }
    };
    let secret = match auth {
        Auth::Secret(s) => Some(s),
        Auth::Tls { secret, .. } => secret.as_ref(),
        Auth::PeerCredentials => None,
    };
    let identity = match auth {
        Auth::Tls {
            peer_cert,
            accept_from,
            ..
        } => match crate::identity::over_tls(role, &host, peer_cert.as_ref())
            .and_then(|id| crate::identity::allowed(id, accept_from.as_deref(), my_host))
        {
            Ok(id) => id,
            Err(reason) => return Err(refuse(&mut conn, reason).await),
        },
        Auth::PeerCredentials if peer_uid != Some(0) => {
            let reason = "only root may use this agent's local socket".to_string();
            return Err(refuse(&mut conn, reason).await);
        }
        Auth::PeerCredentials => Identity::LocalRoot,
        Auth::Secret(_) => Identity::SecretHolder,
    };
    if let Some(secret) = secret {
        let nc = match unhex(&nonce_c, "the client's nonce") {
            Ok(n) => n,
            Err(e) => {
                let _ = conn
                    .send(&Handshake::Refused {
                        reason: e.to_string(),
                    })
                    .await;
                return Err(e);
            }
        };
        let ns = nonce()?;
        conn.send(&Handshake::Challenge {
            host: my_host.to_string(),
            nonce: hex::encode(&ns),
            proof: hex::encode(secret.proof("server", &nc, &ns)),
        })
        .await?;
        let ok = match conn.recv_msg::<Handshake>().await? {
            Handshake::Proof { proof } => {
                hex::decode(proof).is_ok_and(|p| secret.verify("client", &ns, &nc, &p))
            }
            _ => false,
        };
        if !ok {
            let reason = "authentication failed: the shared secrets differ".to_string();
            return Err(refuse(&mut conn, reason).await);
        }
    }
    conn.send(&Handshake::Welcome).await?;
    Ok(Accepted {
        conn: Conn::new(conn.into_stream(), host, version),
        role,
        session,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> Secret {
        Secret::new(vec![b; 32]).unwrap()
    }

    fn hello() -> ClientHello {
        ClientHello {
            role: Role::Peer,
            host: "a".into(),
            session: None,
        }
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ways() {
        let (a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { accept(b, "b", &Auth::Secret(secret(1)), None).await });
        let conn = client_handshake(a, hello(), Some(&secret(1)))
            .await
            .unwrap();
        assert_eq!(conn.peer_host(), "b");
        let acc = server.await.unwrap().unwrap();
        assert_eq!(acc.role, Role::Peer);
        assert_eq!(acc.conn.peer_host(), "a");
    }

    #[tokio::test]
    async fn a_different_secret_is_refused_on_both_sides() {
        let (a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { accept(b, "b", &Auth::Secret(secret(1)), None).await });
        let err = client_handshake(a, hello(), Some(&secret(2)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("same shared secret"), "{err}");
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_client_without_the_secret_never_gets_past_hello() {
        let (a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { accept(b, "b", &Auth::Secret(secret(1)), None).await });
        let err = client_handshake(a, hello(), None).await.unwrap_err();
        assert!(err.to_string().contains("--secret-file"), "{err}");
        drop(err);
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_client_with_a_secret_refuses_an_unauthenticated_server() {
        let (a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { accept(b, "b", &Auth::PeerCredentials, Some(0)).await });
        let err = client_handshake(a, hello(), Some(&secret(1)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not prove"), "{err}");
        let _ = server.await;
    }

    #[tokio::test]
    async fn local_socket_trusts_root_only() {
        let (a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { accept(b, "b", &Auth::PeerCredentials, Some(1000)).await });
        let err = client_handshake(a, hello(), None).await.unwrap_err();
        assert!(err.to_string().contains("only root"), "{err}");
        assert!(server.await.unwrap().is_err());
        let (a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { accept(b, "b", &Auth::PeerCredentials, Some(0)).await });
        client_handshake(a, hello(), None).await.unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_non_ferry_peer_is_refused() {
        let (mut a, b) = tokio::io::duplex(4096);
        let server =
            tokio::spawn(async move { accept(b, "b", &Auth::Secret(secret(1)), None).await });
        a.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let err = server.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("not a ferry process"), "{err}");
    }
}
