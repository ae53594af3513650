//! Bad input never changes state: each test checks the answer (status code,
//! or the TASK_* state and reason of the master's update) and compares a
//! summary of GET_STATE before and after.

use std::collections::BTreeSet;
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{
    command_task, default_framework_info, processes_in, scalars, Cluster, ClusterOptions,
    EventStream, Scheduler, TIMEOUT,
};
use serde_json::{json, Value};

/// What must not change: frameworks, tasks (with states), agents,
/// executors.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    frameworks: BTreeSet<String>,
    completed_frameworks: BTreeSet<String>,
    tasks: BTreeSet<(String, String)>,
    completed_tasks: BTreeSet<(String, String)>,
    agents: BTreeSet<String>,
    executors: BTreeSet<String>,
}

fn ids(v: &Value, f: impl Fn(&Value) -> String) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

fn tasks(v: &Value) -> BTreeSet<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["task_id"]["value"].as_str().unwrap_or("").to_string(),
                        t["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn summary(c: &Cluster) -> Summary {
    let st = c.state_json().await;
    let fw = |f: &Value| {
        f["framework_info"]["id"]["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    Summary {
        frameworks: ids(&st["get_frameworks"]["frameworks"], fw),
        completed_frameworks: ids(&st["get_frameworks"]["completed_frameworks"], fw),
        tasks: tasks(&st["get_tasks"]["tasks"]),
        completed_tasks: tasks(&st["get_tasks"]["completed_tasks"]),
        agents: ids(&st["get_agents"]["agents"], |a| {
            a["agent_info"]["id"]["value"]
                .as_str()
                .unwrap_or("")
                .to_string()
        }),
        executors: ids(&st["get_executors"]["executors"], |e| {
            e["executor_info"]["executor_id"]["value"]
                .as_str()
                .unwrap_or("")
                .to_string()
        }),
    }
}

async fn cluster() -> Cluster {
    Cluster::start(ClusterOptions::default()).await
}

fn subscribe_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": default_framework_info("bad")},
    }))
    .unwrap()
}

