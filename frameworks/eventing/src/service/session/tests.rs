use super::*;
use proptest::prelude::*;

const OWNER: &str = "team-a";

fn codec() -> OffsetTokenCodec {
    OffsetTokenCodec::new(&[7u8; 32]).unwrap()
}

fn small() -> SessionConfig {
    SessionConfig {
        max_sessions: 4,
        idle_timeout_ms: 1_000,
        read_ahead_events: 5,
        read_ahead_bytes: 1_000,
        max_read_events: 3,
        max_read_bytes: 100,
        max_write_events: 3,
        max_write_bytes: 100,
        max_event_bytes: 40,
        write_buffer_events: 4,
        write_buffer_bytes: 120,
        dedup_window: 3,
        closed_memory: 2,
    }
}

fn table(cfg: SessionConfig) -> Sessions {
    Sessions::new(cfg, codec()).unwrap()
}

fn spec(selector: Selector, mode: Mode) -> SessionSpec {
    SessionSpec {
        topic: "orders".into(),
        selector,
        mode,
        start: StartFrom::Earliest,
        offset_token: None,
    }
}

fn rec(partition: i32, offset: i64, value: &str) -> Record {
    Record {
        partition,
        offset,
        timestamp_ms: Some(1_700_000_000_000),
        key: None,
        value: value.as_bytes().to_vec(),
        write_id: None,
    }
}

fn ev(id: &str, value: &str) -> WriteEvent {
    WriteEvent {
        id: id.into(),
        partition: None,
        key: None,
        value: value.as_bytes().to_vec(),
    }
}

fn open(t: &mut Sessions, ids: &mut SessionIdGen, selector: Selector, mode: Mode) -> SessionId {
    let id = ids.next_id();
    t.allocate(id, OWNER, spec(selector, mode), 0).unwrap();
    id
}

fn read(t: &mut Sessions, id: SessionId, after: Option<u64>) -> Vec<(u64, i32, i64)> {
    t.read(
        id,
        OWNER,
        ReadParams {
            after,
            ..ReadParams::default()
        },
        0,
    )
    .unwrap()
    .events
    .iter()
    .map(|d| (d.seq, d.record.partition, d.record.offset))
    .collect()
}

#[test]
fn config_validation() {
    assert!(SessionConfig::default().validate().is_ok());
    let mut c = small();
    c.max_sessions = 0;
    assert_eq!(
        Sessions::new(c, codec()).unwrap_err().to_string(),
        "session config: max_sessions must be positive"
    );
    let mut c = small();
    c.max_write_events = 10;
    assert!(c.validate().is_err());
    let mut c = small();
    c.max_event_bytes = 1_000;
    assert!(c.validate().is_err());
}

#[test]
fn session_ids() {
    let mut g = SessionIdGen::from_seed(1);
    let a = g.next_id();
    let b = g.next_id();
    assert_ne!(a, b);
    assert_eq!(SessionIdGen::from_seed(1).next_id(), a);
    let text = a.to_string();
    assert_eq!(text.len(), 32);
    assert_eq!(SessionId::parse(&text).unwrap(), a);
    assert_eq!(SessionId::parse(&text.to_uppercase()).unwrap(), a);
    for bad in ["", "xyz", &"g".repeat(32), &"a".repeat(31), &"é".repeat(16)] {
        let e = SessionId::parse(bad).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "invalid_session_id"));
        assert!(e.to_string().contains("sessionId"));
    }
    assert_ne!(SessionId::random(), SessionId::random());
    assert!(a.shard(64).0 < 64);
    assert_eq!(format!("{a:?}"), format!("SessionId({a})"));
}

#[test]
fn allocate_checks() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(2);
    let id = g.next_id();
    let a = t
        .allocate(id, OWNER, spec(Selector::Partition(0), Mode::Read), 0)
        .unwrap();
    assert!(a.positions.is_empty());
    let state = t.codec().decode(&a.offset_token).unwrap();
    assert_eq!(state.topic, "orders");
    assert_eq!(
        t.allocate(id, OWNER, spec(Selector::Partition(0), Mode::Read), 0),
        Err(SessionError::SessionIdInUse { id })
    );
    let mut bad = spec(Selector::AllPartitions, Mode::Read);
    bad.topic = "no spaces".into();
    let e = t.allocate(g.next_id(), OWNER, bad, 0).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.to_string().starts_with("field \"topic\""), "{e}");
    let e = t
        .allocate(
            g.next_id(),
            OWNER,
            spec(Selector::Partition(-1), Mode::Read),
            0,
        )
        .unwrap_err();
    assert!(e.to_string().starts_with("field \"partition\""), "{e}");
    let e = t
        .allocate(
            g.next_id(),
            OWNER,
            spec(Selector::Group(String::new()), Mode::Read),
            0,
        )
        .unwrap_err();
    assert!(e.to_string().starts_with("field \"group\""), "{e}");
    let mut with_bad_token = spec(Selector::AllPartitions, Mode::Read);
    with_bad_token.offset_token = Some("garbage!".into());
    let e = t
        .allocate(g.next_id(), OWNER, with_bad_token, 0)
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "invalid_offset_token"));
    for _ in 0..3 {
        open(&mut t, &mut g, Selector::AllPartitions, Mode::Read);
    }
    assert_eq!(t.len(), 4);
    let e = t
        .allocate(
            g.next_id(),
            OWNER,
            spec(Selector::AllPartitions, Mode::Read),
            0,
        )
        .unwrap_err();
    assert_eq!(e, SessionError::TooManySessions { limit: 4 });
    assert_eq!(e.status(), 429);
    assert_eq!(t.len(), 4);
}

