//! Mutual TLS: every TCP connection between ferry processes, when configured.
//!
//! Each host holds a certificate signed by the deployment's own CA (`ferry certs`). Both
//! ends of a connection present theirs; each refuses a peer whose certificate its CA did
//! not sign. The client checks the server's certificate against the address it dialled
//! (an IP address in the certificate's names); the server checks that the host name a
//! peer announces in the ferry handshake is one of its certificate's names. The files are
//! checked once, at start, and every problem names the file at fault.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::TransportError;

/// Where a host's TLS files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate peers must be signed by.
    pub ca: PathBuf,
    /// This host's certificate.
    pub cert: PathBuf,
    /// This host's private key (mode 0600).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `ferry certs issue NAME --dir DIR` writes.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
        }
    }
}

/// A host's loaded and checked TLS identity. Holds no secret in its `Debug` output.
#[derive(Clone)]
pub struct Tls {
    pub(crate) client: Arc<ClientConfig>,
    pub(crate) server: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(<identity>)")
    }
}

fn bad(path: &Path, detail: impl Into<String>) -> TransportError {
    TransportError::Tls {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Largest PEM file ferry reads.
const MAX_PEM: u64 = 1 << 20;

fn read_pem(path: &Path) -> Result<Vec<u8>, TransportError> {
    let meta = std::fs::metadata(path).map_err(|e| bad(path, format!("cannot read it: {e}")))?;
    if meta.len() > MAX_PEM {
        return Err(bad(path, "it is too large for a PEM file"));
    }
    std::fs::read(path).map_err(|e| bad(path, format!("cannot read it: {e}")))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem = read_pem(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(path, format!("it is not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, "it holds no PEM certificate"));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    use std::os::unix::fs::PermissionsExt;
    let pem = read_pem(path)?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        return Err(bad(
            path,
            "the private key is readable by group or others; run 'chmod 600' on it",
        ));
    }
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad(path, format!("it holds no private key: {e}")))
}

/// Whether a certificate is valid for `name` (a DNS name or an IP address).
pub(crate) fn valid_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(sn) = ServerName::try_from(name.to_string()) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&sn).is_ok()
}

/// TLS 1.3 only, AES-128-GCM first: pages are the bulk of what ferry sends, and it is
/// the fastest of the suites on CPUs with AES instructions.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    })
}

