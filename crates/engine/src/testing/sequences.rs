//! Each strategy's sequence, both halves, with fakes: what runs in which order, what a
//! fault at each step leaves, and that a container is never lost nor left running
//! twice.

use ferry_criu::plan::{CheckpointSpec, NetworkLock, PageTransport, RestoreSpec};
use ferry_types::{MigrateOptions, Outcome, StopReason, Strategy};

use super::{migrate, migrate_result, migrate_with, Config, Step};
use crate::policy::stop_rule::{Costs, Estimator, StopRule};

const ALL: [Strategy; 4] = Strategy::ALL;

fn with(faults: &[Step]) -> Config {
    Config {
        faults: faults.to_vec(),
        ..Default::default()
    }
}

/// The source runs the container again as it was, and the destination holds nothing.
fn assert_back_at_source(log: &super::Log, outcome: Outcome, reason: &str) {
    assert_eq!(outcome, Outcome::RolledBack, "{reason}\n{:#?}", log.lines());
    let src = log.of("src");
    if src.contains(&"freeze".to_string()) {
        assert!(src.contains(&"thaw".to_string()), "thawed: {src:?}");
    }
    assert!(!src.contains(&"kill".to_string()), "not killed: {src:?}");
    assert!(!src.contains(&"remove".to_string()), "not removed: {src:?}");
    assert!(!log.has("dst adopt"), "the destination did not keep it");
    if log.has("dst restore lazy=false") || log.has("dst restore lazy=true") {
        assert!(
            log.has("dst delete"),
            "what the destination restored is gone"
        );
    }
    if log.has("dst net prepare") && !log.has("dst adopt") {
        assert!(
            log.has("dst release"),
            "the destination's namespace is gone"
        );
    }
}

#[tokio::test]
async fn every_strategy_moves_a_container_and_releases_the_source() {
    for s in ALL {
        let (r, cfg) = migrate(Config::default(), s).await;
        let log = &cfg.log;
        assert_eq!(
            r.outcome,
            Outcome::Migrated,
            "{s}: {r:?}\n{:#?}",
            log.lines()
        );
        assert_eq!(r.strategy, Some(s));
        // The source froze and locked, detached only after the dump, and released its
        // copy only once the destination committed.
        assert!(log.before("src freeze", "src lock"), "{s}");
        assert!(log.before("src lock", "src detach"), "{s}");
        assert!(
            log.before("dst announce", "dst unlock"),
            "{s}: announced before unlock"
        );
        assert!(
            log.before("dst adopt", "src kill"),
            "{s}: committed before kill"
        );
        assert!(log.has("src remove") && log.has("src release"), "{s}");
        assert!(!log.has("src thaw"), "{s}: the source never runs it again");
        assert!(r.downtime_ms.is_some(), "{s}");
        assert_eq!(r.phases.first().map(|p| p.name.as_str()), Some("connect"));
    }
}

#[tokio::test]
async fn each_strategy_asks_criu_for_what_it_needs() {
    let cases = [
        (
            Strategy::Cold,
            "src dump ImagesDir",
            "dst restore lazy=false",
        ),
        (
            Strategy::Precopy,
            "src dump ImagesDir",
            "dst restore lazy=false",
        ),
        (
            Strategy::Postcopy,
            "src lazy-dump LazySocket { fd: 100 }",
            "dst restore lazy=true",
        ),
        (
            Strategy::Hybrid,
            "src lazy-dump LazySocket { fd: 100 }",
            "dst restore lazy=true",
        ),
    ];
    for (s, dump, restore) in cases {
        let (r, cfg) = migrate(Config::default(), s).await;
        assert_eq!(r.outcome, Outcome::Migrated);
        assert!(cfg.log.has(dump), "{s}: {:#?}", cfg.log.lines());
        assert!(cfg.log.has(restore), "{s}: {:#?}", cfg.log.lines());
    }
}

#[tokio::test]
async fn a_large_cold_memory_restores_lazily_from_the_local_files() {
    let cfg = Config {
        pages_bytes: 64 << 20,
        ..Default::default()
    };
    let (r, cfg) = migrate(cfg, Strategy::Cold).await;
    assert_eq!(r.outcome, Outcome::Migrated);
    assert!(cfg
        .log
        .before("dst lazy from images", "dst restore lazy=true"));
    assert!(r.notes.iter().any(|n| n.contains("restored lazily")));
    // The memory keeps arriving after the commit.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(cfg.log.has("dst memory complete"));
}

