//! JSON shape facts from COMPAT.md, and malformed input handling: every bad
//! body is an `Err`, never a panic.

mod common;

use common::*;
use corral_api::codec::{self, Encoding};
use corral_api::v1::{self, master, scheduler, *};
use proptest::prelude::*;
use prost::Message;
use serde_json::json;

fn json_text<M: Message + prost::Name>(m: &M) -> String {
    String::from_utf8(codec::to_json(m)).unwrap()
}

#[test]
fn field_names_are_snake_case_proto_names() {
    let v = codec::to_json_value(&framework_info());
    for k in ["failover_timeout", "webui_url", "offer_filters"] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    let text: String = json_text(&task_info("web"));
    for camel in [
        "taskId",
        "agentId",
        "healthCheck",
        "killPolicy",
        "gracePeriod",
        "outputFile",
    ] {
        assert!(!text.contains(camel), "camelCase {camel} in {text}");
    }
    assert!(text.contains(r#""task_id":{"value":"web.a1b2c3"}"#));
}

#[test]
fn enums_are_names_including_zero_valued_required_ones() {
    let v = codec::to_json_value(&scalar("cpus", 1.0));
    // SCALAR is enum value 0, and `type` is required: still written.
    assert_eq!(
        v,
        json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}})
    );
    assert_eq!(codec::to_json_value(&ports(&[(1, 2)]))["type"], "RANGES");
    assert_eq!(codec::to_json_value(&set("s", &["a"]))["type"], "SET");
    let st = codec::to_json_value(&task_status(TaskState::TaskRunning));
    assert_eq!(st["state"], "TASK_RUNNING");
    assert_eq!(st["source"], "SOURCE_EXECUTOR");
    assert_eq!(st["reason"], "REASON_CONTAINER_LIMITATION_MEMORY");
    // TASK_STARTING is 0 and `state` is required.
    assert_eq!(
        codec::to_json_value(&task_status(TaskState::TaskStarting))["state"],
        "TASK_STARTING"
    );
    let ip = codec::to_json_value(&container())["network_infos"][0]["ip_addresses"][0].clone();
    assert_eq!(ip["protocol"], "IPv6");
}

#[test]
fn ids_are_value_objects_without_extra_keys() {
    let v = codec::to_json_value(&scheduler::Call {
        framework_id: Some(fid()),
        r#type: Some(scheduler::call::Type::Kill as i32),
        kill: Some(scheduler::call::Kill {
            task_id: tid("t"),
            agent_id: Some(aid()),
            kill_policy: None,
        }),
        ..Default::default()
    });
    assert_eq!(
        v,
        json!({
            "framework_id": {"value": FRAMEWORK},
            "type": "KILL",
            "kill": {"task_id": {"value": "t"}, "agent_id": {"value": AGENT}}
        })
    );
}

#[test]
fn bytes_are_standard_padded_base64() {
    let ev = v1::executor::Event {
        r#type: Some(v1::executor::event::Type::Acknowledged as i32),
        acknowledged: Some(v1::executor::event::Acknowledged {
            task_id: tid("t"),
            uuid: UUID.to_vec(),
        }),
        ..Default::default()
    };
    let v = codec::to_json_value(&ev);
    use base64::Engine;
    assert_eq!(
        v["acknowledged"]["uuid"],
        base64::engine::general_purpose::STANDARD.encode(UUID)
    );
    let msg = scheduler::call::Message {
        agent_id: aid(),
        executor_id: eid("e"),
        data: vec![0xfb, 0xff],
    };
    assert_eq!(codec::to_json_value(&msg)["data"], "+/8=");
    // Liberal input: unpadded and URL-safe forms decode to the same bytes.
    for data in ["+/8=", "+/8", "-_8="] {
        let m: scheduler::call::Message = parse(&format!(
            r#"{{"agent_id":{{"value":"a"}},"executor_id":{{"value":"e"}},"data":"{data}"}}"#
        ));
        assert_eq!(m.data, [0xfb, 0xff], "{data}");
    }
}

