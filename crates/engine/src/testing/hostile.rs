//! A source that does not follow the protocol: the destination answers with one
//! sentence and drops whatever the session built.

use std::sync::Arc;
use std::time::Duration;

use ferry_proto::{PeerReply, PeerRequest, Prepare};
use ferry_types::Strategy;

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
    l.send(&PeerRequest::Commit).await.unwrap();
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