impl Tls {
    /// Loads and checks a host's files: readable, well-formed, the key private and
    /// matching the certificate, and the certificate signed by the CA and valid now.
    pub fn load(files: &TlsFiles) -> Result<Self, TransportError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = certs(&files.ca)?;
        let chain = certs(&files.cert)?;
        let key = key(&files.key)?;
        let unusable_ca =
            |e: &dyn std::fmt::Display| bad(&files.ca, format!("not a usable CA certificate: {e}"));
        let mismatch = |e: rustls::Error| {
            bad(
                &files.key,
                format!(
                    "it does not match the certificate in {} ({e})",
                    files.cert.display()
                ),
            )
        };
        let mut roots = RootCertStore::empty();
        for c in &ca {
            roots.add(c.clone()).map_err(|e| unusable_ca(&e))?;
        }
        let roots = Arc::new(roots);
        let client_verifier = WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(|e| unusable_ca(&e))?;
        // The host's own certificate must pass the check its peers will make.
        client_verifier
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map_err(|e| {
                bad(
                    &files.cert,
                    format!(
                        "it does not verify against the CA in {} ({e}); issue it again with 'ferry certs issue'",
                        files.ca.display()
                    ),
                )
            })?;
        let provider = provider();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| bad(&files.cert, e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(mismatch)?;
        let server_verifier = WebPkiServerVerifier::builder(roots)
            .build()
            .map_err(|e| unusable_ca(&e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| bad(&files.cert, e.to_string()))?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain, key)
            .map_err(mismatch)?;
        Ok(Self {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }

    /// Connects TLS over `tcp`, checking the server's certificate against `ip`.
    pub(crate) async fn connect(
        &self,
        ip: IpAddr,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::TlsStream<tokio::net::TcpStream>, TransportError> {
        let connector = tokio_rustls::TlsConnector::from(self.client.clone());
        let name = ServerName::IpAddress(ip.into());
        connector
            .connect(name, tcp)
            .await
            .map(tokio_rustls::TlsStream::Client)
            .map_err(|e| {
                TransportError::AuthFailed(format!("the TLS handshake with {ip} failed: {e}"))
            })
    }

    /// Accepts TLS over `tcp`: the client must present a certificate the CA signed.
    pub(crate) async fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::TlsStream<tokio::net::TcpStream>, TransportError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        acceptor
            .accept(tcp)
            .await
            .map(tokio_rustls::TlsStream::Server)
            .map_err(|e| TransportError::AuthFailed(format!("the TLS handshake failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use ferry_proto::Role;

    use super::*;
    use crate::certs::{init_ca, issue, issue_operator};
    use crate::{accept_tcp, connect, ClientHello, Credentials, Endpoint, Secret};

    const LO: [IpAddr; 1] = [IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];

    fn ca(dir: &Path) -> PathBuf {
        init_ca(dir, false).unwrap();
        dir.to_path_buf()
    }

    fn creds(dir: &Path, host: &str) -> Credentials {
        let f = issue(dir, host, &LO, true).unwrap();
        Credentials {
            tls: Some(Tls::load(&f).unwrap()),
            secret: None,
            accept_from: None,
        }
    }

    fn operator(dir: &Path, name: &str) -> Credentials {
        let f = issue_operator(dir, name, true).unwrap();
        Credentials {
            tls: Some(Tls::load(&f).unwrap()),
            secret: None,
            accept_from: None,
        }
    }

    fn hello(host: &str, role: Role) -> ClientHello {
        ClientHello {
            role,
            host: host.into(),
            session: None,
        }
    }

    /// Serves one connection with `server`; returns the server's result and the client's.
    async fn exchange(
        server: Credentials,
        client: Credentials,
        hello: ClientHello,
    ) -> (Result<String, String>, Result<crate::Conn, String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ep = Endpoint::Tcp(l.local_addr().unwrap());
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            accept_tcp(s, "server", &server)
                .await
                .map(|a| a.conn.peer_host().to_string())
                .map_err(|e| e.to_string())
        });
        let c = connect(&ep, hello, &client)
            .await
            .map_err(|e| e.to_string());
        (srv.await.unwrap(), c)
    }

    #[tokio::test]
    async fn peers_signed_by_the_ca_talk_and_others_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let (s, c) = exchange(
            creds(&dir, "server"),
            creds(&dir, "a"),
            hello("a", Role::Peer),
        )
        .await;
        assert_eq!(s.unwrap(), "a");
        assert!(c.is_ok());

        // A client whose certificate another CA signed.
        let other = tempfile::tempdir().unwrap();
        let odir = ca(other.path());
        let (s, c) = exchange(
            creds(&dir, "server"),
            creds(&odir, "a"),
            hello("a", Role::Peer),
        )
        .await;
        assert!(s.is_err() && c.is_err(), "{s:?}");
        // A server whose certificate another CA signed.
        let (s, c) = exchange(
            creds(&odir, "server"),
            creds(&dir, "a"),
            hello("a", Role::Peer),
        )
        .await;
        assert!(s.is_err(), "{s:?}");
        assert!(c.unwrap_err().contains("TLS handshake"));
    }

    #[tokio::test]
    async fn a_peer_must_announce_a_name_its_certificate_holds() {
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let (s, c) = exchange(
            creds(&dir, "server"),
            creds(&dir, "c"),
            hello("a", Role::Peer),
        )
        .await;
        assert!(s.unwrap_err().contains("not valid for host 'a'"));
        assert!(c.is_err());
    }

    #[tokio::test]
    async fn hosts_migrate_and_operators_control_and_neither_does_both() {
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let (s, c) = exchange(
            creds(&dir, "server"),
            operator(&dir, "alice"),
            hello("cli-1", Role::Control),
        )
        .await;
        assert!(s.is_ok() && c.is_ok(), "{s:?}");
        // A host certificate asks for control.
        let (s, c) = exchange(
            creds(&dir, "server"),
            creds(&dir, "a"),
            hello("cli-1", Role::Control),
        )
        .await;
        assert!(s.unwrap_err().contains("cannot control"));
        assert!(c.unwrap_err().contains("operator certificate"));
        // An operator certificate passes itself off as a host, under any name.
        for role in [Role::Peer, Role::Pages, Role::UrgentPages] {
            for name in ["a", "alice", "urn:ferry:operator:alice"] {
                let (s, c) = exchange(
                    creds(&dir, "server"),
                    operator(&dir, "alice"),
                    hello(name, role),
                )
                .await;
                assert!(s.unwrap_err().contains("not act as a host"), "{role:?}");
                assert!(c.is_err());
            }
        }
        // An operator certificate cannot serve: it is for client authentication only.
        let (s, c) = exchange(
            operator(&dir, "alice"),
            creds(&dir, "a"),
            hello("a", Role::Peer),
        )
        .await;
        assert!(s.is_err() && c.unwrap_err().contains("TLS handshake"));
    }

    #[tokio::test]
    async fn an_agent_with_an_allow_list_takes_migrations_from_those_hosts_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let only_a = || Credentials {
            accept_from: Some(vec!["a".into()]),
            ..creds(&dir, "server")
        };
        let (s, c) = exchange(only_a(), creds(&dir, "a"), hello("a", Role::Peer)).await;
        assert!(s.is_ok() && c.is_ok(), "{s:?}");
        let (s, c) = exchange(only_a(), creds(&dir, "c"), hello("c", Role::Pages)).await;
        assert!(s.unwrap_err().contains("not among the peers"));
        assert!(c.unwrap_err().contains("--accept-from"));
        // Operators are not peers: the list does not concern them.
        let (s, _) = exchange(
            only_a(),
            operator(&dir, "alice"),
            hello("cli", Role::Control),
        )
        .await;
        assert!(s.is_ok(), "{s:?}");
    }

    #[tokio::test]
    async fn certificates_are_not_replaced_without_force_and_keys_stay_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let f = issue(&dir, "a", &LO, false).unwrap();
        let before = std::fs::read(&f.key).unwrap();
        let e = issue(&dir, "a", &LO, false).unwrap_err().to_string();
        assert!(e.contains("--force"), "{e}");
        assert_eq!(std::fs::read(&f.key).unwrap(), before);
        std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        issue(&dir, "a", &LO, true).unwrap();
        let mode = std::fs::metadata(&f.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(std::fs::read(&f.key).unwrap(), before);
        let o = issue_operator(&dir, "alice", false).unwrap();
        assert!(o.cert.ends_with("operator-alice.pem"));
        assert!(issue_operator(&dir, "alice", false).is_err());
        assert!(issue_operator(&dir, "a/b", false).is_err());
    }

    #[tokio::test]
    async fn a_server_certificate_must_name_the_address_dialled() {
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let f = issue(&dir, "server", &["10.9.9.9".parse().unwrap()], true).unwrap();
        let server = Credentials {
            tls: Some(Tls::load(&f).unwrap()),
            secret: None,
            accept_from: None,
        };
        let (_, c) = exchange(server, creds(&dir, "a"), hello("a", Role::Peer)).await;
        assert!(c.unwrap_err().contains("TLS handshake"));
    }

    #[tokio::test]
    async fn tcp_without_tls_is_refused_by_clients_and_servers() {
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        // A client with only a secret does not even dial.
        let plain = Credentials {
            tls: None,
            secret: Some(Secret::new(vec![1; 32]).unwrap()),
            accept_from: None,
        };
        let ep = Endpoint::Tcp("127.0.0.1:9".parse().unwrap());
        let e = connect(&ep, hello("a", Role::Peer), &plain)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("mutual TLS only"), "{e}");
        // A server with only a secret accepts no one.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            accept_tcp(s, "server", &plain).await.map(|_| ())
        });
        let _c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let e = srv.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("mutual TLS only"), "{e}");
        // A client speaking ferry in the clear to a TLS server is told what it needs.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = creds(&dir, "server");
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            accept_tcp(s, "server", &server).await.map(|_| ())
        });
        let c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let e = crate::handshake::client_handshake(c, hello("a", Role::Peer), None)
            .await
            .unwrap_err();
        assert!(srv.await.unwrap().is_err());
        assert!(e.to_string().contains("mutual TLS only"), "{e}");
        // A TLS client meeting a server that speaks ferry in the clear refuses it.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ep = Endpoint::Tcp(l.local_addr().unwrap());
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let auth = crate::Auth::Secret(Secret::new(vec![1; 32]).unwrap());
            let _ = crate::accept(s, "server", &auth, None).await;
        });
        let e = connect(&ep, hello("a", Role::Peer), &creds(&dir, "a"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("TLS handshake"), "{e}");
    }

    #[tokio::test]
    async fn tls_and_a_secret_together_need_both() {
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let with = |c: Credentials, b: u8| Credentials {
            secret: Some(Secret::new(vec![b; 32]).unwrap()),
            ..c
        };
        let (s, c) = exchange(
            with(creds(&dir, "server"), 1),
            with(creds(&dir, "a"), 1),
            hello("a", Role::Peer),
        )
        .await;
        assert!(s.is_ok() && c.is_ok());
        let (s, c) = exchange(
            with(creds(&dir, "server"), 1),
            with(creds(&dir, "a"), 2),
            hello("a", Role::Peer),
        )
        .await;
        assert!(s.is_err() && c.is_err());
    }

    /// Both ends of a TLS page channel, as the plain blocking descriptors the page threads
    /// use: (client's, server's).
    async fn page_channel(dir: &Path) -> (UnixStream, UnixStream) {
        let (server, client) = (creds(dir, "server"), creds(dir, "a"));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ep = Endpoint::Tcp(l.local_addr().unwrap());
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let acc = accept_tcp(s, "server", &server).await.unwrap();
            acc.conn.into_stream().into_blocking_fd().unwrap()
        });
        let c = connect(&ep, hello("a", Role::Pages), &client)
            .await
            .unwrap();
        let cfd = c.into_stream().into_blocking_fd().unwrap();
        let sfd = srv.await.unwrap();
        (UnixStream::from(cfd), UnixStream::from(sfd))
    }

    #[tokio::test]
    async fn page_channels_over_tls_carry_bytes_both_ways_through_a_plain_descriptor() {
        let d = tempfile::tempdir().unwrap();
        let (mut w, mut r) = page_channel(&ca(d.path())).await;
        let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let got = tokio::task::spawn_blocking(move || {
            let writer = std::thread::spawn(move || {
                w.write_all(&data).unwrap();
                w.shutdown(std::net::Shutdown::Write).unwrap();
                let mut back = String::new();
                w.read_to_string(&mut back).unwrap();
                back
            });
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            r.write_all(b"ok").unwrap();
            drop(r);
            (buf, writer.join().unwrap())
        })
        .await
        .unwrap();
        assert!(got.0 == expect, "the bytes arrive intact");
        assert_eq!(got.1, "ok");
    }

    /// How fast pages cross a TLS page channel on this machine (run by hand, in release).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn relay_speed() {
        let d = tempfile::tempdir().unwrap();
        let (mut w, mut r) = page_channel(&ca(d.path())).await;
        let total: usize = 1 << 30;
        let t = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            let writer = std::thread::spawn(move || {
                let buf = vec![7u8; 1 << 20];
                for _ in 0..(total >> 20) {
                    w.write_all(&buf).unwrap();
                }
            });
            let mut buf = vec![0u8; 1 << 20];
            let mut n = 0;
            while n < total {
                n += r.read(&mut buf).unwrap();
            }
            writer.join().unwrap();
        })
        .await
        .unwrap();
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "1 GiB through a TLS page channel: {s:.2} s, {:.0} MB/s",
            1073.7 / s
        );
    }

    #[test]
    fn bad_files_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let f = issue(&dir, "a", &LO, true).unwrap();
        assert!(Tls::load(&f).is_ok());
        // The key of another certificate.
        let g = issue(&dir, "b", &LO, true).unwrap();
        let mixed = TlsFiles {
            key: g.key.clone(),
            ..f.clone()
        };
        let e = Tls::load(&mixed).unwrap_err().to_string();
        assert!(
            e.contains("b-key.pem") && e.contains("does not match"),
            "{e}"
        );
        // A certificate another CA signed.
        let other = tempfile::tempdir().unwrap();
        let o = issue(&ca(other.path()), "a", &LO, true).unwrap();
        let e = Tls::load(&TlsFiles {
            ca: f.ca.clone(),
            ..o
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!("{}", other.path().join("a.pem").display())),
            "{e}"
        );
        assert!(e.contains("does not verify"), "{e}");
        // Not PEM, missing, world-readable key.
        std::fs::write(d.path().join("junk.pem"), "hello").unwrap();
        let e = Tls::load(&TlsFiles {
            ca: d.path().join("junk.pem"),
            ..f.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("junk.pem"), "{e}");
        let e = Tls::load(&TlsFiles {
            cert: d.path().join("missing.pem"),
            ..f.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Tls::load(&f).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        // A CA is not replaced by accident.
        assert!(init_ca(&dir, false)
            .unwrap_err()
            .to_string()
            .contains("--force"));
    }

    #[test]
    fn identities_are_never_printed() {
        let d = tempfile::tempdir().unwrap();
        let dir = ca(d.path());
        let c = creds(&dir, "a");
        let text = format!("{c:?}");
        assert!(
            !text.contains("PRIVATE") && !text.contains("BEGIN"),
            "{text}"
        );
    }
}
