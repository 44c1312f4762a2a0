//! Fakes of the source's ports: the container, its network, the dialer and the page
//! channels.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use ferry_types::{Compress, PageCounters, PrecopyRound};

use super::{link, Config, Step};
use crate::dest::DestPorts;
use crate::ports::container::{ContainerError, DumpPlan, LazyDump, Shipment, Subject};
use crate::ports::host::HostSettings;
use crate::ports::network::{ContainerNetwork, NetworkError};
use crate::ports::pages::{
    DumpStream, LazyPages, PagesError, Pump, PumpTotals, Rounds, Sent, SourcePages, StreamTotals,
};
use crate::ports::peer::{Dialer, LinkError, ToDest};

fn write_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("inventory.img"), [1, 2, 3, 4]).unwrap();
    std::fs::write(dir.join("core-1.img"), [5; 64]).unwrap();
}

/// The container being moved.
pub struct FakeSubject(pub Arc<Config>);

#[async_trait]
impl Subject for FakeSubject {
    fn name(&self) -> &str {
        "redis"
    }
    fn processes(&self) -> Vec<u32> {
        if self.0.exited {
            Vec::new()
        } else {
            vec![std::process::id()]
        }
    }
    fn resident_bytes(&self) -> u64 {
        self.0.resident
    }
    fn freeze(&self) -> Result<(), ContainerError> {
        self.0.log("src freeze");
        if self.0.fault(Step::Freeze) {
            return Err(ContainerError::Failed("freezer.state: no such file".into()));
        }
        Ok(())
    }
    fn release_sockets(&self) -> Result<u32, ContainerError> {
        self.0.log("src release sockets");
        Ok(0)
    }
    fn thaw(&self) -> Result<(), ContainerError> {
        self.0.log("src thaw");
        if self.0.fault(Step::Thaw) {
            return Err(ContainerError::Failed("cannot thaw".into()));
        }
        Ok(())
    }
    fn kill_frozen(&self) {
        self.0.log("src kill");
    }
    fn alive(&self) -> Result<(), ContainerError> {
        if self.0.exited || self.0.fault(Step::Lost) {
            return Err(ContainerError::Failed("its processes are gone".into()));
        }
        if self.0.fault(Step::Thaw) {
            return Err(ContainerError::Failed("it is still frozen".into()));
        }
        Ok(())
    }
    fn shipment(&self) -> Result<Shipment, ContainerError> {
        Ok(Shipment {
            digest: "d1".into(),
            root: "/nonexistent".into(),
            entries: Vec::new(),
        })
    }
    fn shipped(&self, digest: &str) {
        self.0.log(format!("src shipped {digest}"));
    }
    fn shipment_changes(
        &self,
        _images: &std::path::Path,
    ) -> Result<crate::ports::container::ShipmentChanges, ContainerError> {
        self.0.log("src shipment changes");
        Ok(Default::default())
    }
    async fn checkpoint(&self, plan: &DumpPlan) -> Result<(), ContainerError> {
        self.0.log(format!("src dump {:?}", plan.criu.pages));
        self.0.dumps.lock().unwrap().push(plan.criu.clone());
        if self.0.fault(Step::Dump) {
            std::fs::write(
                plan.work.join("dump.log"),
                "(00.1) Error (criu/files-reg.c:1): Some file locks are hold by dumping tasks!\n",
            )
            .unwrap();
            return Err(ContainerError::Failed("criu failed".into()));
        }
        write_images(&plan.images);
        Ok(())
    }
    fn checkpoint_lazy(&self, plan: DumpPlan, page_socket: OwnedFd) -> LazyDump {
        self.0.log(format!("src lazy-dump {:?}", plan.criu.pages));
        self.0.dumps.lock().unwrap().push(plan.criu.clone());
        let dump_fails = self.0.fault(Step::Dump);
        if dump_fails {
            std::fs::write(
                plan.work.join("dump.log"),
                "(00.1) Error (criu/files-reg.c:1): Some file locks are hold by dumping tasks!\n",
            )
            .unwrap();
        }
        let ready = !self.0.fault(Step::LazyReady) && !dump_fails;
        if ready {
            write_images(&plan.images);
        }
        // Like CRIU: serves pages until ferry's end of the socket closes.
        let done = async move {
            tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut f = std::fs::File::from(page_socket);
                let mut b = [0u8; 16];
                while matches!(f.read(&mut b), Ok(n) if n > 0) {}
            })
            .await
            .map_err(|e| ContainerError::Failed(e.to_string()))?;
            if dump_fails {
                return Err(ContainerError::Failed("criu failed".into()));
            }
            Ok(())
        };
        LazyDump {
            ready: Box::pin(async move { ready }),
            done: Box::pin(done),
        }
    }
    async fn remove(&self) -> Result<(), ContainerError> {
        self.0.log("src remove");
        Ok(())
    }
}

/// A container's network, at either end.
pub struct FakeNetwork {
    cfg: Arc<Config>,
    side: &'static str,
    spec: ferry_types::NetSpec,
}

