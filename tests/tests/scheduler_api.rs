//! The v1 scheduler API, the operator API and the legacy endpoints against
//! a real master and real agents, as a Mesos framework and tools use them.

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{
    command_task, default_framework_info, processes_in, scalar_of, scalars, unb64, url_encode,
    wait_for, Cluster, ClusterOptions, TIMEOUT,
};
use serde_json::{json, Value};

const AGENT_CPUS: f64 = 2.0;
const AGENT_MEM: f64 = 1024.0;

async fn cluster() -> Cluster {
    Cluster::start(ClusterOptions::default()).await
}

/// Task ids in GET_STATE's `get_tasks.<key>`.
fn task_ids(state: &Value, key: &str) -> Vec<(String, String)> {
    state["get_tasks"][key]
        .as_array()
        .map(|ts| {
            ts.iter()
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

fn framework_ids(state: &Value, key: &str) -> Vec<String> {
    state["get_frameworks"][key]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    f["framework_info"]["id"]["value"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn subscribe_answers_a_chunked_stream_with_subscribed_and_heartbeats() {
    let c = Cluster::start(ClusterOptions {
        master_flags: vec!["--heartbeat_interval=1secs".into()],
        ..Default::default()
    })
    .await;
    let mut s = c.subscribe(Encoding::Json).await;

    assert!(
        is_uuid(&s.stream_id),
        "Mesos-Stream-Id is a UUID: {}",
        s.stream_id
    );
    assert_eq!(
        s.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(
        s.headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked"),
        "a SUBSCRIBE response must be chunked: {:?}",
        s.headers
    );
    let sub = &s.subscribed["subscribed"];
    assert!(!s.framework_id.is_empty());
    assert_eq!(
        sub["heartbeat_interval_seconds"].as_f64(),
        Some(1.0),
        "{sub}"
    );
    let port: u16 = c.master.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        sub["master_info"]["port"].as_u64(),
        Some(u64::from(port)),
        "{sub}"
    );
    assert_eq!(sub["master_info"]["address"]["ip"], "127.0.0.1", "{sub}");
    assert!(sub["master_info"]["id"]
        .as_str()
        .is_some_and(|i| !i.is_empty()));

    // HEARTBEATs flow at the advertised interval.
    let hb = s
        .events
        .wait_type("HEARTBEAT", Duration::from_secs(5))
        .await;
    assert!(hb.is_ok(), "no HEARTBEAT within 5s: {hb:?}");

    // The framework is registered, active and connected.
    let state = c.state_json().await;
    let f = &state["get_frameworks"]["frameworks"][0];
    assert_eq!(f["framework_info"]["id"]["value"], s.framework_id.as_str());
    assert_eq!(f["active"], true);
    assert_eq!(f["connected"], true);
}

#[tokio::test]
async fn offers_carry_the_allocation_role_and_the_agent_resources() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offers = s.offers().await;
    assert_eq!(offers.len(), 1, "one agent, one offer: {offers:?}");
    let o = &offers[0];
    assert_eq!(o["agent_id"]["value"], c.agents[0].id.as_str());
    assert_eq!(o["framework_id"]["value"], s.framework_id.as_str());
    assert_eq!(o["hostname"], "127.0.0.1");
    assert_eq!(o["allocation_info"]["role"], "*", "{o}");
    let rs = &o["resources"];
    assert_eq!(scalar_of(rs, "cpus"), AGENT_CPUS, "{rs}");
    assert_eq!(scalar_of(rs, "mem"), AGENT_MEM, "{rs}");
    assert_eq!(scalar_of(rs, "disk"), 1024.0, "{rs}");
    for r in rs.as_array().unwrap() {
        assert_eq!(
            r["allocation_info"]["role"], "*",
            "every offered resource has allocation_info.role: {r}"
        );
    }
    let ports = rs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ports")
        .expect("ports offered");
    assert_eq!(ports["type"], "RANGES");
    assert_eq!(
        ports["ranges"]["range"][0]["begin"].as_u64(),
        Some(31000),
        "{ports}"
    );
    assert_eq!(
        ports["ranges"]["range"][0]["end"].as_u64(),
        Some(31099),
        "{ports}"
    );
    assert!(c.metric("master/outstanding_offers").await >= Some(1.0));
}

#[tokio::test]
async fn command_task_runs_to_finished_and_its_output_is_in_the_sandbox() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task("echo-1", &agent.id, "echo hi", 0.1, 32.0)],
    )
    .await;

    let seen = s.follow("echo-1", "TASK_FINISHED").await;
    let states: Vec<&str> = seen.iter().map(|u| u["state"].as_str().unwrap()).collect();
    assert_eq!(
        states,
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{seen:?}"
    );
    for u in &seen {
        assert_eq!(
            unb64(u["uuid"].as_str().unwrap()).len(),
            16,
            "uuid is 16 bytes: {u}"
        );
        assert_eq!(u["agent_id"]["value"], agent.id.as_str(), "{u}");
        assert_eq!(u["source"], "SOURCE_EXECUTOR", "{u}");
    }

    // Acknowledged: the task is among the completed tasks.
    assert!(
        wait_for(TIMEOUT, || async {
            let st = c.state_json().await;
            task_ids(&st, "completed_tasks").contains(&("echo-1".into(), "TASK_FINISHED".into()))
                && task_ids(&st, "tasks").is_empty()
        })
        .await,
        "echo-1 not completed in GET_TASKS: {}",
        c.state_json().await["get_tasks"]
    );
    let (status, tasks) = c.operator(json!({"type": "GET_TASKS"})).await;
    assert_eq!(status, 200);
    assert_eq!(tasks["type"], "GET_TASKS");
    let completed: Vec<&Value> = tasks["get_tasks"]["completed_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["task_id"]["value"] == "echo-1")
        .collect();
    assert_eq!(
        completed.len(),
        1,
        "echo-1 is one completed task: {completed:?}"
    );
    let t = completed[0];
    assert_eq!(t["state"], "TASK_FINISHED", "{t}");
    assert_eq!(t["name"], "echo-1", "{t}");
    assert_eq!(t["agent_id"]["value"], agent.id.as_str(), "{t}");
    assert_eq!(scalar_of(&t["resources"], "cpus"), 0.1, "{t}");
    let states: Vec<&str> = t["statuses"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["state"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        states.ends_with(&["TASK_RUNNING", "TASK_FINISHED"]),
        "statuses of echo-1: {states:?}"
    );

    // The command executor's executor id is the task id (Mesos' layout).
    let sandbox = agent.sandbox(&s.framework_id, "echo-1");
    let stdout = std::fs::read_to_string(sandbox.join("stdout"))
        .unwrap_or_else(|e| panic!("{}: {e}", sandbox.join("stdout").display()));
    assert!(
        stdout.lines().any(|l| l.trim() == "hi"),
        "stdout: {stdout:?}"
    );

    // /files/read on the agent, by absolute path and by virtual path.
    let real = std::fs::canonicalize(sandbox.join("stdout")).unwrap();
    for path in [
        real.display().to_string(),
        format!(
            "/frameworks/{}/executors/echo-1/runs/latest/stdout",
            s.framework_id
        ),
    ] {
        let r = c
            .http
            .get(agent.url(&format!("/files/read?path={}&offset=0", url_encode(&path))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "/files/read {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["offset"].as_u64(), Some(0), "{v}");
        assert!(
            v["data"]
                .as_str()
                .unwrap()
                .lines()
                .any(|l| l.trim() == "hi"),
            "{path}: {v}"
        );
    }
}

#[tokio::test]
async fn kill_of_a_running_task_gives_task_killed() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task("sleeper", &agent.id, "sleep 100", 0.1, 32.0)],
    )
    .await;
    s.follow("sleeper", "TASK_RUNNING").await;
    let sandbox = agent.sandbox(&s.framework_id, "sleeper");
    assert!(
        !processes_in(&sandbox).is_empty(),
        "the task runs in its sandbox"
    );

    // pymesos sends KILL without agent_id.
    s.call_ok(json!({"type": "KILL", "kill": {"task_id": {"value": "sleeper"}}}))
        .await;
    let seen = s.follow("sleeper", "TASK_KILLED").await;
    assert_eq!(seen.last().unwrap()["state"], "TASK_KILLED");
    assert!(
        wait_for(TIMEOUT, || async { processes_in(&sandbox).is_empty() }).await,
        "processes left in the sandbox after TASK_KILLED: {:?}",
        processes_in(&sandbox)
    );
    assert!(
        wait_for(TIMEOUT, || async {
            task_ids(&c.state_json().await, "completed_tasks")
                .contains(&("sleeper".into(), "TASK_KILLED".into()))
        })
        .await
    );
    assert_eq!(c.metric("master/tasks_killed").await, Some(1.0));
}

#[tokio::test]
async fn reconciliation_answers_from_the_master_without_uuid() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task("rec-1", &agent.id, "sleep 100", 0.1, 32.0)],
    )
    .await;
    s.follow("rec-1", "TASK_RUNNING").await;

    let is_reconcile = |task: &'static str| {
        move |e: &Value| {
            e["type"] == "UPDATE"
                && e["update"]["status"]["task_id"]["value"] == task
                && e["update"]["status"]["reason"] == "REASON_RECONCILIATION"
        }
    };

    // Explicit, with only the task id (as pymesos sends it).
    s.call_ok(
        json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "rec-1"}}]}}),
    )
    .await;
    let u = s.events.wait(TIMEOUT, is_reconcile("rec-1")).await.unwrap();
    let st = &u["update"]["status"];
    assert_eq!(st["state"], "TASK_RUNNING", "{st}");
    assert_eq!(st["source"], "SOURCE_MASTER", "{st}");
    assert!(
        st.get("uuid").is_none(),
        "reconciliation updates carry no uuid: {st}"
    );
    assert_eq!(st["agent_id"]["value"], agent.id.as_str());

    // Implicit: every task the master knows.
    s.call_ok(json!({"type": "RECONCILE", "reconcile": {"tasks": []}}))
        .await;
    let u = s.events.wait(TIMEOUT, is_reconcile("rec-1")).await.unwrap();
    let st = &u["update"]["status"];
    assert_eq!(st["state"], "TASK_RUNNING", "{st}");
    assert!(st.get("uuid").is_none(), "{st}");

    // An unknown task is reported lost (the framework is not partition-aware).
    s.call_ok(
        json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "nope"}}]}}),
    )
    .await;
    let u = s.events.wait(TIMEOUT, is_reconcile("nope")).await.unwrap();
    let st = &u["update"]["status"];
    assert_eq!(st["state"], "TASK_LOST", "{st}");
    assert!(st.get("uuid").is_none(), "{st}");
}