#[tokio::test]
async fn plans_are_values_a_test_reads() {
    let options = MigrateOptions {
        file_locks: true,
        ..Default::default()
    };
    let (r, cfg) = migrate_with(Config::default(), Strategy::Cold, options).await;
    assert_eq!(r.outcome, Outcome::Migrated);
    // ferry froze the container and holds its own network lock: CRIU leaves both.
    let dumps = cfg.dumps.lock().unwrap().clone();
    assert_eq!(
        dumps,
        [CheckpointSpec {
            leave_running: true,
            tcp_established: true,
            file_locks: true,
            pages: PageTransport::ImagesDir,
            network_lock: NetworkLock::Skip,
        }]
    );
    let restores = cfg.restores.lock().unwrap().clone();
    assert_eq!(
        restores,
        [RestoreSpec {
            tcp_established: true,
            file_locks: true,
            lazy_pages: false,
            network_lock: NetworkLock::Skip,
            tcp_close: false,
        }]
    );
    let options = MigrateOptions {
        tcp_established: false,
        ..Default::default()
    };
    let (_, cfg) = migrate_with(Config::default(), Strategy::Postcopy, options).await;
    let dumps = cfg.dumps.lock().unwrap().clone();
    assert_eq!(dumps[0].pages, PageTransport::LazySocket { fd: 100 });
    assert!(!dumps[0].tcp_established);
    assert!(cfg.restores.lock().unwrap()[0].lazy_pages);
}

#[tokio::test]
async fn a_fault_before_the_commit_rolls_back_every_strategy() {
    let faults = [
        (Step::Connect, "destination unreachable"),
        (Step::Admit, "already exists on dst"),
        (Step::DestNetwork, "File exists"),
        (Step::Freeze, "cannot freeze the container"),
        (Step::Lock, "lock failed"),
        (Step::Dump, "checkpoint failed"),
        (Step::Detach, "detach failed"),
        (Step::Attach, "attach failed"),
        (Step::Restore, "could not restore"),
    ];
    for s in ALL {
        for (fault, says) in faults {
            let (r, cfg) = migrate(with(&[fault]), s).await;
            let reason = r.reason.clone().unwrap_or_default();
            assert_back_at_source(&cfg.log, r.outcome, &reason);
            assert!(reason.contains(says), "{s} {fault:?}: {reason}");
        }
    }
}

#[tokio::test]
async fn held_packets_go_where_the_container_runs_on() {
    for s in ALL {
        // The source's peers' packets (not its own) ride with the commit; the
        // destination delivers them, then its own, once it has unlocked.
        let (r, cfg) = migrate(Config::default(), s).await;
        assert_eq!(r.outcome, Outcome::Migrated);
        let log = &cfg.log;
        let delivered = "dst deliver in=src,dst out=1";
        assert!(
            log.before("dst unlock", delivered),
            "{s}: {:#?}",
            log.lines()
        );
        assert!(
            !log.of("src").iter().any(|l| l.starts_with("deliver")),
            "{s}"
        );
        // Rolled back, the source delivers its own copies once unlocked.
        let (r, cfg) = migrate(with(&[Step::Restore]), s).await;
        assert_eq!(r.outcome, Outcome::RolledBack);
        let log = &cfg.log;
        assert!(
            log.before("src unlock", "src deliver in=src out=1"),
            "{s}: {:#?}",
            log.lines()
        );
        assert!(
            !log.of("dst").iter().any(|l| l.starts_with("deliver")),
            "{s}"
        );
    }
}

#[tokio::test]
async fn the_report_says_when_each_peer_came_back() {
    for s in ALL {
        let (r, _) = migrate(Config::default(), s).await;
        assert_eq!(r.outcome, Outcome::Migrated, "{s}: {r:?}");
        assert_eq!(r.peers_resumed.len(), 1, "{s}: {r:?}");
        let p = &r.peers_resumed[0];
        assert_eq!((p.peer.as_str(), p.local_port), ("10.77.0.100:40000", 6379));
        // Counted from the end of the restore: the watch's 5 ms and the commit before it.
        assert!(p.first_packet_ms.unwrap() >= 5.0, "{s}: {p:?}");
        assert!(
            r.notes
                .iter()
                .any(|n| n.starts_with("destination watch-peers:")),
            "{s}"
        );
    }
}

