//! A container moved to a new address with its peers (`ferry migrate --new-ip --peers`):
//! the migration waits, frozen, once its images are at the destination; each peer's
//! agent checkpoints the peer in place, points its sockets at the new address and
//! restores it; then the container restores at the new address, and its connections
//! carry on. If a peer cannot follow, the peers already readdressed are pointed back at
//! the old address and the container runs at the source again, as it was.

use std::net::Ipv4Addr;

use ferry_proto::{ControlReply, ControlRequest, WireMessage, RESTORE_READY_PHASE};
use ferry_transport::{Credentials, Endpoint};
use ferry_types::{MigrateOptions, Report};

use crate::{client, ControllerError};

/// A container whose connections to the moving one must follow it, and its agent.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub agent: Endpoint,
}

/// What readdressing one peer gave.
type PeerResult = (String, Result<(u32, f64), ControllerError>);

async fn readdress_one(
    peer: &Peer,
    creds: &Credentials,
    from: Ipv4Addr,
    to: Ipv4Addr,
) -> Result<(u32, f64), ControllerError> {
    let msg = ControlRequest::Readdress {
        container: peer.name.clone(),
        from: from.to_string(),
        to: to.to_string(),
    };
    match client::ask(&peer.agent, creds, &msg).await? {
        ControlReply::Readdressed {
            sockets,
            downtime_ms,
        } => Ok((sockets, downtime_ms)),
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}

/// Readdresses every peer at once.
async fn readdress_all(
    peers: &[Peer],
    creds: &Credentials,
    from: Ipv4Addr,
    to: Ipv4Addr,
) -> Vec<PeerResult> {
    let tasks: Vec<_> = peers
        .iter()
        .map(|p| {
            let (p, creds) = (p.clone(), creds.clone());
            tokio::spawn(async move { readdress_one(&p, &creds, from, to).await })
        })
        .collect();
    let mut out = Vec::new();
    for (p, t) in peers.iter().zip(tasks) {
        let r = t
            .await
            .unwrap_or_else(|e| Err(ControllerError::Failed(e.to_string())));
        out.push((p.name.clone(), r));
    }
    out
}

/// The container's address at its source agent.
async fn current_address(
    source: &Endpoint,
    creds: &Credentials,
    container: &str,
    new_ip: &str,
) -> Result<ferry_types::NewAddress, ControllerError> {
    let items = crate::migrate::list(source, creds).await?;
    let net = items
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.net.clone())
        .ok_or_else(|| ControllerError::NoAddress(container.to_string()))?;
    Ok(net.readdressed(new_ip)?)
}

