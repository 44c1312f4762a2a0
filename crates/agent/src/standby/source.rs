//! One standby round at the host that runs the container: a checkpoint that leaves it
//! running (its pause is the freeze and CRIU's dump into memory here), then the images
//! to the standby host while it runs, its pages as references where the host holds them.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ferry_containers::local::{self, CgroupFreeze, CheckpointRequest, Freeze};
use ferry_engine::ports::container::{Shipment, Subject};
use ferry_proto::{PeerReply, PeerRequest, Role};
use ferry_transport::{Conn, Endpoint};
use ferry_types::standby::StandbyRound;
use ferry_types::EngineKind;

use super::kept::Keeping;
use super::pagewire::{Encoder, PAGE, PAGES_PER_FRAME};
use super::StandbyError;
use crate::adapters::peer::PeerDialer;
use crate::state::Agent;

/// What the source remembers between rounds: the key its page hashes use, the pages the
/// standby host holds, and which checkpoint holds them.
#[derive(Debug)]
pub struct Keeper {
    pub enc: Encoder,
    pub known: Option<u64>,
}

impl Keeper {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            enc: Encoder::new()?,
            known: None,
        })
    }
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The cgroup freezer, and a note of the freeze while it lasts, so that the agent still
/// lists the container as running (a move asked for meanwhile finds it, and waits).
struct RoundFreeze<'a> {
    keeping: &'a Keeping,
    container: &'a str,
}

impl Freeze for RoundFreeze<'_> {
    fn freeze(&self, pid: u32) -> Result<(), ferry_runtime::RuntimeError> {
        self.keeping.set_frozen(self.container, true);
        let r = CgroupFreeze.freeze(pid);
        if r.is_err() {
            self.keeping.set_frozen(self.container, false);
        }
        r
    }

    fn thaw(&self, pid: u32) -> Result<(), ferry_runtime::RuntimeError> {
        let r = CgroupFreeze.thaw(pid);
        self.keeping.set_frozen(self.container, false);
        r
    }
}

