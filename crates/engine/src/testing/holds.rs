//! The client's words (`hold_freeze`, `hold_restore`): a held migration freezes and
//! restores only when told, and a word that never comes leaves the container running at
//! the source, exactly once.

use ferry_proto::{ControlReply, RESTORE_READY_PHASE};
use ferry_types::{MigrateOptions, Outcome, Strategy};
use tokio::sync::{mpsc, oneshot};

use super::{migrate_held, Config};
use crate::source::Holds;

/// Runs `strategy` with a restore hold; `answer` decides, once the migration reports
/// that it waits, whether the word is given (`true`) or dropped.
async fn held_restore(strategy: Strategy, answer: bool) -> (ferry_types::Report, Config) {
    let cfg = Config::default();
    let log = cfg.log.clone();
    let (word, rx) = oneshot::channel();
    let holds = Holds {
        freeze: None,
        restore: Some(rx),
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    let client = tokio::spawn(async move {
        let mut word = Some(word);
        while let Some(ev) = events.recv().await {
            if matches!(&ev, ControlReply::Progress { phase, .. } if phase == RESTORE_READY_PHASE) {
                log.push("client restore-ready");
                if let Some(w) = word.take() {
                    if answer {
                        log.push("client proceed");
                        let _ = w.send(());
                    }
                }
            }
        }
    });
    let options = MigrateOptions {
        hold_restore: true,
        ..Default::default()
    };
    let (r, cfg) = migrate_held(cfg, strategy, options, holds, tx).await;
    client.await.unwrap();
    let cfg = std::sync::Arc::try_unwrap(cfg).unwrap();
    (r.unwrap(), cfg)
}

#[tokio::test]
async fn a_held_restore_waits_for_the_word_after_the_images_are_at_the_destination() {
    for s in Strategy::ALL {
        let (r, cfg) = held_restore(s, true).await;
        let log = &cfg.log;
        assert_eq!(
            r.outcome,
            Outcome::Migrated,
            "{s}: {r:?}\n{:#?}",
            log.lines()
        );
        assert!(log.before("src freeze", "client restore-ready"), "{s}");
        let restore = log
            .lines()
            .into_iter()
            .find(|l| l.starts_with("dst restore"))
            .unwrap_or_else(|| panic!("{s}: no restore\n{:#?}", log.lines()));
        assert!(log.before("client proceed", &restore), "{s}");
        let phases: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
        assert!(phases.contains(&"restore-hold"), "{s}: {phases:?}");
    }
}

#[tokio::test]
async fn a_restore_word_that_never_comes_rolls_the_frozen_container_back() {
    for s in Strategy::ALL {
        let (r, cfg) = held_restore(s, false).await;
        let log = &cfg.log;
        assert_eq!(
            r.outcome,
            Outcome::RolledBack,
            "{s}: {r:?}\n{:#?}",
            log.lines()
        );
        assert!(
            r.reason
                .as_deref()
                .is_some_and(|x| x.contains("did not let the container restore")),
            "{s}: {:?}",
            r.reason
        );
        assert!(log.has("client restore-ready"), "{s}");
        assert!(
            !log.lines().iter().any(|l| l.starts_with("dst restore")),
            "{s}: never restored at the destination\n{:#?}",
            log.lines()
        );
        let src = log.of("src");
        assert!(src.contains(&"thaw".to_string()), "{s}: thawed: {src:?}");
        assert!(
            !src.contains(&"kill".to_string()),
            "{s}: not killed: {src:?}"
        );
        assert!(!log.has("dst adopt"), "{s}");
    }
}