#[tokio::test]
async fn a_failed_dump_reports_criu_s_own_words() {
    let (r, _) = migrate(with(&[Step::Dump]), Strategy::Cold).await;
    let e = r.criu_errors.expect("CRIU's lines");
    assert!(e.lines.iter().any(|l| l.contains("file locks")), "{e:?}");
    assert!(r.reason.unwrap().contains("--file-locks"));
}

#[tokio::test]
async fn a_restore_failure_keeps_the_dump_and_rolls_back_in_order() {
    let (r, cfg) = migrate(with(&[Step::Restore]), Strategy::Cold).await;
    assert_eq!(r.outcome, Outcome::RolledBack);
    // Reattach with the lock still holding, unlock, take the sockets out of repair mode,
    // thaw, announce the address, then deliver what the lock held.
    let src = cfg.log.of("src");
    let tail: Vec<&str> = src.iter().rev().take(7).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "attach",
            "unlock",
            "release sockets",
            "thaw",
            "announce",
            "take held",
            "deliver in=src out=1"
        ],
        "{src:?}"
    );
    assert!(r.reason.unwrap().contains("Unable to map ANON_VMA"));
}

#[tokio::test]
async fn page_faults_roll_back_where_they_strike() {
    for (s, fault) in [
        (Strategy::Cold, Step::Stream),
        (Strategy::Cold, Step::DestPages),
        (Strategy::Precopy, Step::Round(2)),
        (Strategy::Precopy, Step::Stream),
        (Strategy::Hybrid, Step::Round(1)),
        (Strategy::Postcopy, Step::LazyReady),
    ] {
        let (r, cfg) = migrate(with(&[fault]), s).await;
        assert_back_at_source(&cfg.log, r.outcome, r.reason.as_deref().unwrap_or(""));
    }
}

#[tokio::test]
async fn a_page_stream_the_destination_broke_is_reported_with_its_reason() {
    // The destination's page task fails (a full images tmpfs, say), so the source's
    // stream breaks: the report carries the destination's reason, not only the source's.
    for s in [Strategy::Cold, Strategy::Precopy] {
        let (r, cfg) = migrate(with(&[Step::Stream, Step::DestPages]), s).await;
        let reason = r.reason.clone().unwrap_or_default();
        assert_back_at_source(&cfg.log, r.outcome, &reason);
        assert!(
            reason.contains("the destination says: the page transfer failed:"),
            "{s}: {reason}"
        );
    }
    // A destination whose pages were fine answers the abort plainly.
    let (r, _) = migrate(with(&[Step::Stream]), Strategy::Cold).await;
    assert!(!r
        .reason
        .unwrap_or_default()
        .contains("the destination says"));
}

#[tokio::test]
async fn a_peer_that_vanishes_mid_step_leaves_the_container_at_the_source() {
    // The connection breaks after so many frames: during the bundle, the images, the
    // restore.
    for cut in [1, 3, 5, 7] {
        for s in ALL {
            let (r, cfg) = migrate(with(&[Step::PeerCut(cut)]), s).await;
            let reason = r.reason.clone().unwrap_or_default();
            assert_back_at_source(&cfg.log, r.outcome, &reason);
            assert!(
                reason.contains("lost the destination"),
                "{s} {cut}: {reason}"
            );
        }
    }
}

#[tokio::test]
async fn a_commit_in_doubt_is_resolved_by_asking_the_destination() {
    // Frames from the source: prepare, bundle done, images (2 files + done), restore,
    // commit; the destination's answers count too. Cut right after the commit went out.
    let base = || Config::default();
    let (r, cfg) = migrate(base(), Strategy::Cold).await;
    assert_eq!(r.outcome, Outcome::Migrated);
    let frames = cfg.connects.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(frames, 1, "one connection when nothing breaks");

    // The destination committed, but its answer was lost: a second connection asks,
    // and the source releases its copy.
    let mut found = false;
    for cut in 8..14 {
        let (r, cfg) = migrate(with(&[Step::PeerCut(cut)]), Strategy::Cold).await;
        if cfg.log.has("dst adopt") {
            assert_eq!(r.outcome, Outcome::Migrated, "{cut}: {r:?}");
            assert!(r
                .notes
                .iter()
                .any(|n| n.contains("confirmed the commit after the connection broke")));
            assert!(cfg.log.has("src kill") && !cfg.log.has("src thaw"));
            found = true;
            break;
        }
    }
    assert!(found, "some cut falls between the commit and its answer");
}