#[tokio::test]
async fn launch_group_on_the_default_executor_finishes_both_tasks() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let t1 = command_task("g-1", &agent.id, "echo one", 0.1, 32.0);
    let t2 = command_task("g-2", &agent.id, "echo two", 0.1, 32.0);
    s.accept(
        &offer,
        json!([{
            "type": "LAUNCH_GROUP",
            "launch_group": {
                "executor": {
                    "type": "DEFAULT",
                    "executor_id": {"value": "group-exec"},
                    "framework_id": {"value": s.framework_id},
                    "resources": scalars(0.1, 32.0),
                },
                "task_group": {"tasks": [t1, t2]},
            }
        }]),
    )
    .await;
    let a = s.follow("g-1", "TASK_FINISHED").await;
    let b = s.follow("g-2", "TASK_FINISHED").await;
    for u in a.iter().chain(&b) {
        assert_eq!(u["executor_id"]["value"], "group-exec", "{u}");
    }
    let sandbox = agent.sandbox(&s.framework_id, "group-exec");
    assert!(
        sandbox.is_dir(),
        "the executor sandbox exists: {}",
        sandbox.display()
    );
    assert!(
        wait_for(TIMEOUT, || async {
            let st = c.state_json().await;
            let done = task_ids(&st, "completed_tasks");
            done.contains(&("g-1".into(), "TASK_FINISHED".into()))
                && done.contains(&("g-2".into(), "TASK_FINISHED".into()))
        })
        .await
    );
}