#[test]
fn draining_refuses_new_sessions_only() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(3);
    let id = open(&mut t, &mut g, Selector::AllPartitions, Mode::ReadWrite);
    t.drain();
    assert!(t.is_draining());
    let e = t
        .allocate(
            g.next_id(),
            OWNER,
            spec(Selector::AllPartitions, Mode::Read),
            0,
        )
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (421, "backend_draining"));
    assert!(t.write(id, OWNER, vec![ev("w1", "x")], 0).is_ok());
    assert_eq!(t.pending_write_count(), 1);
    let closed = t.close_all();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].reason, CloseReason::Shutdown);
    assert_eq!(closed[0].pending_writes.len(), 1);
    assert!(t.is_empty());
}

#[test]
fn read_ack_and_offsets_advance_only_on_ack() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(4);
    let id = open(&mut t, &mut g, Selector::AllPartitions, Mode::Read);
    assert_eq!(t.assign_partition(id, 0, 10).unwrap(), 10);
    assert_eq!(t.assign_partition(id, 1, 0).unwrap(), 0);
    for (p, o) in [(0, 10), (1, 0), (0, 11), (1, 1)] {
        assert!(matches!(
            t.offer(id, rec(p, o, "v")).unwrap(),
            Offer::Accepted(Flow::Fetch { .. })
        ));
    }
    // Reading does not move the committed positions.
    assert_eq!(
        read(&mut t, id, None),
        vec![(1, 0, 10), (2, 1, 0), (3, 0, 11)]
    );
    let committed: Positions = [(0, 10), (1, 0)].into_iter().collect();
    assert_eq!(t.get(&id).unwrap().positions(), &committed);
    // Ack of something never delivered: error, nothing changes.
    let e = t.ack(id, OWNER, 4, 0).unwrap_err();
    assert_eq!(
        e,
        SessionError::AckBeyondDelivered {
            up_to: 4,
            last_delivered: 3
        }
    );
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("upTo"));
    assert_eq!(t.get(&id).unwrap().positions(), &committed);
    assert_eq!(t.get(&id).unwrap().acked(), 0);
    // Ack 2: partition 0 -> 11, partition 1 -> 1.
    let a = t.ack(id, OWNER, 2, 0).unwrap();
    assert_eq!(a.acked, 2);
    assert_eq!(a.positions, [(0, 11), (1, 1)].into_iter().collect());
    assert_eq!(
        t.codec().decode(&a.offset_token).unwrap().positions,
        a.positions
    );
    // Acking again is a no-op.
    let again = t.ack(id, OWNER, 1, 0).unwrap();
    assert_eq!(again.acked, 2);
    assert_eq!(again.positions, a.positions);
    // The rest.
    assert_eq!(read(&mut t, id, None), vec![(4, 1, 1)]);
    let a = t.ack(id, OWNER, 4, 0).unwrap();
    assert_eq!(a.positions, [(0, 12), (1, 2)].into_iter().collect());
    assert_eq!(t.get(&id).unwrap().held_events(), 0);
    assert_eq!(t.get(&id).unwrap().held_bytes(), 0);
    assert!(read(&mut t, id, None).is_empty());
}

#[test]
fn read_retry_with_after_redelivers_unacked() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(5);
    let id = open(&mut t, &mut g, Selector::Partition(0), Mode::Read);
    for o in 0..5 {
        t.offer(id, rec(0, o, "v")).unwrap();
    }
    assert_eq!(
        read(&mut t, id, None),
        vec![(1, 0, 0), (2, 0, 1), (3, 0, 2)]
    );
    // The answer was lost: the client retries after 0 and gets the same.
    assert_eq!(
        read(&mut t, id, Some(0)),
        vec![(1, 0, 0), (2, 0, 1), (3, 0, 2)]
    );
    // After 2: 3 again, then new ones.
    assert_eq!(
        read(&mut t, id, Some(2)),
        vec![(3, 0, 2), (4, 0, 3), (5, 0, 4)]
    );
    t.ack(id, OWNER, 3, 0).unwrap();
    // After an acked offset: from the first unacked.
    assert_eq!(read(&mut t, id, Some(1)), vec![(4, 0, 3), (5, 0, 4)]);
    let e = t
        .read(
            id,
            OWNER,
            ReadParams {
                after: Some(6),
                ..ReadParams::default()
            },
            0,
        )
        .unwrap_err();
    assert_eq!(
        e,
        SessionError::ReadAfterUndelivered {
            after: 6,
            last_delivered: 5
        }
    );
    assert!(e.to_string().contains("\"after\""));
}