/// Moves `container` to `options.new_ip` at `dest`, with `peers` following it.
pub async fn migrate_with_peers(
    source: &Endpoint,
    creds: &Credentials,
    container: &str,
    dest: &str,
    mut options: MigrateOptions,
    peers: &[Peer],
    mut on_progress: impl FnMut(&ControlReply),
) -> Result<Report, ControllerError> {
    let new_ip = options
        .new_ip
        .clone()
        .ok_or(ControllerError::PeersWithoutNewIp)?;
    let addr = current_address(source, creds, container, &new_ip).await?;
    options.hold_restore = true;
    let mut conn = client::source(source, creds).await?;
    let lost = ControllerError::SourceLost;
    let msg = ControlRequest::Migrate {
        container: container.to_string(),
        dest: dest.to_string(),
        options,
    };
    conn.send(&msg).await.map_err(lost)?;
    let mut notes = Vec::new();
    let mut failure = None;
    let reply = loop {
        let ev = conn.recv_msg::<ControlReply>().await.map_err(lost)?;
        let ControlReply::Progress { phase, .. } = &ev else {
            break ev;
        };
        on_progress(&ev);
        if phase != RESTORE_READY_PHASE {
            continue;
        }
        let results = readdress_all(peers, creds, addr.old, addr.new).await;
        let (done, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|(_, r)| r.is_ok());
        for (name, r) in &done {
            if let Ok((n, ms)) = r {
                notes.push(format!(
                    "peer '{name}': {n} socket(s) now point at {} (stopped {ms:.1} ms)",
                    addr.new
                ));
            }
        }
        if failed.is_empty() {
            conn.send(&ControlRequest::Proceed).await.map_err(lost)?;
            continue;
        }
        let why: Vec<String> = failed
            .iter()
            .filter_map(|(n, r)| {
                r.as_ref()
                    .err()
                    .map(|e| format!("peer '{n}' cannot follow: {e}"))
            })
            .collect();
        let back: Vec<Peer> = peers
            .iter()
            .filter(|p| done.iter().any(|(n, _)| *n == p.name))
            .cloned()
            .collect();
        for (name, r) in readdress_all(&back, creds, addr.new, addr.old).await {
            if let Err(e) = r {
                notes.push(format!(
                    "peer '{name}' could not be pointed back at {}: {e}; its connection to the container is lost",
                    addr.old
                ));
            }
        }
        failure = Some(why.join("; "));
        conn.send(&ControlRequest::Ping).await.map_err(lost)?;
    };
    match client::refused(reply)? {
        ControlReply::Report { report } => {
            let mut r = *report;
            r.notes.extend(notes);
            if let Some(why) = failure {
                r.reason = Some(format!(
                    "{why}; the container runs at the source again with its address {}",
                    addr.old
                ));
            }
            Ok(r)
        }
        other => Err(ControllerError::NotAReport(other.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeAgent, Script};
    use ferry_types::{ContainerInfo, NetSpec, Outcome};

    fn db() -> ContainerInfo {
        ContainerInfo {
            name: "db".into(),
            status: "running".into(),
            pid: None,
            bundle: String::new(),
            net: Some(NetSpec {
                address: "10.0.0.1/24".into(),
                mac: ferry_types::net::mac_for("10.0.0.1".parse().unwrap()),
                gateway: None,
                pod: None,
            }),
            engine: Default::default(),
        }
    }

    fn peers(agent: &FakeAgent, names: &[&str]) -> Vec<Peer> {
        names
            .iter()
            .map(|n| Peer {
                name: n.to_string(),
                agent: agent.endpoint.clone(),
            })
            .collect()
    }

    fn options() -> MigrateOptions {
        MigrateOptions {
            new_ip: Some("10.0.0.9".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn peers_follow_while_the_container_waits_for_its_restore() {
        let agent = FakeAgent::start(Script {
            containers: vec![db()],
            ..Default::default()
        });
        let creds = Credentials::default();
        let ps = peers(&agent, &["web", "worker"]);
        let r = migrate_with_peers(&agent.endpoint, &creds, "db", "b", options(), &ps, |_| {})
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Migrated, "{r:?}");
        let n = agent.notes();
        let at = |x: &str| {
            n.iter()
                .position(|y| y == x)
                .unwrap_or_else(|| panic!("{x}: {n:?}"))
        };
        assert!(
            at("readdress web 10.0.0.1->10.0.0.9") < at("restore db"),
            "{n:?}"
        );
        assert!(
            at("readdress worker 10.0.0.1->10.0.0.9") < at("restore db"),
            "{n:?}"
        );
        assert!(
            r.notes
                .iter()
                .any(|x| x.starts_with("peer 'web': 1 socket(s) now point at 10.0.0.9")),
            "{:?}",
            r.notes
        );
    }

    #[tokio::test]
    async fn a_peer_that_cannot_follow_puts_everything_back() {
        let agent = FakeAgent::start(Script {
            containers: vec![db()],
            fail: vec!["worker".into()],
            ..Default::default()
        });
        let creds = Credentials::default();
        let ps = peers(&agent, &["web", "worker"]);
        let r = migrate_with_peers(&agent.endpoint, &creds, "db", "b", options(), &ps, |_| {})
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::RolledBack, "{r:?}");
        let reason = r.reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with("peer 'worker' cannot follow: 'worker' cannot be checkpointed"),
            "{reason}"
        );
        assert!(
            reason.ends_with("the container runs at the source again with its address 10.0.0.1"),
            "{reason}"
        );
        let n = agent.notes();
        assert!(
            n.contains(&"readdress web 10.0.0.9->10.0.0.1".to_string()),
            "web pointed back: {n:?}"
        );
        assert!(!n.contains(&"restore db".to_string()), "{n:?}");
        assert!(n.contains(&"not restored db".to_string()), "{n:?}");
    }

    #[tokio::test]
    async fn peers_need_a_new_address_that_differs() {
        let agent = FakeAgent::start(Script {
            containers: vec![db()],
            ..Default::default()
        });
        let creds = Credentials::default();
        let ps = peers(&agent, &["web"]);
        let same = MigrateOptions {
            new_ip: Some("10.0.0.1".into()),
            ..Default::default()
        };
        let e = migrate_with_peers(&agent.endpoint, &creds, "db", "b", same, &ps, |_| {})
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("already has the address 10.0.0.1"),
            "{e}"
        );
        let e = migrate_with_peers(
            &agent.endpoint,
            &creds,
            "db",
            "b",
            Default::default(),
            &ps,
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ControllerError::PeersWithoutNewIp), "{e}");
        assert!(agent.notes().is_empty(), "{:?}", agent.notes());
    }
}