#[tokio::test]
async fn decline_with_refuse_seconds_then_revive_offers_again() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offers = s.offers().await;
    s.decline(&offers, 3600.0).await;
    assert!(
        wait_for(TIMEOUT, || async {
            c.metric("master/outstanding_offers").await == Some(0.0)
        })
        .await
    );
    // Ten allocation cycles (100 ms) without a new offer.
    let during = s.events.drain(Duration::from_secs(1)).await;
    assert!(
        !during.iter().any(|e| e["type"] == "OFFERS"),
        "offers despite refuse_seconds=3600: {during:?}"
    );
    assert!(c.metric("allocator/mesos/offer_filters/active").await >= Some(1.0));

    // Success is `202 Accepted` with no body and no Content-Type.
    let revive = json!({"type": "REVIVE", "framework_id": s.fid()});
    let (status, headers, body) = c
        .post_raw(
            "/api/v1/scheduler",
            &[
                ("Content-Type", "application/json"),
                ("Mesos-Stream-Id", &s.stream_id),
            ],
            serde_json::to_vec(&revive).unwrap(),
        )
        .await;
    assert_eq!(status, 202);
    assert!(
        body.is_empty(),
        "202 has no body: {:?}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        headers.get("content-type").is_none(),
        "202 has no Content-Type: {headers:?}"
    );
    let again = s.offers().await;
    assert_eq!(again.len(), 1);
    assert_eq!(scalar_of(&again[0]["resources"], "cpus"), AGENT_CPUS);
    assert_ne!(again[0]["id"], offers[0]["id"], "a new offer id");
}

