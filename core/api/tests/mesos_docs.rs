//! The JSON examples of the Mesos scheduler and executor HTTP API docs
//! (docs/scheduler-http-api.md, docs/executor-http-api.md in apache/mesos),
//! written down here as the wire format they describe. Where the docs' prose
//! examples contradict scheduler.proto/executor.proto (e.g. OFFERS shown as a
//! bare array, ERROR with a top-level `message`, `bytes` instead of `data`,
//! executor MESSAGE with a top-level `data`), the example is given in the
//! shape Mesos actually produces/accepts, as COMPAT.md states it.
//!
//! Each case checks (a) the documented body parses into our message with the
//! expected values and (b) our JSON for that message, re-parsed, equals the
//! documented JSON (numbers compared by value: `15` == `15.0`).

mod common;

use common::*;
use corral_api::codec;
use corral_api::v1::{self, executor, scheduler, TaskState};
use prost::{Message, Name};
use serde_json::{json, Value};

/// Parses `doc` into `M`, checks our JSON for the result equals `doc`, and
/// that it round-trips in both encodings. Returns the message.
#[track_caller]
fn doc_case<M>(doc: Value) -> M
where
    M: Message + Name + Default + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let m: M = parse(&text);
    let ours = roundtrip(&m);
    // Equal modulo number formatting: each side contains the other.
    assert_json_superset(&ours, &doc);
    assert_json_superset(&doc, &ours);
    m
}

const FW: &str = "12220-3440-12532-2345";

// ---------------------------------------------------------------- scheduler

#[test]
fn scheduler_subscribe() {
    // As documented, including the since-removed `force` flag, which must be
    // ignored like any unknown field.
    let documented = r#"{
       "type"		: "SUBSCRIBE",
       "subscribe"	: {
          "framework_info"	: {
            "user" :  "foo",
            "name" :  "Example HTTP Framework"
          },
          "force" : true
      }
    }"#;
    let call: scheduler::Call = parse(documented);
    assert_eq!(call.r#type(), scheduler::call::Type::Subscribe);
    assert_eq!(call.framework_id, None);
    let fi = &call.subscribe.as_ref().unwrap().framework_info;
    assert_eq!(
        (fi.user.as_str(), fi.name.as_str()),
        ("foo", "Example HTTP Framework")
    );
    assert_eq!(fi.id, None);
    // Defaults as in Mesos' FrameworkInfo.
    assert_eq!(fi.failover_timeout(), 0.0);
    assert!(!fi.checkpoint());

    let call: scheduler::Call = doc_case(json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {"user": "foo", "name": "Example HTTP Framework"}}
    }));
    assert!(call.subscribe.unwrap().suppressed_roles.is_empty());
}

#[test]
fn scheduler_resubscribe_with_id() {
    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {
            "user": "foo", "name": "Example HTTP Framework",
            "id": {"value": FW}, "failover_timeout": 2419200.0,
            "roles": ["analytics"],
            "capabilities": [{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}]
        }}
    }));
    let fi = call.subscribe.unwrap().framework_info;
    assert_eq!(fi.id.unwrap().value, FW);
    assert_eq!(call.framework_id.unwrap().value, FW);
    assert_eq!(fi.failover_timeout, Some(2419200.0));
    assert_eq!(
        fi.capabilities[1].r#type(),
        v1::framework_info::capability::Type::ReservationRefinement
    );
}

