//! Round trips of every message family, and what each refuses.

use ferry_types::{
    DestStats, FileEntry, FileKind, MigrateOptions, NetSpec, Outcome, Report, SessionState,
    Strategy,
};

use crate::*;

fn round_trip<M: WireMessage + PartialEq + std::fmt::Debug>(m: M) {
    assert_eq!(M::decode(&m.encode()).unwrap(), m);
}

#[test]
fn handshake_messages_round_trip() {
    round_trip(Handshake::Hello {
        role: Role::Peer,
        host: "a".into(),
        nonce: "00".into(),
        session: None,
    });
    round_trip(Handshake::Refused {
        reason: "no".into(),
    });
}

#[test]
fn control_messages_round_trip_with_a_typed_report() {
    round_trip(ControlRequest::Migrate {
        container: "redis".into(),
        dest: "b".into(),
        options: MigrateOptions::default(),
    });
    let mut report = Report::new(ferry_types::Operation::Migrate, "redis");
    report.outcome = Outcome::Migrated;
    report.strategy = Some(Strategy::Precopy);
    round_trip(ControlReply::Report {
        report: Box::new(report),
    });
}

#[test]
fn peer_messages_round_trip() {
    round_trip(PeerRequest::Prepare(Prepare {
        session: "s".into(),
        container: "redis".into(),
        strategy: Strategy::Hybrid,
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
        readdress_from: Some("10.0.0.1".into()),
    }));
    round_trip(PeerRequest::BundleFile {
        entry: FileEntry {
            path: "rootfs/etc".into(),
            kind: FileKind::Dir,
            mode: 0o755,
            size: 0,
            target: None,
            mtime: 0,
        },
    });
    round_trip(PeerReply::Restored {
        stats: DestStats::default(),
    });
    round_trip(PeerReply::Resolution {
        session: "s".into(),
        state: SessionState::Committed,
    });
}

#[test]
fn unknown_fields_types_and_families_are_refused() {
    assert!(ControlRequest::decode(br#"{"type":"remove","name":"x","extra":1}"#).is_err());
    assert!(ControlRequest::decode(br#"{"type":"launch_missiles"}"#).is_err());
    assert!(ControlRequest::decode(b"not json").is_err());
    // A peer request on a control connection is not a control request.
    let restore = PeerRequest::Restore.encode();
    let e = ControlRequest::decode(&restore).unwrap_err().to_string();
    assert!(e.contains("control request"), "{e}");
    // Reports are typed: a report that is not one is refused.
    assert!(ControlReply::decode(br#"{"type":"report","report":{"x":1}}"#).is_err());
    // The destination only takes strategies it can run.
    let auto = br#"{"type":"prepare","session":"s","container":"c","strategy":"auto","bundle_digest":"d","net":{"address":"10.0.0.2/24","mac":"02:42:0a:00:00:02"},"tcp_established":true}"#;
    assert!(PeerRequest::decode(auto).is_err());
}