async fn post_scheduler(c: &Cluster, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let (status, _, body) = c.post_raw("/api/v1/scheduler", headers, body).await;
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test]
async fn malformed_json_is_400() {
    let c = cluster().await;
    let before = summary(&c).await;
    let (status, body) = post_scheduler(
        &c,
        &[JSON],
        br#"{"type": "SUBSCRIBE", "subscribe": {"framework_info": "#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.is_empty(), "a 400 explains itself");
    // Valid JSON, wrong shape: a string where a message is expected.
    let (status, body) = post_scheduler(
        &c,
        &[JSON],
        br#"{"type": "SUBSCRIBE", "subscribe": "yes"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A number where the proto has a string.
    let (status, body) = post_scheduler(
        &c,
        &[JSON],
        serde_json::to_vec(&json!({
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": default_framework_info("x")},
            "framework_id": {"value": 7},
        }))
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // An unknown call type.
    let (status, body) = post_scheduler(
        &c,
        &[JSON],
        serde_json::to_vec(&json!({
            "type": "SUBSCRIBE_PLEASE",
            "subscribe": {"framework_info": default_framework_info("x")},
        }))
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(summary(&c).await, before);
    assert!(master_answers(&c).await);
}

#[tokio::test]
async fn malformed_protobuf_is_400() {
    let c = cluster().await;
    let before = summary(&c).await;
    for garbage in [
        vec![0xff, 0xff, 0xff, 0xff],
        vec![0x0a, 0x80],
        b"{\"type\":\"SUBSCRIBE\"}".to_vec(),
    ] {
        let (status, body) = post_scheduler(
            &c,
            &[("Content-Type", "application/x-protobuf")],
            garbage.clone(),
        )
        .await;
        assert_eq!(status, 400, "{garbage:?}: {body}");
    }
    assert_eq!(summary(&c).await, before);
}

#[tokio::test]
async fn missing_content_type_is_400_and_wrong_one_415() {
    let c = cluster().await;
    let before = summary(&c).await;
    let (status, body) = post_scheduler(&c, &[], subscribe_body()).await;
    assert_eq!(status, 400, "missing Content-Type: {body}");
    let (status, body) =
        post_scheduler(&c, &[("Content-Type", "text/plain")], subscribe_body()).await;
    assert_eq!(status, 415, "text/plain: {body}");
    let (status, body) =
        post_scheduler(&c, &[("Content-Type", "application/xml")], subscribe_body()).await;
    assert_eq!(status, 415, "application/xml: {body}");
    assert_eq!(summary(&c).await, before);
}

#[tokio::test]
async fn get_on_the_scheduler_endpoint_is_405() {
    let c = cluster().await;
    let before = summary(&c).await;
    let (status, _, _) = c.get("/api/v1/scheduler").await;
    assert_eq!(status, 405);
    let r = c
        .http
        .put(c.url("/api/v1/scheduler"))
        .header("Content-Type", "application/json")
        .body(subscribe_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "PUT");
    assert_eq!(summary(&c).await, before);
}

/// A subscribed framework with one running task, for the stream-id tests.
async fn framework_with_task(c: &Cluster) -> Scheduler {
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    s.launch(
        &offer,
        vec![command_task("t", &c.agents[0].id, "sleep 100", 0.1, 32.0)],
    )
    .await;
    s.follow("t", "TASK_RUNNING").await;
    s
}

#[tokio::test]
async fn calls_without_or_with_a_wrong_stream_id_are_400() {
    let c = cluster().await;
    let s = framework_with_task(&c).await;
    let before = summary(&c).await;
    let teardown = json!({"type": "TEARDOWN", "framework_id": s.fid()});
    let kill =
        json!({"type": "KILL", "framework_id": s.fid(), "kill": {"task_id": {"value": "t"}}});
    for call in [&teardown, &kill] {
        let (status, body) = s.call_with_stream_id(call, None).await;
        assert_eq!(
            status, 400,
            "{} without Mesos-Stream-Id: {body}",
            call["type"]
        );
        let (status, body) = s
            .call_with_stream_id(call, Some("6c3b1a1e-0000-4000-8000-000000000000"))
            .await;
        assert_eq!(
            status, 400,
            "{} with a wrong Mesos-Stream-Id: {body}",
            call["type"]
        );
        let (status, body) = s.call_with_stream_id(call, Some("")).await;
        assert_eq!(
            status, 400,
            "{} with an empty Mesos-Stream-Id: {body}",
            call["type"]
        );
    }
    assert_eq!(
        summary(&c).await,
        before,
        "TEARDOWN/KILL with a bad stream id changed state"
    );
    // The subscription is still good.
    s.call_ok(json!({"type": "REVIVE"})).await;
    assert_eq!(summary(&c).await, before);
}

#[tokio::test]
async fn subscribe_with_a_stream_id_is_400() {
    let c = cluster().await;
    let before = summary(&c).await;
    let (status, body) = post_scheduler(
        &c,
        &[
            JSON,
            ("Mesos-Stream-Id", "6c3b1a1e-0000-4000-8000-000000000000"),
        ],
        subscribe_body(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(summary(&c).await, before, "no framework added");
    assert!(summary(&c).await.frameworks.is_empty());
}

#[tokio::test]
async fn call_for_an_unknown_framework_is_400() {
    let c = cluster().await;
    let s = c.subscribe(Encoding::Json).await;
    let before = summary(&c).await;
    for ty in ["TEARDOWN", "REVIVE"] {
        let call = json!({"type": ty, "framework_id": {"value": "no-such-framework"}});
        let (status, body) = s.call_with_stream_id(&call, Some(&s.stream_id)).await;
        assert_eq!(status, 400, "{ty}: {body}");
    }
    // And a call without any framework id.
    let (status, body) = s
        .call_with_stream_id(&json!({"type": "REVIVE"}), Some(&s.stream_id))
        .await;
    assert_eq!(status, 400, "no framework_id: {body}");
    assert_eq!(summary(&c).await, before);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let c = Cluster::start(ClusterOptions {
        master_flags: vec!["--max_request_body_bytes=2048".into()],
        ..Default::default()
    })
    .await;
    let before = summary(&c).await;
    let mut info = default_framework_info("big");
    info["name"] = json!("x".repeat(4096));
    let big =
        serde_json::to_vec(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}))
            .unwrap();
    let (status, body) = post_scheduler(&c, &[JSON], big).await;
    assert_eq!(status, 413, "{body}");
    // The operator API has the same limit.
    let mut padded = json!({"type": "GET_HEALTH"});
    padded["padding"] = json!("y".repeat(4096));
    let (status, _) = c.operator(padded).await;
    assert_eq!(status, 413);
    assert_eq!(summary(&c).await, before);
    // A body under the limit still works.
    let s = c.subscribe(Encoding::Json).await;
    assert!(!s.framework_id.is_empty());
}

/// A one-shot HTTP server that answers with a chunked 200 carrying
/// `payload` and then keeps the connection open.
async fn fake_stream_server(payload: &'static [u8], hold: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = sock.read(&mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let _ = sock.write_all(head).await;
        let _ = sock
            .write_all(format!("{:x}\r\n", payload.len()).as_bytes())
            .await;
        let _ = sock.write_all(payload).await;
        let _ = sock.write_all(b"\r\n").await;
        if hold {
            // Keep the connection open: the reader must not wait for more.
            tokio::time::sleep(Duration::from_secs(60)).await;
        } else {
            let _ = sock.write_all(b"0\r\n\r\n").await;
        }
    });
    format!("http://{addr}/api/v1/scheduler")
}

#[tokio::test]
async fn recordio_reader_rejects_oversized_and_garbage_frames() {
    let http = reqwest::Client::new();
    for (payload, expect) in [
        // Announces 1 GiB: refused from the length alone, nothing buffered.
        (&b"1073741824\n{\"type\":"[..], "exceeds the limit"),
        (&b"12x\n{}"[..], "not a decimal number"),
        (&b"0\n"[..], "zero-length"),
    ] {
        let url = fake_stream_server(payload, true).await;
        let resp = http.post(&url).body("{}").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut events = EventStream::from_bytes(resp.bytes_stream(), Encoding::Json, 1 << 20);
        let err = events.next(Duration::from_secs(5)).await.unwrap_err();
        assert!(err.contains(expect), "{payload:?}: {err}");
    }
    // A valid record, then the stream ends inside the next one.
    let url = fake_stream_server(b"20\n{\"type\":\"HEARTBEAT\"}15\n{\"type\"", false).await;
    let resp = http.post(&url).body("{}").send().await.unwrap();
    let mut events = EventStream::from_bytes(resp.bytes_stream(), Encoding::Json, 1 << 20);
    let first = events.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(first["type"], "HEARTBEAT");
    let err = events.next(Duration::from_secs(5)).await.unwrap_err();
    assert!(err.contains("ended inside a record"), "{err}");
}

/// The UPDATE of a task without uuid from the master, whatever its state.
async fn master_update(s: &mut Scheduler, task: &str) -> Value {
    let st = s.next_update(task).await;
    assert_eq!(st["source"], "SOURCE_MASTER", "{st}");
    assert!(
        st.get("uuid").is_none(),
        "master updates need no acknowledgement: {st}"
    );
    st
}

async fn assert_nothing_launched(c: &Cluster) {
    // No executor, no process, no sandbox on the agent.
    let agent = &c.agents[0];
    assert!(
        processes_in(&agent.work_dir).is_empty(),
        "processes in the agent work dir"
    );
    let frameworks_dir = agent
        .work_dir
        .join("slaves")
        .join(&agent.id)
        .join("frameworks");
    let sandboxes: Vec<_> = std::fs::read_dir(&frameworks_dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        sandboxes.is_empty(),
        "sandboxes were created: {sandboxes:?}"
    );
}

#[tokio::test]
async fn accept_with_an_unknown_offer_gives_task_lost() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let before = summary(&c).await;
    s.call_ok(json!({
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [{"value": "no-such-offer"}],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [
                command_task("lost-1", &c.agents[0].id, "echo hi", 0.1, 32.0)
            ]}}],
        }
    }))
    .await;
    let st = master_update(&mut s, "lost-1").await;
    assert_eq!(st["state"], "TASK_LOST", "{st}");
    assert_eq!(st["reason"], "REASON_INVALID_OFFERS", "{st}");
    assert_eq!(summary(&c).await, before, "no task recorded");
    assert_nothing_launched(&c).await;

    // The real offer is still usable.
    s.launch(
        &offer,
        vec![command_task("ok-1", &c.agents[0].id, "echo hi", 0.1, 32.0)],
    )
    .await;
    s.follow("ok-1", "TASK_FINISHED").await;
}