#[test]
fn scheduler_subscribed_event() {
    let e: scheduler::Event = doc_case(json!({
        "type": "SUBSCRIBED",
        "subscribed": {
            "framework_id": {"value": FW},
            "heartbeat_interval_seconds": 15
        }
    }));
    let s = e.subscribed.unwrap();
    assert_eq!(s.framework_id.value, FW);
    assert_eq!(s.heartbeat_interval_seconds, Some(15.0));
    // Mesos writes doubles as `15.0`; either way it is a JSON number.
    let e = scheduler::Event {
        r#type: Some(scheduler::event::Type::Subscribed as i32),
        subscribed: Some(scheduler::event::Subscribed {
            framework_id: v1::FrameworkId { value: FW.into() },
            heartbeat_interval_seconds: Some(15.0),
            master_info: None,
        }),
        ..Default::default()
    };
    let text = String::from_utf8(codec::to_json(&e)).unwrap();
    assert!(
        text.contains(r#""heartbeat_interval_seconds":15"#),
        "{text}"
    );
}

#[test]
fn scheduler_teardown_and_revive() {
    for ty in ["TEARDOWN", "REVIVE"] {
        let call: scheduler::Call = doc_case(json!({"framework_id": {"value": FW}, "type": ty}));
        assert_eq!(call.framework_id.as_ref().unwrap().value, FW);
        assert_eq!(call.r#type().as_str_name(), ty);
    }
    // The docs' own text has a trailing comma, which is not JSON: rejected.
    let trailing = r#"{"framework_id": {"value" : "12220-3440-12532-2345"}, "type": "TEARDOWN",}"#;
    assert!(codec::from_json::<scheduler::Call>(trailing.as_bytes()).is_err());
}

#[test]
fn scheduler_accept_launch() {
    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [{"value": "12220-3440-12532-O12"}, {"value": "12220-3440-12532-O13"}],
            "operations": [{
                "type": "LAUNCH",
                "launch": {"task_infos": [{
                    "name": "my-task",
                    "task_id": {"value": "12220-3440-12532-my-task"},
                    "agent_id": {"value": "12220-3440-12532-S1233"},
                    "resources": [
                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}},
                        {"name": "mem", "type": "SCALAR", "scalar": {"value": 128.0}},
                        {"name": "ports", "type": "RANGES",
                         "ranges": {"range": [{"begin": 31000, "end": 31001}]}}
                    ],
                    "command": {
                        "shell": true,
                        "value": "sleep 1000",
                        "uris": [{"value": "http://example.com/a.tgz", "extract": true}]
                    },
                    "labels": {"labels": [{"key": "k", "value": "v"}]}
                }]}
            }],
            "filters": {"refuse_seconds": 5.0}
        }
    }));
    let accept = call.accept.unwrap();
    assert_eq!(accept.offer_ids.len(), 2);
    assert_eq!(accept.filters.unwrap().refuse_seconds, Some(5.0));
    let op = &accept.operations[0];
    assert_eq!(op.r#type(), v1::offer::operation::Type::Launch);
    let task = &op.launch.as_ref().unwrap().task_infos[0];
    assert_eq!(task.task_id.value, "12220-3440-12532-my-task");
    assert_eq!(task.resources[0].scalar.unwrap().value, 1.0);
    assert_eq!(
        task.resources[2].ranges.as_ref().unwrap().range[0].end,
        31001
    );
    assert_eq!(task.command.as_ref().unwrap().value(), "sleep 1000");
}

#[test]
fn scheduler_decline() {
    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "DECLINE",
        "decline": {
            "offer_ids": [{"value": "12220-3440-12532-O12"}, {"value": "12220-3440-12532-O13"}],
            "filters": {"refuse_seconds": 3600.0}
        }
    }));
    let d = call.decline.unwrap();
    assert_eq!(d.offer_ids[1].value, "12220-3440-12532-O13");
    assert_eq!(d.filters.unwrap().refuse_seconds(), 3600.0);
}

#[test]
fn scheduler_kill_and_shutdown() {
    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "KILL",
        "kill": {
            "task_id": {"value": "12220-3440-12532-my-task"},
            "agent_id": {"value": "12220-3440-12532-S1233"}
        }
    }));
    let k = call.kill.unwrap();
    assert_eq!(k.task_id.value, "12220-3440-12532-my-task");
    assert_eq!(k.agent_id.unwrap().value, "12220-3440-12532-S1233");

    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "SHUTDOWN",
        "shutdown": {
            "executor_id": {"value": "123450-2340-1232-my-executor"},
            "agent_id": {"value": "12220-3440-12532-S1233"}
        }
    }));
    assert_eq!(
        call.shutdown.unwrap().executor_id.value,
        "123450-2340-1232-my-executor"
    );
}

#[test]
fn scheduler_acknowledge() {
    // The documented placeholder uuid is unpadded base64 with trailing bits;
    // Mesos-style liberal parsing accepts it.
    let documented = r#"{
      "framework_id"	: {"value" : "12220-3440-12532-2345"},
      "type"			: "ACKNOWLEDGE",
      "acknowledge"		: {
        "agent_id"	:  {"value" : "12220-3440-12532-S1233"},
        "task_id"	:  {"value" : "12220-3440-12532-my-task"},
        "uuid"		:  "jhadf73jhakdlfha723adf"
      }
    }"#;
    let call: scheduler::Call = parse(documented);
    assert_eq!(call.acknowledge.unwrap().uuid.len(), 16);

    // A real 16-byte UUID, standard base64 with padding.
    let uuid = uuid::Uuid::parse_str("d40f3f3e-bbe3-44af-a230-4cb1eae72f67").unwrap();
    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "ACKNOWLEDGE",
        "acknowledge": {
            "agent_id": {"value": "12220-3440-12532-S1233"},
            "task_id": {"value": "12220-3440-12532-my-task"},
            "uuid": "1A8/PrvjRK+iMEyx6ucvZw=="
        }
    }));
    assert_eq!(call.acknowledge.unwrap().uuid, uuid.as_bytes());
}