#[tokio::test]
async fn a_destination_that_cannot_be_asked_keeps_the_container_frozen() {
    for cut in 8..14 {
        let (r, cfg) = migrate(
            with(&[Step::PeerCut(cut), Step::ConnectOnce]),
            Strategy::Cold,
        )
        .await;
        if cfg.log.has("dst adopt") && r.outcome != Outcome::Migrated {
            assert_eq!(r.outcome, Outcome::Failed);
            assert!(r.reason.unwrap().contains("stays frozen"));
            let src = cfg.log.of("src");
            assert!(
                !src.contains(&"thaw".to_string()),
                "never runs twice: {src:?}"
            );
            assert!(!src.contains(&"kill".to_string()), "never lost: {src:?}");
            return;
        }
    }
    panic!("no cut fell between the commit and its answer");
}

#[tokio::test]
async fn post_copy_broken_after_the_commit_keeps_the_source_frozen() {
    for s in [Strategy::Postcopy, Strategy::Hybrid] {
        let (r, cfg) = migrate(with(&[Step::Pump, Step::Daemon]), s).await;
        assert_eq!(r.outcome, Outcome::Failed, "{s}");
        let reason = r.reason.unwrap();
        assert!(reason.contains("ferry resume redis"), "{reason}");
        let src = cfg.log.of("src");
        assert!(!src.contains(&"thaw".to_string()), "{s}: frozen: {src:?}");
        assert!(!src.contains(&"kill".to_string()), "{s}: intact: {src:?}");
        // The destination stopped its copy, which lacked memory, and forgot it.
        assert!(cfg.log.has("dst kill"), "{s}");
        assert!(
            cfg.log.has("dst delete") && cfg.log.has("dst forget"),
            "{s}"
        );
        // Never recorded as committed: a source that restarts resumes its copy.
        let states: Vec<String> = cfg
            .log
            .of("dst")
            .into_iter()
            .filter(|l| l.starts_with("session"))
            .collect();
        assert_eq!(
            states,
            ["session Pending", "session Pending", "session Dropped"],
            "{s}"
        );
    }
}

#[tokio::test]
async fn a_page_channel_closed_after_every_page_arrived_is_a_success() {
    // The source's pump breaks, but the destination had every page and says so.
    let (r, cfg) = migrate(with(&[Step::Pump]), Strategy::Postcopy).await;
    assert_eq!(r.outcome, Outcome::Migrated, "{r:?}");
    assert!(cfg.log.has("src kill"), "the source copy goes");
}

#[tokio::test]
async fn post_copy_reports_its_pages() {
    let (r, cfg) = migrate(Config::default(), Strategy::Postcopy).await;
    assert_eq!(r.outcome, Outcome::Migrated);
    assert_eq!(r.pages_total, Some(10));
    assert_eq!(r.pages_on_demand, Some(4));
    assert_eq!(r.pages_pushed, Some(6));
    assert!(r.postcopy_ms.is_some());
    // Committed only once the last page is in.
    assert!(cfg.log.before("dst go", "dst session Committed"));
    // Background pages start only once the container may talk.
    assert!(cfg.log.before("dst unlock", "dst go"));
    assert!(cfg.log.before("src pump dedupe=false", "src detach"));
}

#[tokio::test]
async fn hybrid_switches_to_post_copy_after_its_rounds() {
    let (r, cfg) = migrate(Config::default(), Strategy::Hybrid).await;
    assert_eq!(r.outcome, Outcome::Migrated);
    let log = &cfg.log;
    assert!(log.before("src round 1", "src switch to post-copy"));
    assert!(log.before("src switch to post-copy", "src freeze"));
    assert!(
        log.has("src pump dedupe=true"),
        "held pages travel as references"
    );
    assert!(log.has("dst daemon with store"));
    let pc = r.precopy.expect("the rounds in the report");
    assert!(!pc.rounds.is_empty());
    assert_eq!(pc.final_pages_referenced, 8);
    assert_eq!(pc.final_pages_sent, 2);
}

