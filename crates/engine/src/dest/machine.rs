//! The destination's receiver: a state machine that accepts only the messages valid in
//! its state. It decides nothing about containers; it tells the driver what to do next.
//!
//! ```text
//! AwaitPrepare --Prepare--> Preparing --prepared(need_bundle)--> Bundle | Images
//! Bundle --BundleFile/Data*--> Bundle --BundleDone--> BundleStoring --bundle_stored()--> Images
//! Images --ImageFile/Data*--> Images --ImagesDone--> ImagesStoring --images_stored()--> AwaitRestore
//! AwaitRestore --Restore--> Restoring --restored()--> AwaitCommit --Commit--> Committed
//! any state --Abort--> Aborted
//! ```

use ferry_proto::{PeerRequest, Prepare, ProtoError, WireMessage};
use ferry_types::{FileEntry, Held};

/// Where the receiver is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestState {
    AwaitPrepare,
    /// The driver is preparing (namespace, bundle check, page server).
    Preparing,
    /// Bundle files may arrive; `file` is the one in progress with its missing bytes.
    Bundle {
        file: Option<u64>,
    },
    BundleStoring,
    Images {
        file: Option<u64>,
    },
    ImagesStoring,
    AwaitRestore,
    Restoring,
    /// The container runs here, isolated, until the source commits.
    AwaitCommit,
    Committed,
    Aborted,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum DestAction {
    Prepare(Prepare),
    BeginBundleFile(FileEntry),
    /// Bytes of the current file (bundle or image).
    Data(Vec<u8>),
    /// The current file is complete.
    EndFile,
    StoreBundle,
    BeginImage {
        name: String,
        size: u64,
    },
    StoreImages {
        pages_bytes: u64,
    },
    Restore,
    /// Commit, then deliver what the source's lock held.
    Commit {
        held: Held,
    },
    Abort {
        reason: String,
    },
    Resolve {
        session: String,
    },
    Probe {
        cpuinfo: Option<String>,
        paths: Vec<String>,
    },
}