#[test]
fn scheduler_reconcile() {
    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "RECONCILE",
        "reconcile": {"tasks": [
            {"task_id": {"value": "312325"}, "agent_id": {"value": "123535"}}
        ]}
    }));
    let t = &call.reconcile.unwrap().tasks[0];
    assert_eq!(
        (
            t.task_id.value.as_str(),
            t.agent_id.as_ref().unwrap().value.as_str()
        ),
        ("312325", "123535")
    );
    // Implicit reconciliation: an empty task list.
    let call: scheduler::Call =
        doc_case(json!({"framework_id": {"value": FW}, "type": "RECONCILE", "reconcile": {}}));
    assert!(call.reconcile.unwrap().tasks.is_empty());
}

#[test]
fn scheduler_message_call() {
    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "MESSAGE",
        "message": {
            "agent_id": {"value": "12220-3440-12532-S1233"},
            "executor_id": {"value": "my-framework-executor"},
            "data": "adaf838jahd748jnaldf"
        }
    }));
    let m = call.message.unwrap();
    assert_eq!(m.data.len(), 15);
    assert_eq!(m.executor_id.value, "my-framework-executor");
}

#[test]
fn scheduler_request() {
    let call: scheduler::Call = doc_case(json!({
        "framework_id": {"value": FW},
        "type": "REQUEST",
        "request": {"requests": [{
            "agent_id": {"value": "12220-3440-12532-S1233"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}}]
        }]}
    }));
    assert_eq!(call.request.unwrap().requests[0].resources[0].name, "cpus");
}

#[test]
fn scheduler_offers_event() {
    let e: scheduler::Event = doc_case(json!({
        "type": "OFFERS",
        "offers": {"offers": [{
            "id": {"value": "12214-23523-O235235"},
            "framework_id": {"value": "12124-235325-32425"},
            "agent_id": {"value": "12325-23523-S23523"},
            "hostname": "agent.host",
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0},
                 "role": "*", "allocation_info": {"role": "*"}},
                {"name": "ports", "type": "RANGES", "role": "*",
                 "ranges": {"range": [{"begin": 31000, "end": 32000}]},
                 "allocation_info": {"role": "*"}},
                {"name": "disks", "type": "SET", "set": {"item": ["sda", "sdb"]},
                 "reservations": [{"type": "DYNAMIC", "role": "analytics", "principal": "ops"}],
                 "allocation_info": {"role": "analytics"}}
            ],
            "attributes": [{"name": "rack", "type": "TEXT", "text": {"value": "r1"}}],
            "allocation_info": {"role": "*"}
        }]}
    }));
    let offer = &e.offers.unwrap().offers[0];
    assert_eq!(offer.id.value, "12214-23523-O235235");
    assert_eq!(offer.resources[0].role(), "*");
    assert_eq!(
        offer.resources[1].ranges.as_ref().unwrap().range[0].begin,
        31000
    );
    assert_eq!(
        offer.resources[2].set.as_ref().unwrap().item,
        ["sda", "sdb"]
    );
    assert_eq!(
        offer.resources[2].reservations[0].r#type(),
        v1::resource::reservation_info::Type::Dynamic
    );
    // Empty repeated fields are left out, as Mesos does (not `"executor_ids":[]`).
    let json = codec::to_json_value(&scheduler::Event {
        r#type: Some(scheduler::event::Type::Offers as i32),
        offers: Some(scheduler::event::Offers {
            offers: vec![offer.clone()],
        }),
        ..Default::default()
    });
    assert!(json["offers"]["offers"][0].get("executor_ids").is_none());
}

#[test]
fn scheduler_rescind_event() {
    let e: scheduler::Event = doc_case(
        json!({"type": "RESCIND", "rescind": {"offer_id": {"value": "12214-23523-O235235"}}}),
    );
    assert_eq!(e.rescind.unwrap().offer_id.value, "12214-23523-O235235");
}