#[test]
fn int64_and_uint64_are_json_numbers() {
    let t = TimeInfo {
        nanoseconds: 1_735_689_600_123_456_789,
    };
    assert_eq!(json_text(&t), r#"{"nanoseconds":1735689600123456789}"#);
    let t = TimeInfo { nanoseconds: -1 };
    assert_eq!(json_text(&t), r#"{"nanoseconds":-1}"#);
    let r = value::Range {
        begin: 0,
        end: u64::MAX,
    };
    assert_eq!(
        json_text(&r),
        format!(r#"{{"begin":0,"end":{}}}"#, u64::MAX)
    );
    let back: value::Range = parse(&json_text(&r));
    assert_eq!(back, r);
    let rf = master::call::ReadFile {
        path: "/x".into(),
        offset: 9_007_199_254_740_993,
        length: Some(1),
    };
    let v = codec::to_json_value(&rf);
    assert!(v["offset"].is_u64(), "{v}");
    assert_eq!(v["offset"].as_u64(), Some(9_007_199_254_740_993));
    // Strings for 64-bit ints (the proto3 mapping) are tolerated on input.
    let back: TimeInfo = parse(r#"{"nanoseconds":"42"}"#);
    assert_eq!(back.nanoseconds, 42);
}

#[test]
fn output_is_compact_ascii_with_escapes() {
    let mut fi = framework_info();
    fi.name = "caf\u{e9} \u{2615} \u{1D11E} \"q\" \\ \n\t\u{1}".into();
    let text = json_text(&fi);
    assert!(text.is_ascii());
    assert!(
        text.contains(r#"caf\u00e9 \u2615 \ud834\udd1e \"q\" \\ \n\t\u0001"#),
        "{text}"
    );
    assert!(!text.contains(": ") && !text.contains(", ") && !text.contains('\n'));
    let back: FrameworkInfo = parse(&text);
    assert_eq!(back.name, fi.name);
    // Byte length == char length, so clients that slice by the RecordIO byte
    // count get whole records.
    assert_eq!(text.len(), text.chars().count());
}

#[test]
fn unknown_fields_are_ignored() {
    // v0-era `slave_id` in TaskInfo, unknown nested objects/arrays anywhere.
    let call: scheduler::Call = parse(
        r#"{
        "framework_id": {"value": "f", "extra": 1},
        "type": "ACCEPT",
        "future_field": {"nested": [1, {"x": null}]},
        "accept": {
            "offer_ids": [{"value": "O1"}],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                "name": "t", "task_id": {"value": "t"},
                "slave_id": {"value": "S0"},
                "agent_id": {"value": "S1"},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}, "shared_hint": true}]
            }]}}]
        }
    }"#,
    );
    let accept = call.accept.clone().unwrap();
    let task = &accept.operations[0].launch.as_ref().unwrap().task_infos[0];
    assert_eq!(task.agent_id.value, "S1");
    assert_eq!(task.resources[0].scalar.unwrap().value, 1.0);
    assert_eq!(call.framework_id.unwrap().value, "f");
}