#[test]
fn read_limits() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(6);
    let id = open(&mut t, &mut g, Selector::Partition(0), Mode::Read);
    let big = "x".repeat(60);
    t.offer(id, rec(0, 0, &big)).unwrap();
    t.offer(id, rec(0, 1, &big)).unwrap();
    t.offer(id, rec(0, 2, "s")).unwrap();
    // 100 bytes: one 60-byte event fits, two do not.
    let b = t.read(id, OWNER, ReadParams::default(), 0).unwrap();
    assert_eq!(b.events.len(), 1);
    assert!(b.more);
    // A single event larger than maxBytes is still delivered alone.
    let b = t
        .read(
            id,
            OWNER,
            ReadParams {
                max_bytes: Some(10),
                ..ReadParams::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(b.events.len(), 1);
    assert_eq!(b.events[0].seq, 2);
    let b = t
        .read(
            id,
            OWNER,
            ReadParams {
                max_events: Some(1),
                ..ReadParams::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(b.events.len(), 1);
    assert!(!b.more);
    for (params, field) in [
        (
            ReadParams {
                max_events: Some(4),
                ..ReadParams::default()
            },
            "maxEvents",
        ),
        (
            ReadParams {
                max_events: Some(0),
                ..ReadParams::default()
            },
            "maxEvents",
        ),
        (
            ReadParams {
                max_bytes: Some(101),
                ..ReadParams::default()
            },
            "maxBytes",
        ),
    ] {
        let e = t.read(id, OWNER, params, 0).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains(field), "{e}");
    }
}

#[test]
fn bounded_read_ahead_and_backpressure() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(7);
    let id = open(&mut t, &mut g, Selector::Partition(0), Mode::Read);
    assert_eq!(
        t.flow(id).unwrap(),
        Flow::Fetch {
            events: 5,
            bytes: 1_000
        }
    );
    for o in 0..4 {
        assert!(t.offer(id, rec(0, o, "v")).unwrap() != Offer::Duplicate);
    }
    assert_eq!(
        t.offer(id, rec(0, 4, "v")).unwrap(),
        Offer::Accepted(Flow::Pause)
    );
    assert_eq!(
        t.offer(id, rec(0, 5, "v")).unwrap(),
        Offer::Full(rec(0, 5, "v"))
    );
    // Delivered but unacked events still count.
    read(&mut t, id, None);
    assert_eq!(t.flow(id).unwrap(), Flow::Pause);
    assert_eq!(
        t.offer(id, rec(0, 5, "v")).unwrap(),
        Offer::Full(rec(0, 5, "v"))
    );
    let a = t.ack(id, OWNER, 2, 0).unwrap();
    assert_eq!(
        a.flow,
        Flow::Fetch {
            events: 2,
            bytes: 997
        }
    );
    assert!(matches!(
        t.offer(id, rec(0, 5, "v")).unwrap(),
        Offer::Accepted(_)
    ));
    // Bytes bound too.
    let mut c = small();
    c.read_ahead_bytes = 10;
    let mut t = table(c);
    let id = open(&mut t, &mut g, Selector::Partition(0), Mode::Read);
    // The first record always fits, even if large.
    assert_eq!(
        t.offer(id, rec(0, 0, &"x".repeat(30))).unwrap(),
        Offer::Accepted(Flow::Pause)
    );
    assert!(matches!(
        t.offer(id, rec(0, 1, "x")).unwrap(),
        Offer::Full(_)
    ));
}

#[test]
fn duplicate_and_foreign_records() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(8);
    let id = open(&mut t, &mut g, Selector::Partition(2), Mode::Read);
    assert!(matches!(
        t.offer(id, rec(2, 5, "a")).unwrap(),
        Offer::Accepted(_)
    ));
    assert_eq!(t.offer(id, rec(2, 5, "a")).unwrap(), Offer::Duplicate);
    assert_eq!(t.offer(id, rec(2, 3, "a")).unwrap(), Offer::Duplicate);
    // Gaps (compaction) are fine.
    assert!(matches!(
        t.offer(id, rec(2, 9, "a")).unwrap(),
        Offer::Accepted(_)
    ));
    assert_eq!(
        t.offer(id, rec(1, 0, "a")),
        Err(FeedError::WrongPartition { id, partition: 1 })
    );
    assert_eq!(
        t.assign_partition(id, 1, 0),
        Err(FeedError::WrongPartition { id, partition: 1 })
    );
    let other = g.next_id();
    assert_eq!(
        t.offer(other, rec(2, 0, "a")),
        Err(FeedError::UnknownSession(other))
    );
    assert!(t.flow(other).is_err());
}