impl FakeNetwork {
    pub fn new(cfg: Arc<Config>, side: &'static str) -> Self {
        Self {
            cfg,
            side,
            spec: super::spec(),
        }
    }

    fn step(&self, what: &str, fault: Option<Step>) -> Result<(), NetworkError> {
        self.cfg.log(format!("{} {what}", self.side));
        match fault {
            Some(f) if self.cfg.fault(f) => Err(NetworkError(format!("{what} failed"))),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ContainerNetwork for FakeNetwork {
    fn spec(&self) -> &ferry_types::NetSpec {
        &self.spec
    }
    fn netns_path(&self) -> std::path::PathBuf {
        "/run/netns/fake".into()
    }
    async fn lock(&self) -> Result<(), NetworkError> {
        self.step("lock", (self.side == "src").then_some(Step::Lock))
    }
    async fn unlock(&self) -> Result<(), NetworkError> {
        self.step("unlock", None)
    }
    async fn attach(&self) -> Result<(), NetworkError> {
        self.step("attach", (self.side == "dst").then_some(Step::Attach))
    }
    async fn detach(&self) -> Result<(), NetworkError> {
        self.step("detach", Some(Step::Detach))
    }
    async fn announce(&self) -> Result<(), NetworkError> {
        self.step("announce", None)
    }
    async fn release(&self) -> Result<(), NetworkError> {
        self.step("release", None)
    }
    /// One packet from a peer, named after the side, and one of the container's own.
    async fn take_held(&self) -> ferry_types::Held {
        use ferry_types::HeldPacket;
        self.cfg.log(format!("{} take held", self.side));
        ferry_types::Held {
            inbound: vec![HeldPacket(self.side.as_bytes().to_vec())],
            outbound: vec![HeldPacket(b"own".to_vec())],
            overflow: 0,
        }
    }
    async fn deliver(
        &self,
        held: ferry_types::Held,
    ) -> Result<ferry_types::Delivered, NetworkError> {
        let from: Vec<String> = held
            .inbound
            .iter()
            .map(|p| String::from_utf8_lossy(&p.0).into_owned())
            .collect();
        self.cfg.log(format!(
            "{} deliver in={} out={}",
            self.side,
            from.join(","),
            held.outbound.len()
        ));
        Ok(ferry_types::Delivered::default())
    }
    async fn watch_peers(
        &self,
        _delivered: &ferry_types::Held,
    ) -> Option<Box<dyn crate::ports::network::PeerWatch>> {
        (self.side == "dst")
            .then(|| Box::new(FakeWatch) as Box<dyn crate::ports::network::PeerWatch>)
    }
}

/// One peer, heard 5 ms into the watch.
struct FakeWatch;

#[async_trait]
impl crate::ports::network::PeerWatch for FakeWatch {
    fn watching(&self) -> u32 {
        1
    }
    async fn finish(self: Box<Self>) -> Vec<ferry_types::PeerResumed> {
        vec![ferry_types::PeerResumed {
            peer: "10.77.0.100:40000".into(),
            local_port: 6379,
            first_packet_ms: Some(5.0),
            held: false,
        }]
    }
}

/// Reaches a destination half that runs in this process, one per connection.
pub struct FakeDialer {
    pub cfg: Arc<Config>,
    pub dest: DestPorts,
    pub settings: HostSettings,
}

#[async_trait]
impl Dialer for FakeDialer {
    async fn connect(&self) -> Result<Box<ToDest>, LinkError> {
        let n = self.cfg.connects.fetch_add(1, Ordering::SeqCst);
        if self.cfg.fault(Step::Connect) || (self.cfg.fault(Step::ConnectOnce) && n > 0) {
            return Err(LinkError::Broken("cannot connect to dst: refused".into()));
        }
        let cut = self.cfg.faults.iter().find_map(|f| match f {
            Step::PeerCut(n) => Some(*n),
            _ => None,
        });
        let (src, dst) = link::pair(cut);
        tokio::spawn(crate::dest::serve(
            self.dest.clone(),
            self.settings.clone(),
            dst,
        ));
        Ok(src)
    }

    fn describe(&self) -> String {
        "dst:7070".into()
    }
}

/// The source's page channels.
pub struct FakePages(pub Arc<Config>);

#[async_trait]
impl SourcePages for FakePages {
    async fn stream_dump(
        &self,
        _session: &str,
        _images: &Path,
    ) -> Result<Box<dyn DumpStream>, PagesError> {
        self.0.log("src pages open");
        if self.0.fault(Step::OpenPages) {
            return Err(PagesError::Lost("cannot connect to dst: refused".into()));
        }
        Ok(Box::new(FakeStream {
            cfg: self.0.clone(),
            before: Sent::default(),
        }))
    }

    async fn rounds(
        &self,
        _session: &str,
        compress: Compress,
    ) -> Result<Box<dyn Rounds>, PagesError> {
        self.0.log(format!("src rounds {}", compress.name()));
        if self.0.fault(Step::OpenPages) {
            return Err(PagesError::Lost("cannot connect to dst: refused".into()));
        }
        Ok(Box::new(FakeRounds {
            cfg: self.0.clone(),
            sent: Sent::default(),
            compress,
        }))
    }

    async fn lazy(&self, _session: &str) -> Result<Box<dyn LazyPages>, PagesError> {
        self.0.log("src pages open lazy");
        Ok(Box::new(FakeLazy {
            cfg: self.0.clone(),
            ours: None,
            dedupe: false,
        }))
    }
}

/// CRIU's page files on their way.
struct FakeStream {
    cfg: Arc<Config>,
    /// What the rounds sent before (pre-copy's final copy adds to it).
    before: Sent,
}

#[async_trait]
impl DumpStream for FakeStream {
    fn streamed(&self) -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(0))
    }
    fn cut_after(&self, _chunks: u64) {}
    async fn finish(self: Box<Self>) -> Result<StreamTotals, PagesError> {
        self.cfg.log("src pages sent");
        if self.cfg.fault(Step::Stream) {
            return Err(PagesError::Failed("connection reset by peer".into()));
        }
        let n = self.cfg.pages_bytes;
        Ok(StreamTotals {
            file_bytes: n,
            sent: Sent {
                pages: self.before.pages + n / 8192,
                refs: self.before.refs + n / 8192,
                wire: self.before.wire + n / 2,
            },
        })
    }
    async fn abort(self: Box<Self>) {
        self.cfg.log("src pages abort");
    }
}

/// Pre-copy's rounds, as scripted.
struct FakeRounds {
    cfg: Arc<Config>,
    sent: Sent,
    compress: Compress,
}

#[async_trait]
impl Rounds for FakeRounds {
    async fn round(&mut self, k: u32, _pids: Vec<u32>) -> Result<PrecopyRound, PagesError> {
        self.cfg.log(format!("src round {k}"));
        if self.cfg.fault(Step::Round(k)) {
            return Err(PagesError::Failed("broken pipe".into()));
        }
        let r = &self.cfg.rounds;
        let sent = r[(k as usize - 1).min(r.len() - 1)];
        self.sent.pages += sent / 4096;
        self.sent.wire += sent;
        Ok(PrecopyRound {
            round: k,
            scanned_bytes: self.cfg.resident,
            changed_bytes: sent,
            sent_bytes: sent,
            wire_bytes: sent,
            ms: self.cfg.round_ms * sent as f64 / r[0] as f64,
            predicted_downtime_ms: 0.0,
        })
    }
    fn sent(&self) -> Sent {
        self.sent
    }
    fn compress(&self) -> Compress {
        self.compress
    }
    async fn final_copy(
        self: Box<Self>,
        _images: &Path,
    ) -> Result<Box<dyn DumpStream>, PagesError> {
        self.cfg.log("src final copy");
        Ok(Box::new(FakeStream {
            cfg: self.cfg.clone(),
            before: self.sent,
        }))
    }
    async fn into_lazy(self: Box<Self>, _session: &str) -> Result<Box<dyn LazyPages>, PagesError> {
        self.cfg.log("src switch to post-copy");
        Ok(Box::new(FakeLazy {
            cfg: self.cfg.clone(),
            ours: None,
            dedupe: true,
        }))
    }
}

/// Post-copy's channels.
struct FakeLazy {
    cfg: Arc<Config>,
    ours: Option<std::os::unix::net::UnixStream>,
    dedupe: bool,
}

impl LazyPages for FakeLazy {
    fn criu_socket(&mut self) -> Result<OwnedFd, PagesError> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        self.ours = Some(ours);
        Ok(theirs.into())
    }

