//! A source that does not follow the protocol: the destination answers with one
//! sentence and drops whatever the session built.

use std::sync::Arc;
use std::time::Duration;

use ferry_proto::{PeerReply, PeerRequest, Prepare};
use ferry_types::{EngineKind, Strategy};

use super::{dest_ports, link, settings, spec, Config};
use crate::ports::peer::{Frame, ToDest};

fn prepare(strategy: Strategy) -> PeerRequest {
    PeerRequest::Prepare(Prepare {
        session: "s1".into(),
        container: "redis".into(),
        strategy,
        bundle_digest: "d1".into(),
        net: spec(),
        tcp_established: true,
        file_locks: false,
        inject_fault: None,
        group: None,
        pod_members: Vec::new(),
        engine: Default::default(),
        readdress_from: None,
    })
}

/// A destination half on the other end of a fresh link.
fn destination(cfg: &Arc<Config>, dir: &std::path::Path) -> Box<ToDest> {
    let (src, dst) = link::pair(None);
    tokio::spawn(crate::dest::serve(
        dest_ports(cfg),
        settings("dst", dir, true),
        dst,
    ));
    src
}

async fn reply(l: &mut ToDest) -> PeerReply {
    match tokio::time::timeout(Duration::from_secs(5), l.recv()).await {
        Ok(Ok(Frame::Message(m))) => m,
        other => panic!("no reply: {other:?}"),
    }
}

async fn refused(l: &mut ToDest) -> String {
    match reply(l).await {
        PeerReply::Error { message } => message,
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn data_before_prepare_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(Config::default());
    let mut l = destination(&cfg, dir.path());
    l.send_data(b"hello").await.unwrap();
    assert!(refused(&mut *l).await.contains("unexpected message data"));
}

#[tokio::test]
async fn an_image_name_that_escapes_drops_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(Config {
        dest_has_bundle: true,
        ..Default::default()
    });
    let mut l = destination(&cfg, dir.path());
    l.send(&prepare(Strategy::Cold)).await.unwrap();
    assert!(matches!(
        reply(&mut *l).await,
        PeerReply::Prepared { need_bundle: false }
    ));
    l.send(&PeerRequest::ImageFile {
        name: "../etc/passwd".into(),
        size: 4,
    })
    .await
    .unwrap();
    assert!(refused(&mut *l).await.contains("not allowed"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(cfg.log.has("dst release"), "{:#?}", cfg.log.lines());
}

#[tokio::test]
async fn a_source_that_falls_silent_loses_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(Config {
        dest_has_bundle: true,
        ..Default::default()
    });
    let (mut l, dst) = link::pair(None);
    let mut quick = settings("dst", dir.path(), true);
    quick.idle_timeout = Duration::from_millis(200);
    tokio::spawn(crate::dest::serve(dest_ports(&cfg), quick, dst));
    l.send(&prepare(Strategy::Cold)).await.unwrap();
    reply(&mut *l).await;
    let e = refused(&mut *l).await;
    assert!(
        e.contains("said nothing for 200ms") && e.contains("--session-idle-timeout"),
        "{e}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(cfg.log.has("dst release"), "{:#?}", cfg.log.lines());
}

#[tokio::test]
async fn pages_that_do_not_add_up_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(Config {
        dest_has_bundle: true,
        ..Default::default()
    });
    let mut l = destination(&cfg, dir.path());
    l.send(&prepare(Strategy::Cold)).await.unwrap();
    reply(&mut *l).await;
    l.send(&PeerRequest::ImagesDone { pages_bytes: 7 })
        .await
        .unwrap();
    let e = refused(&mut *l).await;
    assert!(e.contains("where the source sent 7"), "{e}");
}

#[tokio::test]
async fn more_data_than_announced_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(Config {
        dest_has_bundle: true,
        ..Default::default()
    });
    let mut l = destination(&cfg, dir.path());
    l.send(&prepare(Strategy::Cold)).await.unwrap();
    reply(&mut *l).await;
    l.send(&PeerRequest::ImageFile {
        name: "core-1.img".into(),
        size: 2,
    })
    .await
    .unwrap();
    l.send_data(b"three").await.unwrap();
    assert!(refused(&mut *l).await.contains("were announced"));
}

#[tokio::test]
async fn a_commit_before_the_restore_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(Config::default());
    let mut l = destination(&cfg, dir.path());
    l.send(&prepare(Strategy::Precopy)).await.unwrap();
    reply(&mut *l).await;
    l.send(&PeerRequest::Commit {
        held: Default::default(),
    })
    .await
    .unwrap();
    assert!(refused(&mut *l).await.contains("unexpected message commit"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!cfg.log.has("dst adopt"));
}

#[tokio::test]
async fn an_abort_after_the_restore_deletes_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(Config {
        dest_has_bundle: true,
        ..Default::default()
    });
    let mut l = destination(&cfg, dir.path());
    l.send(&prepare(Strategy::Cold)).await.unwrap();
    reply(&mut *l).await;
    l.send(&PeerRequest::ImagesDone {
        pages_bytes: cfg.pages_bytes,
    })
    .await
    .unwrap();
    assert!(matches!(reply(&mut *l).await, PeerReply::ImagesStored));
    l.send(&PeerRequest::Restore).await.unwrap();
    assert!(matches!(reply(&mut *l).await, PeerReply::Restored { .. }));
    l.send(&PeerRequest::Abort {
        reason: "the source changed its mind".into(),
    })
    .await
    .unwrap();
    assert!(matches!(reply(&mut *l).await, PeerReply::Aborted));
    assert!(cfg.log.before("dst restore lazy=false", "dst delete"));
    assert!(cfg.log.has("dst release") && !cfg.log.has("dst adopt"));
}