#[test]
fn resume_from_token() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(9);
    let id = open(
        &mut t,
        &mut g,
        Selector::Group("billing".into()),
        Mode::Read,
    );
    t.assign_partition(id, 0, 0).unwrap();
    for o in 0..3 {
        t.offer(id, rec(0, o, "v")).unwrap();
    }
    read(&mut t, id, None);
    let token = t.ack(id, OWNER, 2, 0).unwrap().offset_token;
    // The backend dies; a new session starts from the token.
    let mut t2 = table(small());
    let mut s = spec(Selector::Group("billing".into()), Mode::Read);
    s.offset_token = Some(token.clone());
    let id2 = g.next_id();
    let a = t2.allocate(id2, OWNER, s, 0).unwrap();
    assert_eq!(a.positions, [(0, 2)].into_iter().collect());
    // Seek to the committed position, not to the default start.
    assert_eq!(t2.assign_partition(id2, 0, 0).unwrap(), 2);
    assert_eq!(t2.assign_partition(id2, 1, 40).unwrap(), 40);
    assert_eq!(t2.offer(id2, rec(0, 1, "v")).unwrap(), Offer::Duplicate);
    assert!(matches!(
        t2.offer(id2, rec(0, 2, "v")).unwrap(),
        Offer::Accepted(_)
    ));
    assert_eq!(read(&mut t2, id2, None), vec![(1, 0, 2)]);
    // Token for another topic or selector.
    let mut s = spec(Selector::Group("billing".into()), Mode::Read);
    s.topic = "payments".into();
    s.offset_token = Some(token.clone());
    let e = t2.allocate(g.next_id(), OWNER, s, 0).unwrap_err();
    assert_eq!(e.code(), "offset_token_mismatch");
    assert!(e.to_string().contains("offsetToken"));
    let mut s = spec(Selector::Partition(0), Mode::Read);
    s.offset_token = Some(token);
    let e = t2.allocate(g.next_id(), OWNER, s, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field \"offsetToken\" is for selector consumer group \"billing\", but the request asks for partition 0"
    );
    // A token from another service secret.
    let other = OffsetTokenCodec::new(&[8u8; 32]).unwrap();
    let mut s = spec(Selector::AllPartitions, Mode::Read);
    s.offset_token = Some(other.encode(&OffsetState {
        topic: "orders".into(),
        selector: Selector::AllPartitions,
        positions: [(0, 1_000_000)].into_iter().collect(),
    }));
    assert_eq!(
        t2.allocate(g.next_id(), OWNER, s, 0).unwrap_err(),
        SessionError::InvalidOffsetToken(OffsetTokenError::BadSignature)
    );
}

#[test]
fn revoke_partitions_drops_undelivered_only() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(10);
    let id = open(&mut t, &mut g, Selector::Group("g".into()), Mode::Read);
    t.assign_partition(id, 0, 0).unwrap();
    t.assign_partition(id, 1, 0).unwrap();
    t.offer(id, rec(0, 0, "a")).unwrap();
    t.offer(id, rec(1, 0, "b")).unwrap();
    t.offer(id, rec(0, 1, "c")).unwrap();
    t.offer(id, rec(1, 1, "d")).unwrap();
    let b = t
        .read(
            id,
            OWNER,
            ReadParams {
                max_events: Some(2),
                ..ReadParams::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(b.events.len(), 2);
    t.revoke_partitions(id, &[0]).unwrap();
    assert_eq!(t.get(&id).unwrap().held_events(), 3);
    assert_eq!(t.get(&id).unwrap().held_bytes(), 3);
    // Re-assigned: resume after what was delivered.
    assert_eq!(t.assign_partition(id, 0, 0).unwrap(), 1);
    assert_eq!(read(&mut t, id, None), vec![(3, 1, 1)]);
    t.ack(id, OWNER, 3, 0).unwrap();
    assert_eq!(
        t.get(&id).unwrap().positions(),
        &[(0, 1), (1, 2)].into_iter().collect::<Positions>()
    );
    assert!(t.revoke_partitions(g.next_id(), &[0]).is_err());
}

#[test]
fn writes_are_deduplicated_and_acked_by_kafka() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(11);
    let id = open(&mut t, &mut g, Selector::Partition(3), Mode::Write);
    let out = t
        .write(id, OWNER, vec![ev("a", "1"), ev("b", "2")], 0)
        .unwrap();
    assert_eq!(out.produce.len(), 2);
    assert_eq!(out.produce[0].partition, Some(3));
    assert_eq!(out.produce[0].topic, "orders");
    assert!(out
        .results
        .iter()
        .all(|r| r.status == WriteStatus::Pending && !r.duplicate));
    // A retry while pending produces nothing new.
    let out = t
        .write(id, OWNER, vec![ev("a", "1"), ev("c", "3")], 0)
        .unwrap();
    assert_eq!(out.produce.len(), 1);
    assert_eq!(out.produce[0].write_id, "c");
    assert!(out.results[0].duplicate);
    // Kafka confirms.
    t.write_acked(id, "a", 3, 100).unwrap();
    assert_eq!(
        t.write_acked(id, "a", 3, 100),
        Err(FeedError::UnknownWrite {
            id,
            write_id: "a".into()
        })
    );
    let out = t.write(id, OWNER, vec![ev("a", "1")], 0).unwrap();
    assert!(out.produce.is_empty());
    assert_eq!(
        out.results[0],
        WriteResult {
            id: "a".into(),
            status: WriteStatus::Acked {
                partition: 3,
                offset: 100
            },
            duplicate: true
        }
    );
    // Kafka refuses: failed, and a retry writes it again.
    t.write_failed(id, "b", "message too large").unwrap();
    assert_eq!(
        t.write_status(id, OWNER, &["b".into(), "zzz".into()], 0)
            .unwrap(),
        vec![
            WriteStatus::Failed {
                reason: "message too large".into()
            },
            WriteStatus::Unknown
        ]
    );
    let out = t.write(id, OWNER, vec![ev("b", "2")], 0).unwrap();
    assert_eq!(out.produce.len(), 1);
    assert!(!out.results[0].duplicate);
    assert_eq!(t.get(&id).unwrap().pending_writes(), 2);
    assert_eq!(
        t.pending_writes()
            .map(|(_, w)| w.id.clone())
            .collect::<Vec<_>>(),
        vec!["c", "b"]
    );
}