#[tokio::test]
async fn resubscribe_with_the_framework_id_keeps_the_framework_and_its_task() {
    let c = cluster().await;
    let info = default_framework_info("failover");
    let mut s = c.subscribe_with(Encoding::Json, info.clone()).await;
    let fid = s.framework_id.clone();
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task("keep", &agent.id, "sleep 100", 0.1, 32.0)],
    )
    .await;
    s.follow("keep", "TASK_RUNNING").await;

    // The connection breaks; the framework waits for its failover timeout.
    drop(s);
    assert!(
        wait_for(TIMEOUT, || async {
            let st = c.state_json().await;
            st["get_frameworks"]["frameworks"][0]["connected"] == false
        })
        .await,
        "the master did not notice the closed stream"
    );

    let mut with_id = info.clone();
    with_id["id"] = json!({"value": fid});
    let mut s2 = c.subscribe_with(Encoding::Json, with_id.clone()).await;
    assert_eq!(s2.framework_id, fid, "the same framework");
    let st = c.state_json().await;
    assert_eq!(framework_ids(&st, "frameworks"), vec![fid.clone()]);
    assert!(framework_ids(&st, "completed_frameworks").is_empty());
    assert_eq!(st["get_frameworks"]["frameworks"][0]["active"], true);
    assert_eq!(
        task_ids(&st, "tasks"),
        vec![("keep".to_string(), "TASK_RUNNING".to_string())]
    );
    assert!(
        !processes_in(&agent.sandbox(&fid, "keep")).is_empty(),
        "the task still runs"
    );

    s2.call_ok(
        json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": "keep"}}]}}),
    )
    .await;
    let u = s2
        .events
        .wait(TIMEOUT, |e| {
            e["type"] == "UPDATE" && e["update"]["status"]["reason"] == "REASON_RECONCILIATION"
        })
        .await
        .unwrap();
    assert_eq!(u["update"]["status"]["state"], "TASK_RUNNING");

    // A third connection takes over while the second is open: the second
    // stream is closed and its stream id no longer accepted.
    let s3 = c.subscribe_with(Encoding::Json, with_id).await;
    assert_eq!(s3.framework_id, fid);
    assert_ne!(s3.stream_id, s2.stream_id);
    let ended = s2.events.ended_within(TIMEOUT).await;
    assert!(ended.is_some(), "the replaced stream must end");
    let (status, body) = s2.call(json!({"type": "REVIVE"})).await;
    assert_eq!(status, 400, "old stream id: {body}");
    s3.call_ok(json!({"type": "REVIVE"})).await;
    assert_eq!(task_ids(&c.state_json().await, "tasks").len(), 1);
}

#[tokio::test]
async fn teardown_removes_the_framework_and_kills_its_tasks() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let fid = s.framework_id.clone();
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task("doomed", &agent.id, "sleep 100", 0.5, 64.0)],
    )
    .await;
    s.follow("doomed", "TASK_RUNNING").await;
    let sandbox = agent.sandbox(&fid, "doomed");
    assert!(!processes_in(&sandbox).is_empty());

    s.call_ok(json!({"type": "TEARDOWN"})).await;
    assert!(
        s.events.ended_within(TIMEOUT).await.is_some(),
        "the stream ends on TEARDOWN"
    );
    let st = c.state_json().await;
    assert!(
        framework_ids(&st, "frameworks").is_empty(),
        "{}",
        st["get_frameworks"]
    );
    assert_eq!(
        framework_ids(&st, "completed_frameworks"),
        vec![fid.clone()]
    );
    assert!(task_ids(&st, "tasks").is_empty(), "{}", st["get_tasks"]);
    assert!(
        task_ids(&st, "completed_tasks").contains(&("doomed".into(), "TASK_KILLED".into())),
        "{}",
        st["get_tasks"]
    );
    assert!(
        wait_for(TIMEOUT, || async { processes_in(&sandbox).is_empty() }).await,
        "the task's processes survive TEARDOWN: {:?}",
        processes_in(&sandbox)
    );
    // Calls of the removed framework are refused; its resources are free.
    let (status, _) = s.call(json!({"type": "REVIVE"})).await;
    assert_eq!(status, 400);
    let mut other = c.subscribe(Encoding::Json).await;
    let o = other.offers().await;
    assert_eq!(
        scalar_of(&o[0]["resources"], "cpus"),
        AGENT_CPUS,
        "all cpus free again"
    );
    // The removed id cannot come back.
    let mut info = default_framework_info("zombie");
    info["id"] = json!({"value": fid});
    let call = json!({"type": "SUBSCRIBE", "framework_id": {"value": fid}, "subscribe": {"framework_info": info}});
    let (status, _, mut ev) = c.subscribe_raw(Encoding::Json, &call, &[]).await;
    if status == 200 {
        let first = ev.next(TIMEOUT).await.unwrap();
        assert_eq!(first["type"], "ERROR", "{first}");
    } else {
        assert!(status.is_client_error(), "{status}");
    }
}