/// What ferry finds of a container's connections before it moves to a new address.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Containers on the agents asked whose connections point at the old address.
    pub peers: Vec<Peer>,
    /// The container's connections to addresses no container on those agents has:
    /// they cannot follow it (`ADDR:PORT` of the far end).
    pub outside: Vec<String>,
}

async fn connections(
    agent: &Endpoint,
    creds: &Credentials,
    only: Option<&str>,
) -> Result<Vec<ferry_types::ContainerConnections>, ControllerError> {
    let msg = ControlRequest::Connections {
        container: only.map(str::to_string),
    };
    match client::ask(agent, creds, &msg).await? {
        ControlReply::Connections { items } => Ok(items),
        other => Err(ControllerError::UnexpectedAnswer(other.name())),
    }
}

fn ip_of(endpoint: &str) -> Option<Ipv4Addr> {
    endpoint.rsplit_once(':')?.0.parse().ok()
}

/// Asks every agent in `agents` which of its containers hold connections to `old`, the
/// address `container` leaves, and which of `container`'s own connections go where no
/// container of theirs is.
pub async fn discover(
    agents: &[Endpoint],
    creds: &Credentials,
    container: &str,
    old: Ipv4Addr,
) -> Result<Discovery, ControllerError> {
    let mut addresses: std::collections::HashSet<Ipv4Addr> = std::collections::HashSet::new();
    let mut held = Vec::new();
    for agent in agents {
        for c in crate::migrate::list(agent, creds).await? {
            if let Some(ip) = c
                .net
                .as_ref()
                .and_then(|n| n.address.split('/').next()?.parse().ok())
            {
                addresses.insert(ip);
            }
        }
        for c in connections(agent, creds, None).await? {
            held.push((agent.clone(), c));
        }
    }
    Ok(classify(container, old, &addresses, held))
}

/// Which containers' connections point at `old` (peers), and which of `container`'s
/// own connections go where none of `addresses` is (outside).
pub fn classify(
    container: &str,
    old: Ipv4Addr,
    addresses: &std::collections::HashSet<Ipv4Addr>,
    held: Vec<(Endpoint, ferry_types::ContainerConnections)>,
) -> Discovery {
    let mut found = Discovery::default();
    let mut own = Vec::new();
    for (agent, c) in held {
        if c.container == container {
            own.extend(c.established.into_iter().map(|(_, remote)| remote));
        } else if c.established.iter().any(|(_, r)| ip_of(r) == Some(old)) {
            found.peers.push(Peer {
                name: c.container,
                agent,
            });
        }
    }
    own.sort();
    own.dedup();
    found.outside = own
        .into_iter()
        .filter(|r| {
            ip_of(r).is_some_and(|ip| !ip.is_loopback() && ip != old && !addresses.contains(&ip))
        })
        .collect();
    found
}

#[cfg(test)]
mod discovery_tests {
    use super::*;
    use ferry_types::ContainerConnections;

    fn held(name: &str, pairs: &[(&str, &str)]) -> (Endpoint, ContainerConnections) {
        (
            Endpoint::Unix(format!("/run/{name}.sock").into()),
            ContainerConnections {
                container: name.into(),
                established: pairs
                    .iter()
                    .map(|(l, r)| (l.to_string(), r.to_string()))
                    .collect(),
            },
        )
    }

    #[test]
    fn peers_are_the_containers_connected_to_the_old_address_and_the_rest_is_outside() {
        let old: Ipv4Addr = "10.77.1.10".parse().unwrap();
        let addresses = ["10.77.1.10", "10.77.1.11", "10.77.1.12"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let d = classify(
            "db",
            old,
            &addresses,
            vec![
                held(
                    "db",
                    &[
                        ("10.77.1.10:6379", "10.77.1.11:40000"),
                        ("10.77.1.10:6379", "10.77.0.100:50000"),
                        ("127.0.0.1:6379", "127.0.0.1:41000"),
                    ],
                ),
                held("cli", &[("10.77.1.11:40000", "10.77.1.10:6379")]),
                held("web", &[("10.77.1.12:80", "10.77.0.100:51000")]),
            ],
        );
        let names: Vec<&str> = d.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cli"]);
        assert_eq!(d.outside, ["10.77.0.100:50000"]);
    }
}