#[test]
fn dedup_window_is_bounded() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(12);
    let id = open(&mut t, &mut g, Selector::AllPartitions, Mode::Write);
    for i in 0..5 {
        let w = format!("w{i}");
        t.write(id, OWNER, vec![ev(&w, "x")], 0).unwrap();
        t.write_acked(id, &w, 0, i).unwrap();
    }
    // Window of 3: w0 and w1 are forgotten, w2..w4 remembered.
    let s = t
        .write_status(
            id,
            OWNER,
            &["w0".into(), "w1".into(), "w2".into(), "w4".into()],
            0,
        )
        .unwrap();
    assert_eq!(s[0], WriteStatus::Unknown);
    assert_eq!(s[1], WriteStatus::Unknown);
    assert!(matches!(s[2], WriteStatus::Acked { offset: 2, .. }));
    assert!(matches!(s[3], WriteStatus::Acked { offset: 4, .. }));
    assert!(t.get(&id).unwrap().ids.len() <= 3);
}

#[test]
fn write_limits_refuse_the_whole_batch() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(13);
    let id = open(&mut t, &mut g, Selector::AllPartitions, Mode::ReadWrite);
    let cases: Vec<(Vec<WriteEvent>, u16, &str)> = vec![
        (vec![], 400, "field \"events\": must not be empty"),
        (
            vec![ev("a", "1"), ev("b", "1"), ev("c", "1"), ev("d", "1")],
            413,
            "field \"events\": 4 exceeds the limit of 3",
        ),
        (
            vec![ev("a", &"x".repeat(41))],
            413,
            "field \"events[0]\": 41 exceeds the limit of 40",
        ),
        (
            vec![
                ev("a", &"x".repeat(40)),
                ev("b", &"x".repeat(40)),
                ev("c", &"x".repeat(40)),
            ],
            413,
            "field \"events (bytes)\": 120 exceeds the limit of 100",
        ),
        (
            vec![ev("a", "1"), ev("a", "2")],
            400,
            "field \"events[1].id\": write id \"a\" is also used by events[0]",
        ),
        (
            vec![ev("ok", "1"), ev("", "2")],
            400,
            "field \"events[1].id\": write id must not be empty",
        ),
        (
            vec![ev(&"i".repeat(129), "2")],
            400,
            "field \"events[0].id\": write id is 129 bytes long, at most 128 are allowed",
        ),
        (
            vec![WriteEvent {
                partition: Some(-2),
                ..ev("p", "1")
            }],
            400,
            "field \"events[0].partition\": -2 is negative",
        ),
    ];
    for (events, status, message) in cases {
        let e = t.write(id, OWNER, events, 0).unwrap_err();
        assert_eq!((e.status(), e.to_string().as_str()), (status, message));
    }
    assert_eq!(t.get(&id).unwrap().pending_writes(), 0);
    // Buffer: 4 events / 120 bytes.
    t.write(
        id,
        OWNER,
        vec![ev("a", &"x".repeat(40)), ev("b", &"x".repeat(40))],
        0,
    )
    .unwrap();
    let e = t
        .write(id, OWNER, vec![ev("c", &"x".repeat(40)), ev("d", "x")], 0)
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (429, "write_buffer_full"));
    assert_eq!(t.get(&id).unwrap().pending_writes(), 2);
    // Duplicates do not count against the buffer.
    t.write(
        id,
        OWNER,
        vec![ev("a", &"x".repeat(40)), ev("c", "x"), ev("d", "x")],
        0,
    )
    .unwrap();
    let e = t.write(id, OWNER, vec![ev("e", "x")], 0).unwrap_err();
    assert_eq!(e.code(), "write_buffer_full");
    t.write_acked(id, "a", 0, 0).unwrap();
    t.write(id, OWNER, vec![ev("e", "x")], 0).unwrap();
}

#[test]
fn modes_and_owners() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(14);
    let r = open(&mut t, &mut g, Selector::AllPartitions, Mode::Read);
    let w = open(&mut t, &mut g, Selector::AllPartitions, Mode::Write);
    let e = t.write(r, OWNER, vec![ev("a", "1")], 0).unwrap_err();
    assert_eq!((e.status(), e.code()), (409, "wrong_session_mode"));
    assert!(t.read(w, OWNER, ReadParams::default(), 0).is_err());
    assert_eq!(t.ack(w, OWNER, 0, 0).unwrap_err().status(), 409);
    let e = t.read(r, "team-b", ReadParams::default(), 0).unwrap_err();
    assert_eq!(e, SessionError::NotOwner { id: r });
    assert_eq!(e.status(), 403);
    assert_eq!(t.dispose(r, "team-b", 0).unwrap_err().status(), 403);
    // Nothing changed for the owner.
    assert!(t.read(r, OWNER, ReadParams::default(), 0).is_ok());
}