#[tokio::test]
async fn custom_executor_is_started_with_the_mesos_environment() {
    // The custom executor is Corral's own executor binary: it subscribes to
    // the agent's executor API (which proves the agent started it with the
    // Mesos environment) and, since the task carries no command, answers
    // LAUNCH with TASK_ERROR from the executor itself.
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    let bin = corral_tests::corral_bin().display().to_string();
    let task = json!({
        "name": "custom",
        "task_id": {"value": "custom-task"},
        "agent_id": {"value": agent.id},
        "resources": scalars(0.1, 32.0),
        "executor": {
            "type": "CUSTOM",
            "executor_id": {"value": "custom-exec"},
            "command": {"shell": true, "value": format!("exec '{bin}' executor")},
            "resources": scalars(0.1, 32.0),
        },
    });
    s.launch(&offer, vec![task]).await;
    let u = s.update("custom-task", "TASK_ERROR").await;
    assert_eq!(
        u["source"], "SOURCE_EXECUTOR",
        "the executor itself answered: {u}"
    );
    assert_eq!(u["executor_id"]["value"], "custom-exec", "{u}");
    assert!(
        u["message"].as_str().unwrap_or("").contains("no command"),
        "{u}"
    );
    s.acknowledge(&u).await;
    let stderr =
        std::fs::read_to_string(agent.sandbox(&s.framework_id, "custom-exec").join("stderr"))
            .unwrap_or_default();
    assert!(!stderr.contains("MissingEnv"), "executor stderr: {stderr}");
}