/// Incoming frames, as the machine sees them.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Message(PeerRequest),
    Data(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct DestMachine {
    state: DestState,
}

impl Default for DestMachine {
    fn default() -> Self {
        Self::new()
    }
}

/// Most paths a probe may ask about.
const MAX_PROBED_PATHS: usize = 256;

/// The longest image file name accepted, and what it may contain.
fn valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl DestMachine {
    pub fn new() -> Self {
        Self {
            state: DestState::AwaitPrepare,
        }
    }

    pub fn state(&self) -> &DestState {
        &self.state
    }

    fn unexpected(&self, got: &str) -> ProtoError {
        ProtoError::Unexpected {
            got: got.to_string(),
            state: format!("{:?}", self.state),
        }
    }

    /// Feeds one frame; returns what to do, or an error if it is not valid now.
    pub fn on(&mut self, input: Input) -> Result<Vec<DestAction>, ProtoError> {
        use DestState as S;
        let msg = match input {
            Input::Data(d) => return self.on_data(d),
            Input::Message(m) => m,
        };
        if let PeerRequest::Abort { reason } = &msg {
            if self.state == S::Committed {
                return Err(self.unexpected("abort"));
            }
            self.state = S::Aborted;
            return Ok(vec![DestAction::Abort {
                reason: reason.clone(),
            }]);
        }
        let actions = match (&self.state, msg) {
            (S::AwaitPrepare, PeerRequest::Prepare(p)) => {
                self.state = S::Preparing;
                vec![DestAction::Prepare(p)]
            }
            (S::AwaitPrepare, PeerRequest::Resolve { session }) => {
                vec![DestAction::Resolve { session }]
            }
            (S::AwaitPrepare, PeerRequest::Probe { cpuinfo, paths }) => {
                if paths.len() > MAX_PROBED_PATHS || paths.iter().any(|p| p.len() > 4096) {
                    return Err(ProtoError::BadMessage(format!(
                        "a probe asks about at most {MAX_PROBED_PATHS} paths of at most 4096 bytes"
                    )));
                }
                vec![DestAction::Probe { cpuinfo, paths }]
            }
            (S::Bundle { file: None }, PeerRequest::BundleFile { entry }) => {
                let size = entry.content_len();
                let mut out = vec![DestAction::BeginBundleFile(entry)];
                if size == 0 {
                    out.push(DestAction::EndFile);
                    self.state = S::Bundle { file: None };
                } else {
                    self.state = S::Bundle { file: Some(size) };
                }
                out
            }
            (S::Bundle { file: None }, PeerRequest::BundleDone) => {
                self.state = S::BundleStoring;
                vec![DestAction::StoreBundle]
            }
            (S::Images { file: None }, PeerRequest::ImageFile { name, size }) => {
                if !valid_image_name(&name) {
                    return Err(ProtoError::BadMessage(format!(
                        "image file name {name:?} is not allowed"
                    )));
                }
                let mut out = vec![DestAction::BeginImage { name, size }];
                if size == 0 {
                    out.push(DestAction::EndFile);
                    self.state = S::Images { file: None };
                } else {
                    self.state = S::Images { file: Some(size) };
                }
                out
            }
            (S::Images { file: None }, PeerRequest::ImagesDone { pages_bytes }) => {
                self.state = S::ImagesStoring;
                vec![DestAction::StoreImages { pages_bytes }]
            }
            (S::AwaitRestore, PeerRequest::Restore) => {
                self.state = S::Restoring;
                vec![DestAction::Restore]
            }
            (S::AwaitCommit, PeerRequest::Commit { held }) => {
                self.state = S::Committed;
                vec![DestAction::Commit { held }]
            }
            (_, other) => return Err(self.unexpected(other.name())),
        };
        Ok(actions)
    }

    fn on_data(&mut self, data: Vec<u8>) -> Result<Vec<DestAction>, ProtoError> {
        use DestState as S;
        let (remaining, bundle) = match self.state {
            S::Bundle { file: Some(r) } => (r, true),
            S::Images { file: Some(r) } => (r, false),
            _ => return Err(self.unexpected("data")),
        };
        let n = data.len() as u64;
        if n > remaining {
            return Err(ProtoError::BadMessage(format!(
                "{n} bytes of data where {remaining} were announced"
            )));
        }
        let left = remaining - n;
        let next = if left == 0 { None } else { Some(left) };
        self.state = if bundle {
            S::Bundle { file: next }
        } else {
            S::Images { file: next }
        };
        let mut out = vec![DestAction::Data(data)];
        if left == 0 {
            out.push(DestAction::EndFile);
        }
        Ok(out)
    }

    /// The driver prepared; the source sends the bundle first if `need_bundle`.
    pub fn prepared(&mut self, need_bundle: bool) {
        if self.state == DestState::Preparing {
            self.state = if need_bundle {
                DestState::Bundle { file: None }
            } else {
                DestState::Images { file: None }
            };
        }
    }

    pub fn bundle_stored(&mut self) {
        if self.state == DestState::BundleStoring {
            self.state = DestState::Images { file: None };
        }
    }

    pub fn images_stored(&mut self) {
        if self.state == DestState::ImagesStoring {
            self.state = DestState::AwaitRestore;
        }
    }

    pub fn restored(&mut self) {
        if self.state == DestState::Restoring {
            self.state = DestState::AwaitCommit;
        }
    }

    /// Whether losing the connection now means dropping the container built here.
    pub fn drop_on_disconnect(&self) -> bool {
        !matches!(self.state, DestState::Committed | DestState::AwaitPrepare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::{FileKind, NetSpec, Strategy};

    fn prepare() -> PeerRequest {
        PeerRequest::Prepare(Prepare {
            session: "s".into(),
            container: "redis".into(),
            strategy: Strategy::Cold,
            bundle_digest: "d".into(),
            net: NetSpec {
                address: "10.0.0.2/24".into(),
                mac: "02:42:0a:00:00:02".into(),
                gateway: None,
                pod: None,
            },
            tcp_established: true,
            file_locks: false,
            inject_fault: None,
            group: None,
            pod_members: Vec::new(),
            engine: Default::default(),
            readdress_from: None,
        })
    }

    fn m(msg: PeerRequest) -> Input {
        Input::Message(msg)
    }

    #[test]
    fn a_probe_asks_about_a_bounded_number_of_paths() {
        let mut d = DestMachine::new();
        let ok = PeerRequest::Probe {
            cpuinfo: None,
            paths: vec!["/srv/data".into()],
        };
        assert!(matches!(
            d.on(m(ok)).unwrap().as_slice(),
            [DestAction::Probe { paths, .. }] if paths.len() == 1
        ));
        let flood = PeerRequest::Probe {
            cpuinfo: None,
            paths: vec!["/x".into(); MAX_PROBED_PATHS + 1],
        };
        assert!(d.on(m(flood)).is_err());
    }

    #[test]
    fn a_whole_session_in_order() {
        let mut d = DestMachine::new();
        assert!(matches!(
            d.on(m(prepare())).unwrap()[0],
            DestAction::Prepare(_)
        ));
        d.prepared(true);
        let entry = FileEntry {
            path: "config.json".into(),
            kind: FileKind::File,
            mode: 0o644,
            size: 5,
            target: None,
            mtime: 0,
        };
        d.on(m(PeerRequest::BundleFile { entry })).unwrap();
        d.on(Input::Data(vec![1, 2])).unwrap();
        assert_eq!(
            d.on(Input::Data(vec![3, 4, 5])).unwrap().last(),
            Some(&DestAction::EndFile)
        );
        assert_eq!(
            d.on(m(PeerRequest::BundleDone)).unwrap(),
            vec![DestAction::StoreBundle]
        );
        d.bundle_stored();
        d.on(m(PeerRequest::ImageFile {
            name: "core-1.img".into(),
            size: 0,
        }))
        .unwrap();
        d.on(m(PeerRequest::ImagesDone { pages_bytes: 10 }))
            .unwrap();
        d.images_stored();
        assert_eq!(
            d.on(m(PeerRequest::Restore)).unwrap(),
            vec![DestAction::Restore]
        );
        assert!(d.drop_on_disconnect());
        d.restored();
        assert_eq!(
            d.on(m(PeerRequest::Commit {
                held: Held::default()
            }))
            .unwrap(),
            vec![DestAction::Commit {
                held: Held::default()
            }]
        );
        assert!(!d.drop_on_disconnect());
    }

    #[test]
    fn out_of_order_messages_are_refused() {
        let mut d = DestMachine::new();
        assert!(d.on(m(PeerRequest::Restore)).is_err());
        assert!(d
            .on(m(PeerRequest::Commit {
                held: Held::default()
            }))
            .is_err());
        assert!(d.on(Input::Data(vec![1])).is_err());
        d.on(m(prepare())).unwrap();
        assert!(d.on(m(prepare())).is_err(), "a second prepare");
        d.prepared(false);
        let entry = FileEntry {
            path: "x".into(),
            kind: FileKind::Dir,
            mode: 0o755,
            size: 0,
            target: None,
            mtime: 0,
        };
        assert!(
            d.on(m(PeerRequest::BundleFile { entry })).is_err(),
            "bundle not asked for"
        );
        assert!(
            d.on(m(PeerRequest::Commit {
                held: Held::default()
            }))
            .is_err(),
            "commit before restore"
        );
    }

    #[test]
    fn more_data_than_announced_is_refused() {
        let mut d = DestMachine::new();
        d.on(m(prepare())).unwrap();
        d.prepared(false);
        d.on(m(PeerRequest::ImageFile {
            name: "pstree.img".into(),
            size: 2,
        }))
        .unwrap();
        assert!(d.on(Input::Data(vec![0; 3])).is_err());
    }

    #[test]
    fn image_names_cannot_escape_the_directory() {
        let mut d = DestMachine::new();
        d.on(m(prepare())).unwrap();
        d.prepared(false);
        for bad in ["../etc/passwd", "/etc/shadow", "a/b", "..", ""] {
            assert!(
                d.on(m(PeerRequest::ImageFile {
                    name: bad.into(),
                    size: 0
                }))
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn abort_is_accepted_until_commit() {
        let mut d = DestMachine::new();
        d.on(m(prepare())).unwrap();
        assert!(matches!(
            d.on(m(PeerRequest::Abort { reason: "x".into() })).unwrap()[0],
            DestAction::Abort { .. }
        ));
        assert_eq!(d.state(), &DestState::Aborted);
    }
}