#[tokio::test]
async fn accept_with_an_unknown_offer_gives_task_dropped_to_partition_aware() {
    let c = cluster().await;
    let mut info = default_framework_info("pa");
    info["capabilities"] = json!([{"type": "PARTITION_AWARE"}]);
    let mut s = c.subscribe_with(Encoding::Json, info).await;
    let _offer = s.offers().await.remove(0);
    let before = summary(&c).await;
    s.call_ok(json!({
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [{"value": "no-such-offer"}],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [
                command_task("dropped-1", &c.agents[0].id, "echo hi", 0.1, 32.0)
            ]}}],
        }
    }))
    .await;
    let st = master_update(&mut s, "dropped-1").await;
    assert_eq!(st["state"], "TASK_DROPPED", "{st}");
    assert_eq!(st["reason"], "REASON_INVALID_OFFERS", "{st}");
    assert_eq!(summary(&c).await, before);
    assert_nothing_launched(&c).await;
}

#[tokio::test]
async fn launch_beyond_the_offer_gives_task_error() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let before = summary(&c).await;
    s.launch(
        &offer,
        vec![command_task(
            "greedy",
            &c.agents[0].id,
            "echo hi",
            100.0,
            32.0,
        )],
    )
    .await;
    let st = master_update(&mut s, "greedy").await;
    assert_eq!(st["state"], "TASK_ERROR", "{st}");
    assert_eq!(st["reason"], "REASON_TASK_INVALID", "{st}");
    assert!(
        st["message"].as_str().is_some_and(|m| !m.is_empty()),
        "TASK_ERROR explains itself: {st}"
    );
    assert_eq!(summary(&c).await, before, "nothing recorded");
    assert_nothing_launched(&c).await;
    assert_eq!(c.metric("master/tasks_running").await, Some(0.0));
}