#[test]
fn null_means_unset() {
    let k: scheduler::call::Kill =
        parse(r#"{"task_id":{"value":"t"},"agent_id":null,"kill_policy":null}"#);
    assert_eq!(k.agent_id, None);
    assert_eq!(k.kill_policy, None);
}

#[test]
fn refuse_seconds_accepts_integers_and_floats() {
    for text in ["5", "5.0", "5e0", "5.000"] {
        let f: Filters = parse(&format!(r#"{{"refuse_seconds": {text}}}"#));
        assert_eq!(f.refuse_seconds, Some(5.0), "{text}");
    }
    let f: Filters = parse(r#"{"refuse_seconds": 0.25}"#);
    assert_eq!(f.refuse_seconds, Some(0.25));
    let d: scheduler::call::Decline =
        parse(r#"{"offer_ids":[{"value":"O"}],"filters":{"refuse_seconds":31536000}}"#);
    assert_eq!(d.filters.unwrap().refuse_seconds(), 31_536_000.0);
    // Unset means Mesos' default of 5 seconds.
    let f: Filters = parse("{}");
    assert_eq!((f.refuse_seconds, f.refuse_seconds()), (None, 5.0));
}

#[test]
fn integral_floats_accepted_for_integer_fields() {
    let a: AgentInfo = parse(r#"{"hostname":"h","port":5051.0}"#);
    assert_eq!(a.port, Some(5051));
    let t: TimeInfo = parse(r#"{"nanoseconds":1.5e9}"#);
    assert_eq!(t.nanoseconds, 1_500_000_000);
    let r: value::Range = parse(r#"{"begin":31000.0,"end":3.2e4}"#);
    assert_eq!((r.begin, r.end), (31000, 32000));
    let f: scheduler::event::Failure = parse(r#"{"status":-9.0}"#);
    assert_eq!(f.status, Some(-9));
    let h: health_check::HttpCheckInfo = parse(r#"{"port":80.0,"statuses":[200.0,204]}"#);
    assert_eq!((h.port, h.statuses), (80, vec![200, 204]));
    // Doubles stay doubles.
    let s: value::Scalar = parse(r#"{"value":3}"#);
    assert_eq!(s.value, 3.0);
}

#[test]
fn duration_is_a_plain_message_as_in_mesos() {
    // Mesos' JSON has no well-known-type special case: google.protobuf.Duration
    // is `{"seconds": N, "nanos": M}` (e.g. the DC/OS UI sends
    // `max_grace_period: {seconds: N}` in DRAIN_AGENT).
    let call: master::Call = parse(
        r#"{"type":"DRAIN_AGENT","drain_agent":{"agent_id":{"value":"S1"},
            "max_grace_period":{"seconds":10},"mark_gone":false}}"#,
    );
    let d = call.drain_agent.clone().unwrap();
    assert_eq!(
        d.max_grace_period,
        Some(prost_types::Duration {
            seconds: 10,
            nanos: 0
        })
    );
    assert_eq!(d.mark_gone, Some(false));
    let v = roundtrip(&call);
    assert_eq!(v["drain_agent"]["max_grace_period"], json!({"seconds": 10}));

    let d = master::call::DrainAgent {
        agent_id: aid(),
        max_grace_period: Some(prost_types::Duration {
            seconds: 1,
            nanos: 500_000_000,
        }),
        mark_gone: None,
    };
    assert_eq!(
        codec::to_json_value(&d)["max_grace_period"],
        json!({"seconds": 1, "nanos": 500_000_000})
    );
}

// --------------------------------------------------------------- malformed

fn json_err<M: Message + prost::Name + Default + std::fmt::Debug>(text: &str) {
    let r = codec::from_json::<M>(text.as_bytes());
    assert!(r.is_err(), "expected an error for {text}, got {r:?}");
}

#[test]
fn truncated_protobuf_is_an_error() {
    let call = scheduler::Call {
        framework_id: Some(fid()),
        r#type: Some(scheduler::call::Type::Accept as i32),
        accept: Some(scheduler::call::Accept {
            offer_ids: vec![oid("O1")],
            operations: vec![offer::Operation {
                r#type: Some(offer::operation::Type::Launch as i32),
                launch: Some(offer::operation::Launch {
                    task_infos: vec![task_info("web")],
                }),
                ..Default::default()
            }],
            filters: None,
        }),
        ..Default::default()
    };
    let bytes = call.encode_to_vec();
    // Cutting inside the last (length-delimited) field.
    assert!(Encoding::Protobuf
        .decode::<scheduler::Call>(&bytes[..bytes.len() - 1])
        .is_err());
    // Every prefix decodes without panicking; most are errors.
    let errors = (0..bytes.len())
        .filter(|&n| {
            Encoding::Protobuf
                .decode::<scheduler::Call>(&bytes[..n])
                .is_err()
        })
        .count();
    assert!(errors > bytes.len() / 2, "{errors} of {}", bytes.len());
    // Garbage.
    for junk in [
        &[0xff; 12][..],
        &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0x12, 0x05, 0x01],
    ] {
        assert!(
            Encoding::Protobuf.decode::<scheduler::Call>(junk).is_err(),
            "{junk:?}"
        );
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_stack_overflow() {
    // ContainerID is recursive through `parent`.
    let mut c = ContainerId {
        value: "leaf".into(),
        parent: None,
    };
    for i in 0..200 {
        c = ContainerId {
            value: format!("c{i}"),
            parent: Some(Box::new(c)),
        };
    }
    let bytes = c.encode_to_vec();
    assert!(Encoding::Protobuf.decode::<ContainerId>(&bytes).is_err());
    let mut text = String::from(r#"{"value":"leaf"}"#);
    for _ in 0..2000 {
        text = format!(r#"{{"value":"c","parent":{text}}}"#);
    }
    json_err::<ContainerId>(&text);
}

#[test]
fn json_of_the_wrong_shape_is_an_error() {
    json_err::<scheduler::Call>(r#"{"type":"KILL","kill":"task-1"}"#);
    json_err::<scheduler::Call>(r#"{"framework_id":"12220-3440-12532-2345"}"#);
    json_err::<scheduler::Call>(r#"{"framework_id":{"value":5}}"#);
    json_err::<scheduler::Call>(r#"{"type":"DECLINE","decline":{"offer_ids":"O1"}}"#);
    json_err::<scheduler::Call>(
        r#"{"type":"DECLINE","decline":{"filters":[{"refuse_seconds":1}]}}"#,
    );
    json_err::<scheduler::Call>(
        r#"{"type":"DECLINE","decline":{"filters":{"refuse_seconds":"soon"}}}"#,
    );
    json_err::<scheduler::Call>(r#"{"type":["KILL"]}"#);
    json_err::<FrameworkInfo>(r#"{"user":"u","name":"n","checkpoint":"yes"}"#);
    json_err::<AgentInfo>(r#"{"hostname":"h","port":5051.5}"#);
    json_err::<AgentInfo>(r#"{"hostname":"h","port":99999999999}"#);
    json_err::<value::Range>(r#"{"begin":-1,"end":2}"#);
    for top in [
        "[]",
        r#""SUBSCRIBE""#,
        "42",
        "null",
        "true",
        "",
        "{",
        "{\"type\":}",
        "\u{feff}{}",
    ] {
        json_err::<scheduler::Call>(top);
    }
    assert!(codec::from_json::<scheduler::Call>(b"{\"type\":\"\xff\"}").is_err());
}

#[test]
fn invalid_enum_names_are_errors() {
    json_err::<Resource>(r#"{"name":"cpus","type":"SCALER","scalar":{"value":1}}"#);
    json_err::<Resource>(r#"{"name":"cpus","type":"scalar","scalar":{"value":1}}"#);
    json_err::<TaskStatus>(r#"{"task_id":{"value":"t"},"state":"TASK_RUN"}"#);
    json_err::<master::event::TaskUpdated>(
        r#"{"framework_id":{"value":"f"},"status":{"task_id":{"value":"t"},"state":"TASK_LOST"},"state":"LOST"}"#,
    );
    json_err::<scheduler::Call>(
        r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","capabilities":[{"type":7.5}]}}}"#,
    );
}

#[test]
fn invalid_base64_is_an_error() {
    for bad in ["not base64!!", "@@@@", "a", "ab=c", "ab\ncd"] {
        json_err::<scheduler::call::Acknowledge>(&format!(
            r#"{{"agent_id":{{"value":"a"}},"task_id":{{"value":"t"}},"uuid":"{bad}"}}"#
        ));
    }
    json_err::<scheduler::call::Acknowledge>(
        r#"{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":5}"#,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Encoding::Protobuf.decode::<scheduler::Call>(&bytes);
        let _ = Encoding::Protobuf.decode::<scheduler::Event>(&bytes);
        let _ = Encoding::Protobuf.decode::<master::Call>(&bytes);
        let _ = Encoding::Json.decode::<scheduler::Call>(&bytes);
    }

    #[test]
    fn mutated_json_never_panics(cut in 0usize..4000, byte in any::<u8>()) {
        let mut text = codec::to_json(&task_info("web"));
        let at = cut % text.len();
        text[at] = byte;
        let _ = codec::from_json::<TaskInfo>(&text);
        let _ = codec::from_json::<TaskInfo>(&text[..at]);
    }

    #[test]
    fn strings_round_trip_as_ascii(name in any::<String>(), value in any::<String>()) {
        let l = Labels { labels: vec![Label { key: name, value: Some(value) }] };
        let text = codec::to_json(&l);
        prop_assert!(text.is_ascii());
        let back: Labels = codec::from_json(&text).unwrap();
        prop_assert_eq!(back, l);
    }
}

#[test]
fn unknown_names_in_optional_enums_are_dropped_as_in_mesos() {
    // Mesos' parser discards an unrecognised name in an optional or repeated
    // enum field (proto2 semantics) and only fails for required ones.
    let c: scheduler::Call = parse(r#"{"type":"SOMETHING_NEW","framework_id":{"value":"f"}}"#);
    assert_eq!(
        (c.r#type, c.framework_id.unwrap().value.as_str()),
        (None, "f")
    );
    let fi: FrameworkInfo = parse(
        r#"{"user":"u","name":"n","capabilities":[{"type":"FUTURE_CAP"},{"type":"MULTI_ROLE"}]}"#,
    );
    assert_eq!(fi.capabilities.len(), 2);
    assert_eq!(fi.capabilities[0].r#type, None);
    assert_eq!(
        fi.capabilities[1].r#type(),
        framework_info::capability::Type::MultiRole
    );
}

#[test]
fn duration_edge_cases() {
    use master::call::DrainAgent;
    let cases = [
        (
            json!({"seconds": 0, "nanos": 5}),
            (0, 5),
            json!({"nanos": 5}),
        ),
        (
            json!({"seconds": -3, "nanos": -250000000}),
            (-3, -250_000_000),
            json!({"seconds": -3, "nanos": -250000000}),
        ),
        (json!({}), (0, 0), json!({})),
        (json!({"seconds": 2.0}), (2, 0), json!({"seconds": 2})),
        // The proto3 string form is tolerated on input.
        (
            json!("7.5s"),
            (7, 500_000_000),
            json!({"seconds": 7, "nanos": 500000000}),
        ),
    ];
    for (input, (seconds, nanos), output) in cases {
        let text = json!({"agent_id": {"value": "S1"}, "max_grace_period": input}).to_string();
        let d: DrainAgent = parse(&text);
        assert_eq!(
            d.max_grace_period,
            Some(prost_types::Duration { seconds, nanos }),
            "{text}"
        );
        assert_eq!(
            codec::to_json_value(&d)["max_grace_period"],
            output,
            "{text}"
        );
        roundtrip(&d);
    }
    for bad in [
        json!({"seconds": "x"}),
        json!({"seconds": 1, "nanos": -1}),
        json!({"seconds": 1, "bogus": 2}),
        json!(5),
    ] {
        json_err::<DrainAgent>(
            &json!({"agent_id": {"value": "S1"}, "max_grace_period": bad}).to_string(),
        );
    }
}