/// A destination with a second engine that restores only from complete images.
fn destination_with_other_engine(cfg: &Arc<Config>, dir: &std::path::Path) -> Box<ToDest> {
    let (src, dst) = link::pair(None);
    let mut ports = dest_ports(cfg);
    ports.others.push(crate::dest::EnginePorts {
        kind: EngineKind::Podman,
        engine: Arc::new(CompleteImagesOnly(super::dest::FakeEngine(cfg.clone()))),
        network: ports.network.clone(),
    });
    tokio::spawn(crate::dest::serve(ports, settings("dst", dir, true), dst));
    src
}

/// The fake engine, but without lazy restores.
struct CompleteImagesOnly(super::dest::FakeEngine);

#[async_trait::async_trait]
impl crate::ports::container::ContainerEngine for CompleteImagesOnly {
    async fn inspect(
        &self,
        name: &str,
    ) -> Result<Box<dyn crate::ports::container::Subject>, crate::ports::container::ContainerError>
    {
        self.0.inspect(name).await
    }
    async fn exists(&self, name: &str) -> bool {
        self.0.exists(name).await
    }
    fn has_shipment(&self, name: &str, digest: &str) -> bool {
        self.0.has_shipment(name, digest)
    }
    fn receive(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<
        Box<dyn crate::ports::container::ShipmentSink>,
        crate::ports::container::ContainerError,
    > {
        self.0.receive(name, digest)
    }
    fn restores_lazily(&self) -> bool {
        false
    }
    async fn restore(
        &self,
        name: &str,
        plan: &crate::ports::container::RestorePlan,
    ) -> Result<(), crate::ports::container::ContainerError> {
        self.0.restore(name, plan).await
    }
    fn kill(&self, name: &str) {
        self.0.kill(name)
    }
    async fn delete(&self, name: &str) -> Result<(), crate::ports::container::ContainerError> {
        self.0.delete(name).await
    }
}

fn prepare_for(engine: EngineKind, strategy: Strategy) -> PeerRequest {
    match prepare(strategy) {
        PeerRequest::Prepare(p) => PeerRequest::Prepare(Prepare { engine, ..p }),
        other => other,
    }
}

#[tokio::test]
async fn a_container_goes_to_the_engine_it_names_and_only_one_the_host_has() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(Config::default());
    let mut l = destination_with_other_engine(&cfg, dir.path());
    l.send(&prepare_for(EngineKind::Podman, Strategy::Cold))
        .await
        .unwrap();
    assert!(matches!(reply(&mut *l).await, PeerReply::Prepared { .. }));

    let mut l = destination_with_other_engine(&cfg, dir.path());
    l.send(&prepare_for(EngineKind::Docker, Strategy::Cold))
        .await
        .unwrap();
    let said = refused(&mut *l).await;
    assert!(said.contains("the destination has no docker"), "{said}");

    let mut l = destination_with_other_engine(&cfg, dir.path());
    l.send(&prepare_for(EngineKind::Podman, Strategy::Postcopy))
        .await
        .unwrap();
    let said = refused(&mut *l).await;
    assert!(said.contains("only from complete images"), "{said}");
}