#[tokio::test]
async fn duplicate_task_id_gives_task_error() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].id.clone();
    s.launch(
        &offer,
        vec![command_task("dup", &agent, "sleep 100", 0.1, 32.0)],
    )
    .await;
    s.follow("dup", "TASK_RUNNING").await;
    let before = summary(&c).await;
    assert!(before
        .tasks
        .contains(&("dup".to_string(), "TASK_RUNNING".to_string())));

    let offer = s.offers().await.remove(0);
    s.launch(
        &offer,
        vec![command_task("dup", &agent, "echo second", 0.1, 32.0)],
    )
    .await;
    let st = master_update(&mut s, "dup").await;
    assert_eq!(st["state"], "TASK_ERROR", "{st}");
    assert!(st["message"].as_str().unwrap_or("").contains("dup"), "{st}");
    assert_eq!(summary(&c).await, before, "the running task is untouched");
    // Still exactly one running task, and it still runs.
    let st = c.state_json().await;
    let running: Vec<&Value> = st["get_tasks"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["task_id"]["value"] == "dup")
        .collect();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["state"], "TASK_RUNNING");
}

#[tokio::test]
async fn task_without_command_or_executor_gives_task_error() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let before = summary(&c).await;
    let task = json!({
        "name": "empty",
        "task_id": {"value": "empty"},
        "agent_id": {"value": c.agents[0].id},
        "resources": scalars(0.1, 32.0),
    });
    s.launch(&offer, vec![task]).await;
    let st = master_update(&mut s, "empty").await;
    assert_eq!(st["state"], "TASK_ERROR", "{st}");
    assert_eq!(st["reason"], "REASON_TASK_INVALID", "{st}");
    assert_eq!(summary(&c).await, before);
    assert_nothing_launched(&c).await;
}

