//! Recording fakes of every port, so that a whole migration (both halves, over an
//! in-memory link) runs in a unit test without root: what each side did is written to
//! one log, in order, and a fault can strike at any step.

#![allow(clippy::unwrap_used)]

mod dest;
mod holds;
mod hostile;
mod link;
mod sequences;
mod source;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_types::{MigrateOptions, NetSpec, Report, Strategy};

use crate::dest::DestPorts;
use crate::ports::host::HostSettings;
use crate::source::{Events, SourcePorts, SourceRequest};

/// Where a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The source cannot reach the destination.
    Connect,
    /// Only the first connection succeeds (asking how a session ended fails).
    ConnectOnce,
    /// The destination does not admit the container.
    Admit,
    /// The destination cannot build the container's namespace.
    DestNetwork,
    OpenPages,
    Freeze,
    Lock,
    Dump,
    /// The lazy dump never gets ready.
    LazyReady,
    /// The page stream breaks after the dump.
    Stream,
    /// Pre-copy round `k` fails.
    Round(u32),
    Detach,
    /// The destination's page files do not arrive.
    DestPages,
    Attach,
    Restore,
    /// The peer connection breaks after this many frames from either side.
    PeerCut(usize),
    /// The source's pump loses the destination after the commit.
    Pump,
    /// The destination's daemon loses the source after the commit.
    Daemon,
    Thaw,
    /// The container is gone after the rollback, though every undo step succeeded.
    Lost,
}

/// What a fake saw, in order, as lines like `src freeze` or `dst restore lazy=false`.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn has(&self, line: &str) -> bool {
        self.lines().iter().any(|l| l == line)
    }

    /// The lines of one side, without the side.
    pub fn of(&self, side: &str) -> Vec<String> {
        let prefix = format!("{side} ");
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// Whether `a` came before `b`.
    pub fn before(&self, a: &str, b: &str) -> bool {
        let l = self.lines();
        match (l.iter().position(|x| x == a), l.iter().position(|x| x == b)) {
            (Some(i), Some(j)) => i < j,
            _ => false,
        }
    }
}

/// One scripted world: its faults, its pre-copy rounds, its sizes.
#[derive(Debug)]
pub struct Config {
    pub log: Log,
    pub faults: Vec<Step>,
    /// Bytes each pre-copy round finds new (the last one repeats).
    pub rounds: Vec<u64>,
    /// How long each round takes on the link, ms.
    pub round_ms: f64,
    /// Bytes of CRIU's page files.
    pub pages_bytes: u64,
    pub resident: u64,
    /// The container exited (it has no processes).
    pub exited: bool,
    /// The destination already holds the shipment.
    pub dest_has_bundle: bool,
    pub lazy_pages: bool,
    pub connects: std::sync::atomic::AtomicUsize,
    /// The source host's name (the destination's is `dst`).
    pub source_name: &'static str,
    /// What CRIU was asked to do, in order.
    pub dumps: Mutex<Vec<ferry_criu::plan::CheckpointSpec>>,
    pub restores: Mutex<Vec<ferry_criu::plan::RestoreSpec>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log: Log::default(),
            faults: Vec::new(),
            rounds: vec![100 << 20, 10 << 20, 1 << 20],
            round_ms: 800.0,
            pages_bytes: 1 << 20,
            resident: 10 << 20,
            exited: false,
            dest_has_bundle: false,
            lazy_pages: true,
            connects: Default::default(),
            source_name: "src",
            dumps: Mutex::default(),
            restores: Mutex::default(),
        }
    }
}

impl Config {
    pub fn fault(&self, s: Step) -> bool {
        self.faults.contains(&s)
    }

    pub fn log(&self, line: impl Into<String>) {
        self.log.push(line);
    }
}

pub fn spec() -> NetSpec {
    NetSpec {
        address: "10.0.0.2/24".into(),
        mac: "02:42:0a:00:00:02".into(),
        gateway: None,
        pod: None,
    }
}

pub fn settings(name: &str, dir: &Path, lazy_pages: bool) -> HostSettings {
    HostSettings {
        name: name.into(),
        images_dir: dir.join(name).join("images"),
        logs_dir: dir.join(name).join("logs"),
        keep_logs: false,
        allow_fault_injection: false,
        lazy_pages,
        resolve_for: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
        images_size: "50%".into(),
    }
}

/// The destination's ports, faked.
pub fn dest_ports(cfg: &Arc<Config>) -> DestPorts {
    DestPorts {
        engine: Arc::new(dest::FakeEngine(cfg.clone())),
        network: Arc::new(dest::FakeNetworks(cfg.clone())),
        host: Arc::new(dest::FakeHost::new(cfg.clone())),
        others: Vec::new(),
    }
}

/// A migration of `strategy` in the world `cfg`, through both halves; returns its report
/// (the log is in `cfg`).
pub async fn migrate(cfg: Config, strategy: Strategy) -> (Report, Arc<Config>) {
    migrate_with(cfg, strategy, MigrateOptions::default()).await
}

pub async fn migrate_with(
    cfg: Config,
    strategy: Strategy,
    options: MigrateOptions,
) -> (Report, Arc<Config>) {
    let (r, cfg) = migrate_result(cfg, strategy, options).await;
    (r.unwrap(), cfg)
}

/// A migration that may be refused before anything changes.
pub async fn migrate_result(
    cfg: Config,
    strategy: Strategy,
    options: MigrateOptions,
) -> (Result<Report, crate::error::PrepareError>, Arc<Config>) {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    migrate_held(cfg, strategy, options, Default::default(), tx).await
}

/// A migration that waits for the client's words in `holds`, and sends its progress to
/// `tx`.
pub async fn migrate_held(
    cfg: Config,
    strategy: Strategy,
    options: MigrateOptions,
    holds: crate::source::Holds,
    tx: tokio::sync::mpsc::UnboundedSender<ferry_proto::ControlReply>,
) -> (Result<Report, crate::error::PrepareError>, Arc<Config>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(cfg);
    let dst_settings = settings("dst", dir.path(), cfg.lazy_pages);
    let dest = dest_ports(&cfg);
    let ports = SourcePorts {
        subject: Arc::new(source::FakeSubject(cfg.clone())),
        network: Box::new(source::FakeNetwork::new(cfg.clone(), "src")),
        dialer: Box::new(source::FakeDialer {
            cfg: cfg.clone(),
            dest,
            settings: dst_settings,
        }),
        pages: Box::new(source::FakePages(cfg.clone())),
    };
    let req = SourceRequest {
        container: "redis".into(),
        options,
        strategy,
        notes: Vec::new(),
    };
    let report = try_migrate(cfg.clone(), dir.path(), ports, req, tx, holds).await;
    // The destination's half may still be finishing (a dropped session).
    tokio::time::sleep(Duration::from_millis(50)).await;
    (report, cfg)
}

async fn try_migrate(
    cfg: Arc<Config>,
    dir: &Path,
    ports: SourcePorts,
    req: SourceRequest,
    tx: tokio::sync::mpsc::UnboundedSender<ferry_proto::ControlReply>,
    holds: crate::source::Holds,
) -> Result<Report, crate::error::PrepareError> {
    let src_settings = settings(cfg.source_name, dir, cfg.lazy_pages);
    crate::migration::migrate(ports, &src_settings, req, Events(tx), holds).await
}