#[test]
fn dispose_is_retry_safe_and_later_requests_get_410() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(15);
    let id = open(&mut t, &mut g, Selector::Partition(0), Mode::ReadWrite);
    t.offer(id, rec(0, 7, "v")).unwrap();
    read(&mut t, id, None);
    t.ack(id, OWNER, 1, 0).unwrap();
    t.write(id, OWNER, vec![ev("w", "x")], 0).unwrap();
    let c = t.dispose(id, OWNER, 0).unwrap();
    assert_eq!(c.reason, CloseReason::Disposed);
    assert_eq!(c.pending_writes.len(), 1);
    assert_eq!(
        t.codec().decode(&c.offset_token).unwrap().positions,
        [(0, 8)].into_iter().collect()
    );
    let again = t.dispose(id, OWNER, 0).unwrap();
    assert_eq!(again.offset_token, c.offset_token);
    assert!(again.pending_writes.is_empty());
    let e = t.read(id, OWNER, ReadParams::default(), 0).unwrap_err();
    assert_eq!((e.status(), e.code()), (410, "session_disposed"));
    assert!(
        matches!(e, SessionError::SessionDisposed { ref offset_token, .. } if *offset_token == c.offset_token)
    );
    assert_eq!(
        t.read(id, "team-b", ReadParams::default(), 0)
            .unwrap_err()
            .status(),
        403
    );
    // Feeding a gone session is the shell's concern, not an error to clients.
    assert_eq!(
        t.write_acked(id, "w", 0, 0),
        Err(FeedError::UnknownSession(id))
    );
    let unknown = g.next_id();
    let e = t.ack(unknown, OWNER, 0, 0).unwrap_err();
    assert_eq!((e.status(), e.code()), (404, "unknown_session"));
}

#[test]
fn idle_expiry_with_time_passed_in() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(16);
    let a = g.next_id();
    let b = g.next_id();
    t.allocate(a, OWNER, spec(Selector::AllPartitions, Mode::Read), 100)
        .unwrap();
    t.allocate(b, OWNER, spec(Selector::AllPartitions, Mode::Read), 200)
        .unwrap();
    assert_eq!(t.next_expiry(), Some(1_100));
    assert!(t.expire_idle(1_099).is_empty());
    // Activity pushes the deadline.
    t.read(a, OWNER, ReadParams::default(), 1_000).unwrap();
    assert_eq!(t.next_expiry(), Some(1_200));
    let gone = t.expire_idle(1_200);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].id, b);
    assert_eq!(gone[0].reason, CloseReason::Expired);
    let e = t.read(b, OWNER, ReadParams::default(), 1_300).unwrap_err();
    assert_eq!((e.status(), e.code()), (410, "session_expired"));
    // Dispose of an expired session is an error that still carries the token.
    assert!(matches!(
        t.dispose(b, OWNER, 1_300),
        Err(SessionError::SessionExpired { .. })
    ));
    // Time going backwards never un-expires or panics.
    assert!(t.expire_idle(0).is_empty());
    assert_eq!(t.expire_idle(5_000).len(), 1);
    assert_eq!(t.next_expiry(), None);
}

#[test]
fn closed_memory_is_bounded() {
    let mut t = table(small());
    let mut g = SessionIdGen::from_seed(17);
    let ids: Vec<SessionId> = (0..3)
        .map(|_| open(&mut t, &mut g, Selector::AllPartitions, Mode::Read))
        .collect();
    for id in &ids {
        t.dispose(*id, OWNER, 0).unwrap();
    }
    assert_eq!(t.closed.len(), 2);
    assert_eq!(
        t.read(ids[0], OWNER, ReadParams::default(), 0)
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        t.read(ids[2], OWNER, ReadParams::default(), 0)
            .unwrap_err()
            .status(),
        410
    );
}

#[test]
fn every_error_is_a_4xx_with_a_code() {
    let id = SessionIdGen::from_seed(0).next_id();
    let all = vec![
        SessionError::InvalidSessionId { value: "x".into() },
        SessionError::UnknownSession { id },
        SessionError::SessionExpired {
            id,
            offset_token: "t".into(),
        },
        SessionError::SessionDisposed {
            id,
            offset_token: "t".into(),
        },
        SessionError::NotOwner { id },
        SessionError::WrongMode {
            id,
            mode: Mode::Read,
            operation: "write",
        },
        SessionError::Draining,
        SessionError::TooManySessions { limit: 1 },
        SessionError::SessionIdInUse { id },
        SessionError::InvalidField {
            field: "f".into(),
            message: "m".into(),
        },
        SessionError::InvalidOffsetToken(OffsetTokenError::NotBase64),
        SessionError::TokenMismatch {
            field: "topic",
            token: "a".into(),
            request: "b".into(),
        },
        SessionError::AckBeyondDelivered {
            up_to: 1,
            last_delivered: 0,
        },
        SessionError::ReadAfterUndelivered {
            after: 1,
            last_delivered: 0,
        },
        SessionError::ReadLimitOutOfRange {
            field: "maxEvents",
            value: 0,
            limit: 1,
        },
        SessionError::TooLarge {
            field: "events".into(),
            value: 2,
            limit: 1,
        },
        SessionError::DuplicateWriteId {
            index: 1,
            first: 0,
            id: "a".into(),
        },
        SessionError::WriteBufferFull {
            pending_events: 1,
            pending_bytes: 1,
            limit_events: 1,
            limit_bytes: 1,
        },
    ];
    let mut codes = HashSet::new();
    for e in &all {
        assert!((400..500).contains(&e.status()), "{e:?}");
        assert!(!e.to_string().is_empty());
        assert!(codes.insert(e.code()), "duplicate code {}", e.code());
    }
}