#[tokio::test]
async fn the_stopping_rule_decides_inside_the_round_loop() {
    // 1 GiB of memory that converges: 100 MiB, then 10, then 1 over an 1 Gbit/s link.
    let big = Config {
        resident: 1 << 30,
        ..Default::default()
    };
    let (r, cfg) = migrate(big, Strategy::Precopy).await;
    assert_eq!(r.outcome, Outcome::Migrated);
    let pc = r.precopy.expect("rounds");
    assert_eq!(pc.stop_reason, StopReason::Converged, "{pc:?}");
    assert_eq!(pc.rounds.len(), 3);
    assert!(cfg.log.before("src round 3", "src freeze"));
    assert!(!cfg.log.has("src round 4"));

    // Memory dirtied as fast as the link carries it: no progress after three rounds.
    let dirty = Config {
        rounds: vec![64 << 20],
        round_ms: 2700.0,
        resident: 64 << 20,
        ..Default::default()
    };
    let (r, _) = migrate(dirty, Strategy::Precopy).await;
    let pc = r.precopy.expect("rounds");
    assert_eq!(pc.stop_reason, StopReason::NoProgress);
    assert_eq!(pc.rounds.len(), 3);

    // --max-rounds and --threshold are the user's.
    let dirty = Config {
        rounds: vec![64 << 20],
        round_ms: 2700.0,
        ..Default::default()
    };
    let options = MigrateOptions {
        max_rounds: Some(2),
        ..Default::default()
    };
    let (r, _) = migrate_with(dirty, Strategy::Precopy, options).await;
    let pc = r.precopy.expect("rounds");
    assert_eq!(pc.stop_reason, StopReason::MaxRounds);
    assert_eq!(pc.rounds.len(), 2);

    let options = MigrateOptions {
        threshold_pct: Some(5.0),
        ..Default::default()
    };
    let big = Config {
        resident: 1 << 30,
        ..Default::default()
    };
    let (r, _) = migrate_with(big, Strategy::Precopy, options).await;
    let pc = r.precopy.expect("rounds");
    assert_eq!(pc.stop_reason, StopReason::Threshold);
    assert_eq!(pc.rounds.len(), 3, "1 MiB is under 5 % of 100 MiB");

    // Each round's prediction is the rule's, as the estimator computes it alone.
    let mut est = Estimator::default();
    let rule = StopRule::from_options(&MigrateOptions::default());
    let first = pc.rounds[0].clone();
    est.push(
        ferry_types::PrecopyRound {
            predicted_downtime_ms: 0.0,
            ..first.clone()
        },
        first.scanned_bytes,
        &rule,
        &Costs::default(),
    );
    assert_eq!(
        est.rounds[0].predicted_downtime_ms,
        first.predicted_downtime_ms
    );
}

#[tokio::test]
async fn pre_copy_s_final_copy_counts_what_the_rounds_did_not_send() {
    let (r, _) = migrate(Config::default(), Strategy::Precopy).await;
    let pc = r.precopy.expect("rounds");
    // The fake's final stream sends 1 MiB of files as 128 pages and 128 references.
    assert_eq!(pc.final_pages_sent, 128);
    assert_eq!(pc.final_pages_referenced, 128);
    assert_eq!(pc.final_wire_bytes, 512 << 10);
}

#[tokio::test]
async fn a_container_that_exits_by_itself_is_said_so() {
    let cfg = Config {
        exited: true,
        faults: vec![Step::Dump],
        ..Default::default()
    };
    let (r, _) = migrate(cfg, Strategy::Cold).await;
    assert!(r.reason.unwrap().contains("exited by itself"));
}

#[tokio::test]
async fn a_move_to_the_host_it_runs_on_changes_nothing() {
    let cfg = Config {
        source_name: "dst",
        ..Default::default()
    };
    let (r, cfg) = migrate_result(cfg, Strategy::Cold, MigrateOptions::default()).await;
    let e = r.unwrap_err().to_string();
    assert_eq!(
        e,
        "container 'redis' already runs on dst; there is nothing to move"
    );
    assert!(cfg.log.of("src").is_empty(), "{:#?}", cfg.log.lines());
    assert!(cfg.log.of("dst").is_empty(), "{:#?}", cfg.log.lines());
}

#[tokio::test]
async fn a_rollback_is_checked_never_assumed() {
    // Every undo step succeeds, but the container does not run afterwards.
    let (r, _) = migrate(with(&[Step::Restore, Step::Lost]), Strategy::Cold).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let reason = r.reason.unwrap();
    assert!(reason.contains("the container was lost"), "{reason}");
    assert!(reason.contains("its processes are gone"), "{reason}");
    // An undo step that fails says so.
    let (r, _) = migrate(with(&[Step::Restore, Step::Thaw]), Strategy::Cold).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.reason.unwrap().contains("rolling back also failed: Thaw"));
}