    fn pump(self: Box<Self>, _images: &Path, _cut: bool) -> Result<Box<dyn Pump>, PagesError> {
        self.cfg.log(format!("src pump dedupe={}", self.dedupe));
        Ok(Box::new(FakePump {
            cfg: self.cfg.clone(),
            ours: self.ours,
            dedupe: self.dedupe,
        }))
    }
}

struct FakePump {
    cfg: Arc<Config>,
    ours: Option<std::os::unix::net::UnixStream>,
    dedupe: bool,
}

#[async_trait]
impl Pump for FakePump {
    fn pages_total(&self) -> u64 {
        10
    }
    fn progress(&self) -> Arc<PageCounters> {
        Arc::new(PageCounters::default())
    }
    async fn wait(self: Box<Self>) -> Result<PumpTotals, PagesError> {
        self.cfg.log("src pump done");
        if self.cfg.fault(Step::Pump) {
            return Err(PagesError::Failed(
                "the page channel to the destination broke: reset".into(),
            ));
        }
        drop(self.ours);
        Ok(PumpTotals {
            pages_pushed: 6,
            pages_answered: 4,
            pages_referenced: if self.dedupe { 8 } else { 0 },
            bytes_sent: 8192,
        })
    }
    async fn abort(self: Box<Self>) {
        self.cfg.log("src pump abort");
    }
}