// ---- property tests ----

#[derive(Debug, Clone)]
enum ReadOp {
    /// Offer the next record of a partition.
    Fetch(i32),
    Read {
        after: Option<u64>,
        max: usize,
    },
    Ack(u64),
}

fn read_op() -> impl Strategy<Value = ReadOp> {
    prop_oneof![
        4 => (0i32..3).prop_map(ReadOp::Fetch),
        2 => (prop::option::of(0u64..40), 1usize..=3).prop_map(|(after, max)| ReadOp::Read { after, max }),
        2 => (0u64..40).prop_map(ReadOp::Ack),
    ]
}

proptest! {
    /// Against a model: offsets advance only on ack and to exactly one past
    /// the last acked record of each partition; bad acks change nothing;
    /// read-ahead stays bounded; delivery preserves per-partition order;
    /// a session resumed from the latest token never re-delivers an acked
    /// record and never skips an unacked one.
    #[test]
    fn read_ack_model(ops in prop::collection::vec(read_op(), 1..120)) {
        let cfg = small();
        let mut t = table(cfg.clone());
        let mut g = SessionIdGen::from_seed(99);
        let id = open(&mut t, &mut g, Selector::AllPartitions, Mode::Read);
        let mut next_offset = [0i64; 3];
        let mut delivered: Vec<(u64, i32, i64)> = Vec::new();
        let mut acked_upto = 0u64;
        let mut committed = Positions::new();
        let mut token_positions = Positions::new();
        let mut token = t.codec().encode(&OffsetState { topic: "orders".into(), selector: Selector::AllPartitions, positions: Positions::new() });
        for op in ops {
            match op {
                ReadOp::Fetch(p) => {
                    let r = rec(p, next_offset[p as usize], "v");
                    match t.offer(id, r).unwrap() {
                        Offer::Accepted(_) => {
                            // A partition's first record fixes where it starts.
                            committed.entry(p).or_insert(next_offset[p as usize]);
                            next_offset[p as usize] += 1;
                        }
                        Offer::Full(_) => {}
                        Offer::Duplicate => prop_assert!(false, "fresh record seen as duplicate"),
                    }
                }
                ReadOp::Read { after, max } => {
                    let before = t.get(&id).unwrap().positions().clone();
                    let res = t.read(id, OWNER, ReadParams { after, max_events: Some(max), max_bytes: None }, 0);
                    let last = delivered.last().map_or(0, |d| d.0);
                    match (after, res) {
                        (Some(a), Err(SessionError::ReadAfterUndelivered { .. })) => prop_assert!(a > last),
                        (_, Err(e)) => prop_assert!(false, "unexpected {e}"),
                        (_, Ok(b)) => {
                            for d in &b.events {
                                let item = (d.seq, d.record.partition, d.record.offset);
                                if d.seq <= last {
                                    // A re-delivery: the same event as before, never an acked one.
                                    prop_assert!(d.seq > acked_upto);
                                    prop_assert_eq!(delivered[(d.seq - 1) as usize], item);
                                } else {
                                    prop_assert_eq!(d.seq, delivered.len() as u64 + 1);
                                    // Per-partition order: the next offset of its partition.
                                    let prev = delivered.iter().rev().find(|x| x.1 == item.1).map(|x| x.2);
                                    prop_assert_eq!(item.2, prev.map_or(0, |o| o + 1));
                                    delivered.push(item);
                                }
                            }
                        }
                    }
                    prop_assert_eq!(t.get(&id).unwrap().positions(), &before);
                }
                ReadOp::Ack(up_to) => {
                    let last = delivered.last().map_or(0, |d| d.0);
                    let before = t.get(&id).unwrap().positions().clone();
                    match t.ack(id, OWNER, up_to, 0) {
                        Err(SessionError::AckBeyondDelivered { .. }) => {
                            prop_assert!(up_to > last);
                            prop_assert_eq!(t.get(&id).unwrap().positions(), &before);
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                        Ok(a) => {
                            prop_assert!(up_to <= last);
                            if up_to > acked_upto {
                                for d in &delivered[acked_upto as usize..up_to as usize] {
                                    committed.insert(d.1, d.2 + 1);
                                }
                                acked_upto = up_to;
                            }
                            prop_assert_eq!(a.acked, acked_upto);
                            prop_assert_eq!(&a.positions, &committed);
                            token = a.offset_token;
                            token_positions = committed.clone();
                        }
                    }
                }
            }
            let s = t.get(&id).unwrap();
            prop_assert!(s.held_events() <= cfg.read_ahead_events);
            prop_assert_eq!(s.held_events() as u64, next_offset.iter().sum::<i64>() as u64 - acked_upto);
            for (p, o) in s.positions() {
                // Positions only come from acks (or the first fetch of a partition).
                prop_assert_eq!(committed.get(p).copied().unwrap_or(0), *o);
            }
        }
        // Resume from the last token on a fresh backend.
        let mut t2 = table(cfg);
        let id2 = g.next_id();
        let mut sp = spec(Selector::AllPartitions, Mode::Read);
        sp.offset_token = Some(token);
        let a = t2.allocate(id2, OWNER, sp, 0).unwrap();
        prop_assert_eq!(&a.positions, &token_positions);
        for p in 0..3 {
            let seek = t2.assign_partition(id2, p, 0).unwrap();
            // Everything acked on p is before `seek`; the first unacked is at it.
            let acked_on_p = delivered[..acked_upto as usize].iter().filter(|d| d.1 == p).map(|d| d.2 + 1).max().unwrap_or(0);
            prop_assert_eq!(seek, acked_on_p);
        }
    }

    /// Writes against a model: an id is produced once unless Kafka refused
    /// it; the buffer bound holds; statuses follow the shell's reports.
    #[test]
    fn write_dedup_model(ops in prop::collection::vec((0u8..3, 0usize..6, 1usize..4), 1..100)) {
        let mut cfg = small();
        cfg.dedup_window = 100;
        let mut t = table(cfg.clone());
        let mut g = SessionIdGen::from_seed(5);
        let id = open(&mut t, &mut g, Selector::AllPartitions, Mode::Write);
        let mut produced: HashMap<String, usize> = HashMap::new();
        let mut model: HashMap<String, WriteStatus> = HashMap::new();
        let mut offset = 0i64;
        for (kind, w, n) in ops {
            let wid = format!("w{w}");
            match kind {
                0 => {
                    let events: Vec<WriteEvent> = (0..n).map(|k| ev(&format!("w{}", (w + k) % 6), "xx")).collect();
                    let new: Vec<&str> = events.iter().map(|e| e.id.as_str())
                        .filter(|i| matches!(model.get(*i), None | Some(WriteStatus::Failed { .. }))).collect();
                    let pending = model.values().filter(|s| **s == WriteStatus::Pending).count();
                    match t.write(id, OWNER, events.clone(), 0) {
                        Ok(out) => {
                            prop_assert!(pending + new.len() <= cfg.write_buffer_events);
                            prop_assert_eq!(out.produce.len(), new.len());
                            for p in &out.produce {
                                *produced.entry(p.write_id.clone()).or_default() += 1;
                                model.insert(p.write_id.clone(), WriteStatus::Pending);
                            }
                            for r in &out.results {
                                prop_assert_eq!(&r.status, &model[&r.id]);
                            }
                        }
                        Err(SessionError::WriteBufferFull { .. }) => prop_assert!(pending + new.len() > cfg.write_buffer_events),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                1 => {
                    let ok = t.write_acked(id, &wid, 0, offset).is_ok();
                    prop_assert_eq!(ok, model.get(&wid) == Some(&WriteStatus::Pending));
                    if ok {
                        model.insert(wid.clone(), WriteStatus::Acked { partition: 0, offset });
                        offset += 1;
                    }
                }
                _ => {
                    let ok = t.write_failed(id, &wid, "nope").is_ok();
                    prop_assert_eq!(ok, model.get(&wid) == Some(&WriteStatus::Pending));
                    if ok {
                        model.insert(wid.clone(), WriteStatus::Failed { reason: "nope".into() });
                    }
                }
            }
            let pending = model.values().filter(|s| **s == WriteStatus::Pending).count();
            prop_assert_eq!(t.get(&id).unwrap().pending_writes(), pending);
            prop_assert!(pending <= cfg.write_buffer_events);
        }
        // Produced twice only after a failure in between: at most one success each.
        let acked: HashSet<&String> = model.iter().filter(|(_, s)| matches!(s, WriteStatus::Acked { .. })).map(|(k, _)| k).collect();
        for (wid, n) in &produced {
            prop_assert!(*n >= 1);
            if acked.contains(wid) {
                let ids = [wid.clone()];
                let st = t.write_status(id, OWNER, &ids, 0).unwrap();
                prop_assert!(matches!(st[0], WriteStatus::Acked { .. }), "status {:?}", st[0]);
            }
        }
    }

    /// Session ids round-trip through their text form.
    #[test]
    fn session_id_text_round_trip(bytes in any::<[u8; 16]>()) {
        let id = SessionId::from_bytes(bytes);
        prop_assert_eq!(SessionId::parse(&id.to_string()).unwrap(), id);
    }

    /// Parsing arbitrary text never panics.
    #[test]
    fn session_id_parse_never_panics(s in ".{0,40}") {
        let _ = SessionId::parse(&s);
    }
}