#[tokio::test]
async fn operator_api_rejects_malformed_bodies_and_unacceptable_accept() {
    let c = cluster().await;
    let before = summary(&c).await;
    let (status, _, body) = c
        .post_raw("/api/v1", &[JSON], b"{\"type\": \"GET_STATE\"".to_vec())
        .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = c
        .post_raw(
            "/api/v1",
            &[("Content-Type", "application/x-protobuf")],
            vec![0xff, 0xff],
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = c
        .post_raw("/api/v1", &[], b"{\"type\":\"GET_STATE\"}".to_vec())
        .await;
    assert_eq!(status, 400, "missing Content-Type");
    let (status, _, body) = c
        .post_raw(
            "/api/v1",
            &[JSON, ("Accept", "text/html")],
            b"{\"type\":\"GET_STATE\"}".to_vec(),
        )
        .await;
    assert_eq!(status, 406, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = c
        .post_raw(
            "/api/v1/operator",
            &[JSON, ("Accept", "text/html")],
            b"{\"type\":\"GET_HEALTH\"}".to_vec(),
        )
        .await;
    assert_eq!(status, 406, "the /api/v1/operator alias behaves the same");
    // A teardown of an unknown framework is refused and changes nothing.
    let (status, _) = c
        .operator(json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": "nope"}}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(summary(&c).await, before);
}

/// The master still answers after the bad input.
async fn master_answers(c: &Cluster) -> bool {
    let (status, _, _) = c.get("/health").await;
    status == 200 && tokio::time::timeout(TIMEOUT, c.get_state()).await.is_ok()
}

/// Issue 11.4: a call missing a field its proto marks `required` is
/// refused with 400 naming the field, in JSON and in protobuf, on every
/// API (scheduler, operator, the agent's executor and operator APIs), and
/// changes nothing; unknown fields are still accepted.
#[tokio::test]
async fn calls_missing_required_fields_are_400_naming_the_field() {
    let c = cluster().await;
    let s = framework_with_task(&c).await;
    let before = summary(&c).await;
    // SUBSCRIBE without framework_info.user, JSON.
    let (status, body) = post_scheduler(
        &c,
        &[JSON],
        serde_json::to_vec(&json!({
            "type": "SUBSCRIBE",
            "subscribe": {"framework_info": {"name": "no-user"}},
        }))
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("subscribe.framework_info.user"), "{body}");
    // The same in protobuf, written by hand so that `user` (FrameworkInfo
    // field 1) is absent from the wire: Call{type(2)=SUBSCRIBE(1),
    // subscribe(3)=Subscribe{framework_info(1)=FrameworkInfo{name(2)="fw"}}}.
    let bytes = vec![0x10, 0x01, 0x1a, 0x06, 0x0a, 0x04, 0x12, 0x02, b'f', b'w'];
    let (status, body) =
        post_scheduler(&c, &[("Content-Type", "application/x-protobuf")], bytes).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("subscribe.framework_info.user"), "{body}");
    // A subscribed framework's KILL without kill.task_id.
    let (status, body) = s
        .call(json!({"type": "KILL", "kill": {"agent_id": {"value": c.agents[0].id}}}))
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(body.contains("kill.task_id"), "{body}");
    // A launch whose resource lacks its type, deep in an ACCEPT.
    let (status, body) = s
        .call(json!({"type": "ACCEPT", "accept": {
            "offer_ids": [{"value": "o"}],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                "name": "x", "task_id": {"value": "x"},
                "agent_id": {"value": c.agents[0].id},
                "resources": [{"name": "cpus", "scalar": {"value": 1}}],
                "command": {"value": "true"}
            }]}}]
        }}))
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(
        body.contains("accept.operations[0].launch.task_infos[0].resources[0].type"),
        "{body}"
    );
    // Unknown fields alongside everything required: still accepted.
    let (status, body) = s
        .call(json!({"type": "REVIVE", "revive": {}, "no_such_field": [1, 2]}))
        .await;
    assert_eq!(status.as_u16(), 202, "{body}");
    // Operator API: RESERVE_RESOURCES without its agent_id.
    let (status, body) = c
        .operator(json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
                           "reservations": [{"type": "DYNAMIC", "role": "r"}]}]
        }}))
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(
        body.to_string().contains("reserve_resources.agent_id"),
        "{body}"
    );
    // The legacy form endpoint parses its resources the same way.
    let (status, body) = c
        .post_form(
            "/master/reserve",
            &[
                ("slaveId", c.agents[0].id.as_str()),
                (
                    "resources",
                    r#"[{"name": "cpus", "scalar": {"value": 1}, "role": "r",
                         "reservation": {"principal": "p"}}]"#,
                ),
            ],
        )
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(
        body.contains("missing required fields") && body.contains("type"),
        "{body}"
    );
    // The agent's executor API: SUBSCRIBE without executor_id.
    let agent = &c.agents[0];
    let resp = c
        .http
        .post(agent.url("/api/v1/executor"))
        .header("Content-Type", "application/json")
        .body(
            json!({"type": "SUBSCRIBE", "framework_id": {"value": "f"}, "subscribe": {}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.unwrap();
    assert!(body.contains("executor_id"), "{body}");
    // The agent's operator API: KILL_CONTAINER without container_id.
    let (status, body) = c
        .agent_operator(
            &agent.endpoint,
            json!({"type": "KILL_CONTAINER", "kill_container": {}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(summary(&c).await, before);
}
