use super::*;
use crate::service::session::{Record, SessionIdGen};
use proptest::prelude::*;

fn sid() -> SessionId {
    SessionIdGen::from_seed(1).next_id()
}

fn err<T: DeserializeOwned + Validate + std::fmt::Debug>(json: &str) -> WireError {
    parse_json::<T>(json.as_bytes(), MAX_REQUEST_BYTES).unwrap_err()
}

#[test]
fn allocate_request() {
    let r: AllocateRequest = parse_json(
        br#"{"topic":"orders","group":"billing","mode":"readWrite","start":"latest"}"#,
        MAX_REQUEST_BYTES,
    )
    .unwrap();
    let spec = r.to_spec();
    assert_eq!(spec.selector, Selector::Group("billing".into()));
    assert_eq!(spec.mode, Mode::ReadWrite);
    assert_eq!(spec.start, StartFrom::Latest);
    let r: AllocateRequest = parse_json(br#"{"topic":"orders"}"#, 1_000).unwrap();
    assert_eq!(r.to_spec().selector, Selector::AllPartitions);
    assert_eq!(r.to_spec().mode, Mode::Read);
    assert_eq!(r.to_spec().start, StartFrom::Earliest);
    let r: AllocateRequest = parse_json(br#"{"topic":"orders","partition":2}"#, 1_000).unwrap();
    assert_eq!(r.to_spec().selector, Selector::Partition(2));

    let e = err::<AllocateRequest>(r#"{"topic":"orders","partition":1,"group":"g"}"#);
    assert_eq!(
        e.to_string(),
        "field \"group\": give either \"partition\" or \"group\", not both"
    );
    let e = err::<AllocateRequest>(r#"{"topic":"bad topic"}"#);
    assert!(e.to_string().starts_with("field \"topic\""), "{e}");
    let e = err::<AllocateRequest>(r#"{"topic":"orders","partition":-1}"#);
    assert!(e.to_string().starts_with("field \"partition\""), "{e}");
    let e = err::<AllocateRequest>(r#"{"topic":"orders","mode":"admin"}"#);
    assert_eq!((e.status(), e.code()), (400, "malformed_json"));
    assert!(e.to_string().contains("unknown variant `admin`"), "{e}");
    let e = err::<AllocateRequest>(r#"{"topic":"orders","partitoin":1}"#);
    assert!(e.to_string().contains("unknown field `partitoin`"), "{e}");
    let e = err::<AllocateRequest>(r#"{}"#);
    assert!(e.to_string().contains("missing field `topic`"), "{e}");
    let e = err::<AllocateRequest>(r#"{"topic":"orders","offsetToken":""}"#);
    assert!(e.to_string().starts_with("field \"offsetToken\""), "{e}");
    let e = err::<AllocateRequest>("{\"topic\":");
    assert_eq!(e.code(), "malformed_json");
    let e = parse_json::<AllocateRequest>(&[b' '; 11], 10).unwrap_err();
    assert_eq!(
        e,
        WireError::BodyTooLarge {
            size: 11,
            limit: 10
        }
    );
    assert_eq!(e.status(), 413);
}

#[test]
fn read_request() {
    let id = sid();
    let r: ReadRequest = parse_json(
        format!(r#"{{"sessionId":"{id}","after":3,"maxEvents":10,"maxBytes":1000,"waitMs":500}}"#)
            .as_bytes(),
        MAX_REQUEST_BYTES,
    )
    .unwrap();
    assert_eq!(r.id().unwrap(), id);
    assert_eq!(
        r.to_params(),
        ReadParams {
            after: Some(3),
            max_events: Some(10),
            max_bytes: Some(1000)
        }
    );
    let e = err::<ReadRequest>(r#"{"sessionId":"nope"}"#);
    assert!(e.to_string().starts_with("field \"sessionId\""), "{e}");
    let e = err::<ReadRequest>(&format!(r#"{{"sessionId":"{id}","waitMs":30001}}"#));
    assert!(e.to_string().starts_with("field \"waitMs\""), "{e}");
    let e = err::<ReadRequest>(&format!(r#"{{"sessionId":"{id}","maxEvents":0}}"#));
    assert!(e.to_string().starts_with("field \"maxEvents\""), "{e}");
    let e = err::<ReadRequest>(&format!(r#"{{"sessionId":"{id}","after":-1}}"#));
    assert_eq!(e.code(), "malformed_json");
}

#[test]
fn write_request_and_event_encoding() {
    let id = sid();
    let body = format!(
        r#"{{"sessionId":"{id}","events":[
            {{"id":"a","value":"hello"}},
            {{"id":"b","key":"k","valueBase64":"AP8="}},
            {{"id":"c","partition":1,"keyBase64":"AQI=","value":""}}
        ]}}"#
    );
    let r: WriteRequest = parse_json(body.as_bytes(), MAX_REQUEST_BYTES).unwrap();
    let evs = r.to_events().unwrap();
    assert_eq!(evs[0].value, b"hello");
    assert_eq!(evs[0].key, None);
    assert_eq!(evs[1].value, vec![0, 255]);
    assert_eq!(evs[1].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(evs[2].key.as_deref(), Some(&[1u8, 2][..]));
    assert_eq!(evs[2].partition, Some(1));

    for (events, message) in [
        ("[]", "field \"events\": must not be empty"),
        (
            r#"[{"id":"a"}]"#,
            "field \"events[0].value\": missing: give \"value\" or \"valueBase64\"",
        ),
        (
            r#"[{"id":"a","value":"x"},{"id":"b","value":"x","valueBase64":"AA=="}]"#,
            "field \"events[1].valueBase64\": give either \"value\" or \"valueBase64\", not both",
        ),
        (
            r#"[{"id":"a","key":"k","keyBase64":"AA==","value":"x"}]"#,
            "field \"events[0].keyBase64\": give either \"key\" or \"keyBase64\", not both",
        ),
        (
            r#"[{"id":"","value":"x"}]"#,
            "field \"events[0].id\": write id must not be empty",
        ),
        (
            r#"[{"id":"a","partition":-3,"value":"x"}]"#,
            "field \"events[0].partition\": -3 is negative",
        ),
    ] {
        let e = err::<WriteRequest>(&format!(r#"{{"sessionId":"{id}","events":{events}}}"#));
        assert_eq!(e.to_string(), message);
        assert_eq!(e.status(), 400);
    }
    let e = err::<WriteRequest>(&format!(
        r#"{{"sessionId":"{id}","events":[{{"id":"a","valueBase64":"***"}}]}}"#
    ));
    assert!(
        e.to_string()
            .starts_with("field \"events[0].valueBase64\": not valid base64"),
        "{e}"
    );
}

#[test]
fn responses_serialise_in_camel_case() {
    let id = sid();
    let batch = ReadBatch {
        events: vec![
            Delivered {
                seq: 1,
                record: Record {
                    partition: 0,
                    offset: 41,
                    timestamp_ms: Some(5),
                    key: Some(b"k".to_vec()),
                    value: b"text".to_vec(),
                    write_id: None,
                },
            },
            Delivered {
                seq: 2,
                record: Record {
                    partition: 1,
                    offset: 7,
                    timestamp_ms: None,
                    key: Some(vec![0xff]),
                    value: vec![0xff, 0x00],
                    write_id: Some("w-2".into()),
                },
            },
        ],
        acked: 0,
        last_delivered: 2,
        more: false,
    };
    let r = ReadResponse::from_batch(id, &batch);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "sessionId": id.to_string(),
            "events": [
                {"offset":1,"partition":0,"kafkaOffset":41,"timestampMs":5,"key":"k","value":"text"},
                {"offset":2,"id":"w-2","partition":1,"kafkaOffset":7,"keyBase64":"/w==","valueBase64":"/wA="}
            ],
            "acked": 0, "lastDelivered": 2, "more": false
        })
    );
    assert_eq!(r.events[1].value_bytes().unwrap(), vec![0xff, 0]);
    assert_eq!(r.events[0].value_bytes().unwrap(), b"text");
    let back: ReadResponse = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);

    let w = WriteResultOut::new(
        "a",
        &WriteStatus::Acked {
            partition: 2,
            offset: 9,
        },
        true,
    );
    assert_eq!(
        serde_json::to_value(&w).unwrap(),
        serde_json::json!({"id":"a","status":"acked","duplicate":true,"partition":2,"offset":9})
    );
    let f = WriteResultOut::from_result(&WriteResult {
        id: "b".into(),
        status: WriteStatus::Failed {
            reason: "too big".into(),
        },
        duplicate: false,
    });
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        serde_json::json!({"id":"b","status":"failed","duplicate":false,"error":"too big"})
    );
    let a = AllocateResponse {
        session_id: id.to_string(),
        topic: "orders".into(),
        partition: None,
        group: None,
        mode: Mode::ReadWrite.into(),
        offset_token: "tok".into(),
        idle_timeout_ms: 1000,
    };
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::json!({"sessionId": id.to_string(),"topic":"orders","mode":"readWrite","offsetToken":"tok","idleTimeoutMs":1000})
    );
}

#[test]
fn error_bodies() {
    let id = sid();
    let e = SessionError::SessionExpired {
        id,
        offset_token: "tok".into(),
    };
    let b = ErrorBody::from_session_error(&e);
    assert_eq!(
        serde_json::to_value(&b).unwrap(),
        serde_json::json!({"error":{"status":410,"code":"session_expired","message": e.to_string(),"offsetToken":"tok"}})
    );
    let w = WireError::InvalidField {
        field: "topic".into(),
        message: "bad".into(),
    };
    let b = ErrorBody::new(&w);
    assert_eq!(b.error.status, 400);
    assert_eq!(b.error.offset_token, None);
    let r = Reply::error("req-1", b.clone());
    assert_eq!(r.status, 400);
    let back = Reply::from_bytes(&r.to_bytes().unwrap()).unwrap();
    assert_eq!(back, r);
    let ok = Reply::ok(
        "req-2",
        &AckResponse {
            session_id: id.to_string(),
            acked: 3,
            offset_token: "t".into(),
        },
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["acked"], 3);
}

fn envelope(request: Request) -> Envelope {
    let id = sid();
    Envelope {
        request_id: "req-1".into(),
        session_id: id,
        shard: id.shard(64).0,
        principal: "team-a".into(),
        reply_to: "eventing.api.node-1".into(),
        request,
    }
}

#[test]
fn envelope_round_trip_and_checks() {
    let id = sid();
    let reqs = vec![
        Request::Allocate(AllocateRequest {
            topic: "orders".into(),
            partition: Some(1),
            group: None,
            mode: WireMode::Write,
            start: None,
            offset_token: None,
        }),
        Request::Read(ReadRequest {
            session_id: id.to_string(),
            after: None,
            max_events: Some(5),
            max_bytes: None,
            wait_ms: Some(100),
        }),
        Request::Ack(AckRequest {
            session_id: id.to_string(),
            up_to: 5,
        }),
        Request::Write(WriteRequest {
            session_id: id.to_string(),
            events: vec![EventIn::text("a", "v")],
        }),
        Request::WriteStatus(WriteStatusRequest {
            session_id: id.to_string(),
            ids: vec!["a".into()],
        }),
        Request::Dispose(DisposeRequest {
            session_id: id.to_string(),
        }),
    ];
    for r in reqs {
        let env = envelope(r);
        let bytes = env.to_bytes().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["operation"], env.request.operation());
        assert_eq!(v["version"], 1);
        assert_eq!(v["sessionId"], id.to_string());
        let back = Envelope::from_bytes(&bytes).unwrap();
        assert_eq!(back, env);
        back.check_shard(64).unwrap();
    }
    // Misrouted.
    let mut env = envelope(Request::Dispose(DisposeRequest {
        session_id: id.to_string(),
    }));
    env.shard = (env.shard + 1) % 64;
    let e = env.check_shard(64).unwrap_err();
    assert!(e.to_string().starts_with("field \"shard\""), "{e}");
    // Body for another session.
    let other = SessionIdGen::from_seed(2).next_id();
    let env = envelope(Request::Dispose(DisposeRequest {
        session_id: other.to_string(),
    }));
    let e = Envelope::from_bytes(&env.to_bytes().unwrap()).unwrap_err();
    assert!(e.to_string().starts_with("field \"body.sessionId\""), "{e}");
    // Unknown operation, version, bad fields.
    let good: serde_json::Value = serde_json::from_slice(
        &envelope(Request::Dispose(DisposeRequest {
            session_id: id.to_string(),
        }))
        .to_bytes()
        .unwrap(),
    )
    .unwrap();
    for (key, value, starts) in [
        (
            "operation",
            serde_json::json!("drop"),
            "field \"operation\"",
        ),
        ("version", serde_json::json!(2), "field \"version\""),
        ("requestId", serde_json::json!(""), "field \"requestId\""),
        ("replyTo", serde_json::json!("a b"), "field \"replyTo\""),
        ("principal", serde_json::json!(""), "field \"principal\""),
        ("sessionId", serde_json::json!("zz"), "field \"sessionId\""),
        (
            "extra",
            serde_json::json!(1),
            "malformed JSON: unknown field `extra`",
        ),
    ] {
        let mut v = good.clone();
        v[key] = value;
        let e = Envelope::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().starts_with(starts), "{key}: {e}");
    }
    let mut v = good.clone();
    v["body"] = serde_json::json!({"sessionId": id.to_string(), "x": 1});
    let e = Envelope::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(e.to_string().contains("body: unknown field `x`"), "{e}");
    // Size bound both ways.
    let huge = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(
        Envelope::from_bytes(&huge),
        Err(WireError::BodyTooLarge { .. })
    ));
    assert!(matches!(
        Reply::from_bytes(&huge),
        Err(WireError::BodyTooLarge { .. })
    ));
    let big = envelope(Request::Write(WriteRequest {
        session_id: id.to_string(),
        events: vec![EventIn::text("a", "x".repeat(MAX_ENVELOPE_BYTES))],
    }));
    assert!(matches!(
        big.to_bytes(),
        Err(WireError::BodyTooLarge { .. })
    ));
}

proptest! {
    #[test]
    fn envelope_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Envelope::from_bytes(&bytes);
        let _ = Reply::from_bytes(&bytes);
        let _ = parse_json::<WriteRequest>(&bytes, MAX_REQUEST_BYTES);
    }

    #[test]
    fn event_bytes_round_trip(value in prop::collection::vec(any::<u8>(), 0..64), key in prop::option::of(prop::collection::vec(any::<u8>(), 0..16))) {
        let d = Delivered { seq: 1, record: Record { partition: 0, offset: 0, timestamp_ms: None, key: key.clone(), value: value.clone(), write_id: None } };
        let out = EventOut::from_delivered(&d);
        prop_assert_eq!(out.value_bytes().unwrap(), value.clone());
        // What a reader gets back can be written again unchanged.
        let back = EventIn { id: "x".into(), partition: None, key: out.key.clone(), key_base64: out.key_base64.clone(), value: out.value.clone(), value_base64: out.value_base64.clone() };
        let core = back.to_core(0).unwrap();
        prop_assert_eq!(core.value, value);
        prop_assert_eq!(core.key, key);
    }

    #[test]
    fn write_requests_round_trip(ids in prop::collection::btree_set("[a-z0-9]{1,8}", 1..5), text in ".{0,20}") {
        let id = sid();
        let req = WriteRequest { session_id: id.to_string(), events: ids.iter().map(|i| EventIn::text(i.clone(), text.clone())).collect() };
        let json = serde_json::to_vec(&req).unwrap();
        let back: WriteRequest = parse_json(&json, MAX_REQUEST_BYTES).unwrap();
        prop_assert_eq!(back, req);
    }
}

/// The whole path a shell takes, through the cores only: HTTP JSON in,
/// envelope over "RabbitMQ", the backend's session table, reply out.
#[test]
fn end_to_end_through_the_cores() {
    use crate::service::offset_token::OffsetTokenCodec;
    use crate::service::ring::Ring;
    use crate::service::session::{Offer, SessionConfig, Sessions};

    let ring = Ring::new(64).unwrap();
    let mut backend = Sessions::new(
        SessionConfig::default(),
        OffsetTokenCodec::new(&[3u8; 32]).unwrap(),
    )
    .unwrap();
    let id = SessionIdGen::from_seed(77).next_id();
    // API node: parse, envelope, route.
    let req: AllocateRequest = parse_json(
        br#"{"topic":"orders","partition":0,"mode":"readWrite"}"#,
        MAX_REQUEST_BYTES,
    )
    .unwrap();
    let env = Envelope {
        request_id: "r1".into(),
        session_id: id,
        shard: id.shard(ring.shard_count()).0,
        principal: "team-a".into(),
        reply_to: "api-1".into(),
        request: Request::Allocate(req),
    };
    let wire = env.to_bytes().unwrap();
    // Backend: parse, check, apply, reply.
    let env = Envelope::from_bytes(&wire).unwrap();
    env.check_shard(64).unwrap();
    let Request::Allocate(req) = &env.request else {
        panic!("allocate expected")
    };
    let allocated = backend
        .allocate(env.session_id, &env.principal, req.to_spec(), 0)
        .unwrap();
    let reply = Reply::ok(
        &env.request_id,
        &AllocateResponse::new(req, &allocated, 300_000),
    );
    let reply = Reply::from_bytes(&reply.to_bytes().unwrap()).unwrap();
    let alloc: AllocateResponse = serde_json::from_value(reply.body).unwrap();
    assert_eq!(alloc.session_id, id.to_string());
    assert_eq!(alloc.partition, Some(0));
    assert_eq!(alloc.mode, WireMode::ReadWrite);

    // Write, Kafka acks, status.
    let w: WriteRequest = parse_json(
        format!(r#"{{"sessionId":"{id}","events":[{{"id":"e1","value":"hi"}}]}}"#).as_bytes(),
        MAX_REQUEST_BYTES,
    )
    .unwrap();
    let out = backend
        .write(id, "team-a", w.to_events().unwrap(), 1)
        .unwrap();
    assert_eq!(out.produce[0].partition, Some(0));
    let resp = WriteResponse::from_outcome(id, &out);
    assert_eq!(resp.results[0].status, WireWriteStatus::Pending);
    backend.write_acked(id, "e1", 0, 0).unwrap();
    let ids = vec!["e1".to_string()];
    let st = backend.write_status(id, "team-a", &ids, 2).unwrap();
    let resp = WriteResponse::from_statuses(id, &ids, &st);
    assert_eq!(resp.results[0].status, WireWriteStatus::Acked);
    assert_eq!(resp.results[0].offset, Some(0));

    // The consumer fetches it back; read and ack.
    assert!(matches!(
        backend
            .offer(
                id,
                Record {
                    partition: 0,
                    offset: 0,
                    timestamp_ms: None,
                    key: None,
                    value: b"hi".to_vec(),
                    write_id: None
                }
            )
            .unwrap(),
        Offer::Accepted(_)
    ));
    let r: ReadRequest = parse_json(
        format!(r#"{{"sessionId":"{id}"}}"#).as_bytes(),
        MAX_REQUEST_BYTES,
    )
    .unwrap();
    let batch = backend.read(id, "team-a", r.to_params(), 3).unwrap();
    let resp = ReadResponse::from_batch(id, &batch);
    assert_eq!(resp.events[0].value.as_deref(), Some("hi"));
    let ack = backend.ack(id, "team-a", resp.events[0].offset, 4).unwrap();
    let resp = AckResponse::from_outcome(id, &ack);
    assert_eq!(resp.acked, 1);
    let closed = backend.dispose(id, "team-a", 5).unwrap();
    let resp = DisposeResponse::from_closed(&closed);
    assert_eq!(resp.offset_token, ack.offset_token);
    // A later request: 410 with the token in the body.
    let e = backend.read(id, "team-a", r.to_params(), 6).unwrap_err();
    let body = ErrorBody::from_session_error(&e);
    assert_eq!(body.error.status, 410);
    assert_eq!(
        body.error.offset_token.as_deref(),
        Some(ack.offset_token.as_str())
    );
}