#[tokio::test]
async fn legacy_state_json_has_the_mesos_shape() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task("legacy-1", &agent.id, "echo hi", 0.1, 32.0)],
    )
    .await;
    s.follow("legacy-1", "TASK_FINISHED").await;

    let find_task = |st: &Value| -> Option<Value> {
        st["frameworks"][0]["completed_tasks"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == "legacy-1")
            .cloned()
    };
    assert!(
        wait_for(TIMEOUT, || async {
            find_task(&c.get_json("/master/state").await).is_some()
        })
        .await,
        "finished task not in /master/state completed_tasks"
    );
    for path in [
        "/master/state",
        "/state.json",
        "/master/state.json",
        "/state",
    ] {
        let st = c.get_json(path).await;
        let version = st["version"].as_str().unwrap_or("");
        assert!(
            version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{path} version {version}"
        );
        assert!(
            st["leader"]
                .as_str()
                .unwrap_or("")
                .starts_with("master@127.0.0.1:"),
            "{path}"
        );
        assert_eq!(st["activated_slaves"].as_u64(), Some(1), "{path}");

        let slave = &st["slaves"][0];
        assert_eq!(slave["id"], agent.id.as_str());
        assert_eq!(
            slave["pid"],
            format!("slave(1)@{}", agent.endpoint),
            "{slave}"
        );
        assert_eq!(slave["hostname"], "127.0.0.1");
        assert_eq!(
            slave["resources"]["cpus"].as_f64(),
            Some(AGENT_CPUS),
            "{slave}"
        );
        assert_eq!(
            slave["resources"]["mem"].as_f64(),
            Some(AGENT_MEM),
            "{slave}"
        );
        assert_eq!(slave["resources"]["ports"], "[31000-31099]", "{slave}");
        assert_eq!(slave["active"], true);

        let fw = &st["frameworks"][0];
        assert_eq!(fw["id"], s.framework_id.as_str(), "{fw}");
        assert_eq!(fw["name"], "e2e");
        assert_eq!(fw["active"], true);
        assert_eq!(fw["role"], "*");
        let t = find_task(&st).unwrap();
        assert_eq!(t["state"], "TASK_FINISHED", "{t}");
        assert_eq!(t["slave_id"], agent.id.as_str());
        assert_eq!(t["framework_id"], s.framework_id.as_str());
        assert_eq!(t["resources"]["cpus"].as_f64(), Some(0.1), "{t}");
        let states: Vec<&str> = t["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["state"].as_str().unwrap())
            .collect();
        assert!(
            states.contains(&"TASK_RUNNING") && states.contains(&"TASK_FINISHED"),
            "{path}: statuses {states:?}; completed_tasks: {}",
            st["frameworks"][0]["completed_tasks"]
        );
        let copies = st["frameworks"][0]["completed_tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["id"] == "legacy-1")
            .count();
        assert_eq!(
            copies, 1,
            "{path}: {}",
            st["frameworks"][0]["completed_tasks"]
        );
    }
    let slaves = c.get_json("/slaves").await;
    assert_eq!(
        slaves["slaves"][0]["pid"],
        format!("slave(1)@{}", agent.endpoint)
    );
    let fws = c.get_json("/frameworks").await;
    assert_eq!(fws["frameworks"][0]["id"], s.framework_id.as_str());
    let tasks = c.get_json("/tasks?task_id=legacy-1").await;
    assert_eq!(tasks["tasks"][0]["id"], "legacy-1", "{tasks}");
    assert_eq!(tasks["tasks"][0]["state"], "TASK_FINISHED");
}

#[tokio::test]
async fn version_metrics_and_prometheus_endpoints() {
    let c = cluster().await;
    let v = c.get_json("/version").await;
    let version = v["version"].as_str().expect("version string");
    assert!(
        !version.is_empty() && version.split('.').all(|p| p.parse::<u32>().is_ok()),
        "/version must be purely numeric dotted (pymesos int()s each part): {version}"
    );
    let (status, body) = c.operator(json!({"type": "GET_VERSION"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["get_version"]["version_info"]["version"], version);

    let m = c.get_json("/metrics/snapshot").await;
    let map = m.as_object().expect("flat object");
    assert!(map.len() > 10);
    for (k, v) in map {
        assert!(v.is_number(), "metric {k} is not a number: {v}");
    }
    assert_eq!(m["master/slaves_active"].as_f64(), Some(1.0));
    assert_eq!(m["master/cpus_total"].as_f64(), Some(AGENT_CPUS));
    assert_eq!(m["master/mem_total"].as_f64(), Some(AGENT_MEM));
    assert_eq!(m["master/elected"].as_f64(), Some(1.0));

    let (status, headers, text) = c.get("/metrics").await;
    assert_eq!(status, 200);
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("text/plain"), "{ct}");
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad Prometheus metric name {name:?}"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        n += 1;
    }
    assert!(n > 10, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("slaves_active") && l.ends_with(" 1")),
        "{text}"
    );

    let (status, _, _) = c.get("/health").await;
    assert_eq!(status, 200);
    // pymesos' operator driver posts to /api/v1/operator without Accept.
    let (status, headers, body) = c
        .post_raw(
            "/api/v1/operator",
            &[("Content-Type", "application/json")],
            br#"{"type":"GET_HEALTH"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["get_health"]["healthy"], true, "{health}");
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow
        .get(c.url("/master/redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(loc, format!("//{}", c.master));
}

#[tokio::test]
async fn operator_subscribe_streams_state_and_changes() {
    let c = cluster().await;
    let mut ops = c.operator_subscribe(Encoding::Json).await;
    let first = ops.next(TIMEOUT).await.unwrap();
    assert_eq!(first["type"], "SUBSCRIBED", "{first}");
    let agents = &first["subscribed"]["get_state"]["get_agents"]["agents"];
    assert_eq!(
        agents[0]["agent_info"]["id"]["value"],
        c.agents[0].id.as_str(),
        "{first}"
    );

    let mut s = c.subscribe(Encoding::Json).await;
    let added = ops.wait_type("FRAMEWORK_ADDED", TIMEOUT).await.unwrap();
    assert_eq!(
        added["framework_added"]["framework"]["framework_info"]["id"]["value"],
        s.framework_id.as_str()
    );

    let offer = s.offers().await.remove(0);
    s.launch(
        &offer,
        vec![command_task(
            "watched",
            &c.agents[0].id,
            "echo hi",
            0.1,
            32.0,
        )],
    )
    .await;
    let ta = ops.wait_type("TASK_ADDED", TIMEOUT).await.unwrap();
    assert_eq!(
        ta["task_added"]["task"]["task_id"]["value"], "watched",
        "{ta}"
    );
    assert_eq!(ta["task_added"]["task"]["state"], "TASK_STAGING", "{ta}");
    s.follow("watched", "TASK_FINISHED").await;
    let running = ops
        .wait(TIMEOUT, |e| {
            e["type"] == "TASK_UPDATED" && e["task_updated"]["status"]["state"] == "TASK_RUNNING"
        })
        .await
        .unwrap();
    assert_eq!(
        running["task_updated"]["status"]["task_id"]["value"],
        "watched"
    );
    assert_eq!(
        running["task_updated"]["framework_id"]["value"],
        s.framework_id.as_str()
    );
    // `task_updated.state` is the task's latest state (Mesos), so only
    // the status' own state is checked for RUNNING above.
    let finished = ops
        .wait(TIMEOUT, |e| {
            e["type"] == "TASK_UPDATED" && e["task_updated"]["status"]["state"] == "TASK_FINISHED"
        })
        .await
        .unwrap();
    assert_eq!(
        finished["task_updated"]["state"], "TASK_FINISHED",
        "{finished}"
    );

    // The same stream in protobuf.
    let mut pb = c.operator_subscribe(Encoding::Protobuf).await;
    let first = pb.next(TIMEOUT).await.unwrap();
    assert_eq!(first["type"], "SUBSCRIBED");
    assert_eq!(
        first["subscribed"]["get_state"]["get_frameworks"]["frameworks"][0]["framework_info"]["id"]
            ["value"],
        s.framework_id.as_str()
    );
}

#[tokio::test]
async fn protobuf_subscribe_accept_and_acknowledge() {
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Protobuf).await;
    assert_eq!(
        s.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    assert!(s.subscribed["subscribed"]["heartbeat_interval_seconds"]
        .as_f64()
        .is_some());
    let offer = s.offers().await.remove(0);
    assert_eq!(offer["allocation_info"]["role"], "*");
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task("pb-1", &agent.id, "echo hi", 0.1, 32.0)],
    )
    .await;
    let seen = s.follow("pb-1", "TASK_FINISHED").await;
    assert!(seen
        .iter()
        .all(|u| unb64(u["uuid"].as_str().unwrap()).len() == 16));
    assert!(
        wait_for(TIMEOUT, || async {
            task_ids(&c.state_json().await, "completed_tasks")
                .contains(&("pb-1".into(), "TASK_FINISHED".into()))
        })
        .await
    );
    // The operator API in protobuf too (GET_STATE of the harness).
    let r = c.get_state().await;
    assert_eq!(
        r.r#type,
        Some(corral_api::v1::master::response::Type::GetState as i32)
    );
}

#[tokio::test]
async fn json_stream_records_are_exactly_framed_single_line_ascii() {
    // pymesos slices the decoded text by the announced byte count and
    // reads records that may span chunks: the length must be exact and the
    // JSON compact, single-line and ASCII-only.
    use futures::StreamExt;
    let c = cluster().await;
    let mut info = default_framework_info("caf\u{e9} \u{2615}");
    info["failover_timeout"] = json!(0.0);
    let body =
        serde_json::to_vec(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}))
            .unwrap();
    let resp = c
        .http
        .post(c.url("/api/v1/scheduler"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stream_id = resp.headers()["mesos-stream-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut bytes = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut records: Vec<Value> = Vec::new();
    let mut launched = false;
    let mut framework_id = String::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    // Read raw bytes until the task's RUNNING update, parsing by hand.
    while !records
        .iter()
        .any(|r| r["type"] == "UPDATE" && r["update"]["status"]["state"] == "TASK_RUNNING")
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let chunk = tokio::time::timeout(left, bytes.next())
            .await
            .expect("events in time")
            .expect("stream open")
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let prefix = std::str::from_utf8(&buf[..nl]).unwrap();
            assert!(
                !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()),
                "bad length prefix {prefix:?}"
            );
            let len: usize = prefix.parse().unwrap();
            assert!(len > 0);
            if buf.len() < nl + 1 + len {
                break;
            }
            let record = buf[nl + 1..nl + 1 + len].to_vec();
            buf.drain(..nl + 1 + len);
            assert!(
                record.is_ascii(),
                "non-ASCII record: {}",
                String::from_utf8_lossy(&record)
            );
            assert!(!record.contains(&b'\n'), "record spans lines");
            let v: Value = serde_json::from_slice(&record).unwrap_or_else(|e| {
                panic!(
                    "record of announced length is not JSON ({e}): {}",
                    String::from_utf8_lossy(&record)
                )
            });
            let ty = v["type"].as_str().unwrap().to_string();
            if ty != "HEARTBEAT" {
                assert!(
                    v.get(ty.to_lowercase()).is_some(),
                    "payload under the lower-case type name: {v}"
                );
            }
            if ty == "SUBSCRIBED" {
                framework_id = v["subscribed"]["framework_id"]["value"]
                    .as_str()
                    .unwrap()
                    .to_string();
            }
            if ty == "UPDATE" && v["update"]["status"].get("uuid").is_some() {
                let st = &v["update"]["status"];
                let ack = json!({"type": "ACKNOWLEDGE", "framework_id": {"value": framework_id},
                    "acknowledge": {"agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": st["uuid"]}});
                let (status, _, _) = c
                    .post_raw(
                        "/api/v1/scheduler",
                        &[
                            ("Content-Type", "application/json"),
                            ("Mesos-Stream-Id", &stream_id),
                        ],
                        serde_json::to_vec(&ack).unwrap(),
                    )
                    .await;
                assert_eq!(status, 202);
            }
            if ty == "OFFERS" && !launched {
                launched = true;
                let offer = &v["offers"]["offers"][0];
                let mut task = command_task(
                    "t\u{e2}che-\u{2615}",
                    &c.agents[0].id,
                    "sleep 100",
                    0.1,
                    32.0,
                );
                task["name"] = json!("na\u{ef}ve");
                let accept = json!({"type": "ACCEPT", "framework_id": {"value": framework_id},
                    "accept": {"offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]}});
                let (status, _, body) = c
                    .post_raw(
                        "/api/v1/scheduler",
                        &[
                            ("Content-Type", "application/json"),
                            ("Mesos-Stream-Id", &stream_id),
                        ],
                        serde_json::to_vec(&accept).unwrap(),
                    )
                    .await;
                assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
            }
            records.push(v);
        }
    }
    let running = records
        .iter()
        .find(|r| r["type"] == "UPDATE" && r["update"]["status"]["state"] == "TASK_RUNNING")
        .unwrap();
    assert_eq!(
        running["update"]["status"]["task_id"]["value"],
        "t\u{e2}che-\u{2615}"
    );
    // The operator API's JSON is ASCII too, with the name intact.
    let (_, _, body) = c
        .post_raw(
            "/api/v1",
            &[("Content-Type", "application/json")],
            br#"{"type":"GET_FRAMEWORKS"}"#.to_vec(),
        )
        .await;
    assert!(body.is_ascii(), "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["get_frameworks"]["frameworks"][0]["framework_info"]["name"],
        "caf\u{e9} \u{2615}"
    );
}

#[tokio::test]
async fn acknowledging_a_non_terminal_update_does_not_complete_the_task() {
    // Mesos completes a task when the acknowledged update is terminal
    // (`status_update_state`), not when its latest state is. Order forced
    // here: the task finishes before the framework acknowledges STARTING,
    // so RUNNING reaches the master with latest_state FINISHED.
    let c = cluster().await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task("early", &agent.id, "echo hi", 0.1, 32.0)],
    )
    .await;
    let starting = s.update("early", "TASK_STARTING").await;
    assert!(
        wait_for(TIMEOUT, || async {
            let r = c.http.get(agent.url("/state")).send().await;
            match r {
                Ok(r) => r.text().await.unwrap_or_default().contains("TASK_FINISHED"),
                Err(_) => false,
            }
        })
        .await,
        "the agent never saw the task finish"
    );
    s.acknowledge(&starting).await;
    let running = s.update("early", "TASK_RUNNING").await;
    s.acknowledge(&running).await;
    let finished = s.update("early", "TASK_FINISHED").await;
    s.acknowledge(&finished).await;

    assert!(
        wait_for(TIMEOUT, || async {
            let st = c.state_json().await;
            task_ids(&st, "tasks").is_empty() && !task_ids(&st, "completed_tasks").is_empty()
        })
        .await
    );
    let st = c.state_json().await;
    let records: Vec<&Value> = st["get_tasks"]["completed_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["task_id"]["value"] == "early")
        .collect();
    assert_eq!(
        records.len(),
        1,
        "one record of the task, not a phantom copy: {records:?}"
    );
    let t = records[0];
    assert_eq!(t["name"], "early", "{t}");
    assert_eq!(t["state"], "TASK_FINISHED", "{t}");
    assert_eq!(scalar_of(&t["resources"], "cpus"), 0.1, "{t}");
    let states: Vec<&str> = t["statuses"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["state"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        states,
        ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"],
        "{t}"
    );
}