#[test]
fn scheduler_update_event() {
    let e: scheduler::Event = doc_case(json!({
        "type": "UPDATE",
        "update": {"status": {
            "task_id": {"value": "12344-my-task"},
            "state": "TASK_RUNNING",
            "source": "SOURCE_EXECUTOR",
            "uuid": "1A8/PrvjRK+iMEyx6ucvZw==",
            "data": "dWhkamZodWFnZGo2M2Q3aGFka2Y=",
            "agent_id": {"value": "12214-23523-S235235"},
            "timestamp": 1735689600.5
        }}
    }));
    let s = e.update.unwrap().status;
    assert_eq!(s.state(), TaskState::TaskRunning);
    assert_eq!(s.source(), v1::task_status::Source::Executor);
    assert_eq!(s.data.as_deref(), Some(&b"uhdjfhuagdj63d7hadkf"[..]));
    assert_eq!(s.uuid.unwrap().len(), 16);
}

#[test]
fn scheduler_message_failure_error_heartbeat_events() {
    let e: scheduler::Event = doc_case(json!({
        "type": "MESSAGE",
        "message": {
            "agent_id": {"value": "12214-23523-S235235"},
            "executor_id": {"value": "12214-23523-my-executor"},
            "data": "adfadf3t2wa3353dfadf"
        }
    }));
    assert_eq!(e.message.unwrap().data.len(), 15);

    let e: scheduler::Event = doc_case(json!({
        "type": "FAILURE",
        "failure": {
            "agent_id": {"value": "12214-23523-S235235"},
            "executor_id": {"value": "12214-23523-my-executor"},
            "status": 1
        }
    }));
    assert_eq!(e.failure.unwrap().status, Some(1));

    let e: scheduler::Event =
        doc_case(json!({"type": "ERROR", "error": {"message": "Framework is not authorized"}}));
    assert_eq!(e.error.unwrap().message, "Framework is not authorized");

    let e: scheduler::Event = doc_case(json!({"type": "HEARTBEAT"}));
    assert_eq!(e.r#type(), scheduler::event::Type::Heartbeat);
    assert_eq!(codec::to_json(&e), br#"{"type":"HEARTBEAT"}"#);
}

// ----------------------------------------------------------------- executor

const EXEC: &str = "387aa966-8fc5-4428-a794-5a868a60d3eb";
const EFW: &str = "49154f1b-8cf6-4421-bf13-8bd11dccd1f1";
const TASK: &str = "d40f3f3e-bbe3-44af-a230-4cb1eae72f67";
const AGENT_ID: &str = "f1c9cdc5-195e-41a7-a0d7-adaa9af07f81";
/// The docs' uuid: base64 of the task id text plus a newline.
const DOC_UUID: &str = "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg==";

#[test]
fn executor_subscribe() {
    // As documented: `framework_id` inside an unacknowledged update is not a
    // field of Call.Update and is ignored; `\/` is a valid JSON escape.
    let documented = r#"{
      "type": "SUBSCRIBE",
      "executor_id": {"value": "387aa966-8fc5-4428-a794-5a868a60d3eb"},
      "framework_id": {"value": "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"},
      "subscribe": {
        "unacknowledged_tasks": [{
          "name": "dummy-task",
          "task_id": {"value": "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"},
          "agent_id": {"value": "f1c9cdc5-195e-41a7-a0d7-adaa9af07f81"},
          "command": {"value": "ls", "arguments": ["-l", "\/tmp"]}
        }],
        "unacknowledged_updates": [{
          "framework_id": {"value": "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"},
          "status": {
            "source": "SOURCE_EXECUTOR",
            "task_id": {"value": "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"},
            "state": "TASK_RUNNING",
            "uuid": "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg=="
          }
        }]
      }
    }"#;
    let call: executor::Call = parse(documented);
    assert_eq!(call.executor_id.value, EXEC);
    assert_eq!(call.framework_id.value, EFW);
    let sub = call.subscribe.clone().unwrap();
    assert_eq!(
        sub.unacknowledged_tasks[0]
            .command
            .as_ref()
            .unwrap()
            .arguments,
        ["-l", "/tmp"]
    );
    let st = &sub.unacknowledged_updates[0].status;
    assert_eq!(st.uuid.as_deref(), Some(format!("{TASK}\n").as_bytes()));
    assert_eq!(st.state(), TaskState::TaskRunning);

    // Our JSON is the documented JSON minus the ignored field.
    let mut expected: Value = serde_json::from_str(documented).unwrap();
    expected["subscribe"]["unacknowledged_updates"][0]
        .as_object_mut()
        .unwrap()
        .remove("framework_id");
    let ours = roundtrip(&call);
    assert_json_superset(&ours, &expected);
    assert_json_superset(&expected, &ours);
}

#[test]
fn executor_subscribed_event() {
    let e: executor::Event = doc_case(json!({
        "type": "SUBSCRIBED",
        "subscribed": {
            "executor_info": {
                "executor_id": {"value": EXEC},
                "command": {"value": "/path/to/executor"},
                "framework_id": {"value": EFW}
            },
            "framework_info": {"user": "foo", "name": "my_framework", "id": {"value": EFW}},
            "agent_info": {"hostname": "agenthost", "port": 5051, "id": {"value": AGENT_ID}},
            "container_id": {"value": "c7a1e7b4-4f2e-4a4b-9d1f-2b9d5a1c0e11"}
        }
    }));
    let s = e.subscribed.unwrap();
    assert_eq!(
        s.executor_info.command.unwrap().value(),
        "/path/to/executor"
    );
    assert_eq!(s.framework_info.id.unwrap().value, EFW);
    assert_eq!(s.agent_info.port(), 5051);
}

#[test]
fn executor_update_and_message_calls() {
    let call: executor::Call = doc_case(json!({
        "executor_id": {"value": EXEC},
        "framework_id": {"value": "9aaa9d0d-e00d-444f-bfbd-23dd197939a0-0000"},
        "type": "UPDATE",
        "update": {"status": {
            "executor_id": {"value": EXEC},
            "source": "SOURCE_EXECUTOR",
            "state": "TASK_RUNNING",
            "task_id": {"value": "66724cec-2609-4fa0-8d93-c5fb2099d0f8"},
            "uuid": DOC_UUID
        }}
    }));
    assert_eq!(call.update.unwrap().status.executor_id.unwrap().value, EXEC);

    // executor.proto puts `data` under `message` (the docs' example shows it
    // at the top level); the data uses both `+` and `/`, so it must be the
    // standard alphabet, padded.
    let call: executor::Call = doc_case(json!({
        "executor_id": {"value": EXEC},
        "framework_id": {"value": "9aaa9d0d-e00d-444f-bfbd-23dd197939a0-0000"},
        "type": "MESSAGE",
        "message": {"data": "t+Wonz5fRFKMzCnEptlv5A=="}
    }));
    assert_eq!(call.message.unwrap().data.len(), 16);
}

#[test]
fn executor_launch_event() {
    // As documented, with a `framework_info` that Event.Launch does not have:
    // ignored.
    let documented = json!({
        "type": "LAUNCH",
        "launch": {
            "framework_info": {"id": {"value": EFW}, "user": "foo", "name": "my_framework"},
            "task": {
                "name": "dummy-task",
                "task_id": {"value": TASK},
                "agent_id": {"value": AGENT_ID},
                "command": {"value": "sleep", "arguments": ["100"]}
            }
        }
    });
    let e: executor::Event = parse(&documented.to_string());
    assert_eq!(
        e.launch
            .as_ref()
            .unwrap()
            .task
            .command
            .as_ref()
            .unwrap()
            .arguments,
        ["100"]
    );
    let mut expected = documented;
    expected["launch"]
        .as_object_mut()
        .unwrap()
        .remove("framework_info");
    let e2: executor::Event = doc_case(expected);
    assert_eq!(e, e2);
}

#[test]
fn executor_kill_acknowledged_message_shutdown_error_events() {
    let e: executor::Event =
        doc_case(json!({"type": "KILL", "kill": {"task_id": {"value": TASK}}}));
    assert_eq!(e.kill.unwrap().task_id.value, TASK);

    let e: executor::Event = doc_case(json!({
        "type": "ACKNOWLEDGED",
        "acknowledged": {"task_id": {"value": TASK}, "uuid": DOC_UUID}
    }));
    assert_eq!(e.acknowledged.unwrap().uuid, format!("{TASK}\n").as_bytes());

    let e: executor::Event =
        doc_case(json!({"type": "MESSAGE", "message": {"data": "c2FtcGxlIGRhdGE="}}));
    assert_eq!(e.message.unwrap().data, b"sample data");

    let e: executor::Event = doc_case(json!({"type": "SHUTDOWN"}));
    assert_eq!(e.r#type(), executor::event::Type::Shutdown);

    let e: executor::Event =
        doc_case(json!({"type": "ERROR", "error": {"message": "Unrecoverable error"}}));
    assert_eq!(e.error.unwrap().message, "Unrecoverable error");
}