/// Takes and ships one checkpoint of `container` to the agent at `dest`.
pub async fn round(
    agent: &Arc<Agent>,
    container: &str,
    dest: &Endpoint,
    keeper: &mut Keeper,
) -> Result<StandbyRound, StandbyError> {
    let _claim = agent.claim(container)?;
    let (subject, network) = crate::migrate::subject(agent, container).await?;
    if subject.found.kind() != EngineKind::Runc {
        return Err(StandbyError::Engine(subject.found.kind()));
    }
    let shipment = subject.shipment()?;
    let dir = agent.cfg.images_dir().join(format!("standby-{container}"));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let taken_unix_ms = now_unix_ms();
    let checkpoint = CheckpointRequest {
        container: container.to_string(),
        images: dir.clone(),
        leave_running: true,
        tcp_established: true,
        file_locks: false,
        network_lock: ferry_criu::features::host_network_lock(),
    };
    let shipped = async {
        let freeze = RoundFreeze {
            keeping: &agent.standbys,
            container,
        };
        let report = local::checkpoint(agent.engine.runc(), &freeze, &checkpoint)
            .await
            .map_err(|e| StandbyError::Checkpoint(e.to_string()))?;
        let paused_ms = report.downtime_ms.unwrap_or(0.0);
        let dialer = PeerDialer {
            dest: dest.clone(),
            host: agent.cfg.name.clone(),
            creds: agent.cfg.creds.clone(),
        };
        let mut conn = dialer.dial(Role::Standby, None).await?;
        let mut r = ship(
            &mut conn,
            container,
            &network.net.spec,
            &shipment,
            &dir,
            keeper,
            taken_unix_ms,
        )
        .await;
        if let Ok(r) = r.as_mut() {
            r.paused_ms = paused_ms;
            r.taken_unix_ms = taken_unix_ms;
        }
        r
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = match shipped {
        Ok(r) => r,
        Err(e) => {
            keeper.enc.forget();
            keeper.known = None;
            return Err(e);
        }
    };
    r.total_ms = ferry_types::ms(t.elapsed());
    Ok(r)
}

async fn reply(conn: &mut Conn) -> Result<PeerReply, StandbyError> {
    match conn.recv_msg::<PeerReply>().await? {
        PeerReply::Error { message } => Err(StandbyError::Refused(message)),
        other => Ok(other),
    }
}

async fn ship(
    conn: &mut Conn,
    container: &str,
    net: &ferry_types::NetSpec,
    shipment: &Shipment,
    dir: &Path,
    keeper: &mut Keeper,
    taken_unix_ms: u64,
) -> Result<StandbyRound, StandbyError> {
    conn.send(&PeerRequest::Standby {
        container: container.to_string(),
        net: net.clone(),
        digest: shipment.digest.clone(),
        known: keeper.known,
    })
    .await?;
    let PeerReply::StandbyReady { known, need_bundle } = reply(conn).await? else {
        return Err(StandbyError::Protocol(
            "the standby host did not say it was ready".into(),
        ));
    };
    if known != keeper.known {
        // It holds another checkpoint than the one this side knows of: send every page.
        keeper.enc.forget();
    }
    keeper.enc.begin();
    let before = conn.bytes_sent();
    let mut round = StandbyRound {
        container: container.to_string(),
        seq: known.unwrap_or(0) + 1,
        taken_unix_ms: 0,
        paused_ms: 0.0,
        total_ms: 0.0,
        bytes_sent: 0,
        pages: 0,
        pages_held: 0,
    };
    if need_bundle {
        for e in &shipment.entries {
            conn.send(&PeerRequest::BundleFile { entry: e.clone() })
                .await?;
            if e.content_len() > 0 {
                send_file(conn, &shipment.root.join(&e.path), e.content_len()).await?;
            }
        }
        conn.send(&PeerRequest::BundleDone).await?;
    }
    let files = ferry_engine::source::image_files(dir)
        .map_err(|e| StandbyError::Checkpoint(e.to_string()))?;
    for (name, size) in files {
        let path = dir.join(&name);
        if name.starts_with("pages-") && name.ends_with(".img") && size % PAGE as u64 == 0 {
            conn.send(&PeerRequest::StandbyPages {
                name,
                pages: size / PAGE as u64,
            })
            .await?;
            let c = send_pages(conn, &path, &mut keeper.enc).await?;
            round.pages += c.pages;
            round.pages_held += c.held;
        } else {
            conn.send(&PeerRequest::ImageFile { name, size }).await?;
            send_file(conn, &path, size).await?;
        }
    }
    conn.send(&PeerRequest::StandbyDone {
        seq: round.seq,
        taken_unix_ms,
    })
    .await?;
    match reply(conn).await? {
        PeerReply::StandbyStored { seq, .. } if seq == round.seq => {
            keeper.enc.stored();
            keeper.known = Some(seq);
        }
        _ => {
            return Err(StandbyError::Protocol(
                "the standby host did not store it".into(),
            ))
        }
    }
    round.bytes_sent = conn.bytes_sent() - before;
    Ok(round)
}

async fn send_file(conn: &mut Conn, path: &Path, size: u64) -> Result<(), StandbyError> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(StandbyError::Protocol(format!("{} shrank", path.display())));
        }
        conn.send_data(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

async fn send_pages(
    conn: &mut Conn,
    path: &Path,
    enc: &mut Encoder,
) -> Result<super::pagewire::Counts, StandbyError> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; PAGE * PAGES_PER_FRAME];
    let mut out = Vec::with_capacity(buf.len() + PAGES_PER_FRAME * 17);
    let mut total = super::pagewire::Counts::default();
    loop {
        let n = read_full(&mut f, &mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        out.clear();
        let c = enc.encode(&buf[..n - n % PAGE], &mut out);
        total.pages += c.pages;
        total.held += c.held;
        conn.send_data(&out).await?;
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}
