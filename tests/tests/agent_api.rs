//! The agent's own HTTP surface against a real agent running a real task:
//! operator API calls, legacy `/state` and `/metrics/snapshot`, and the
//! sandbox files served as Mesos serves them.

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{command_task, wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_operator_api_state_and_files_with_a_running_task() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let mut s = c.subscribe(Encoding::Json).await;
    let offer = s.offers().await.remove(0);
    let agent = c.agents[0].clone();
    s.launch(
        &offer,
        vec![command_task(
            "long-1",
            &agent.id,
            "echo started-long-1; sleep 100",
            0.2,
            64.0,
        )],
    )
    .await;
    s.follow("long-1", "TASK_RUNNING").await;
    let fid = s.fid()["value"].as_str().unwrap_or_default().to_string();

    let (status, health) = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_HEALTH"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(health["get_health"]["healthy"], true);

    let (_, version) = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_VERSION"}))
        .await;
    let v = version["get_version"]["version_info"]["version"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !v.is_empty() && v.split('.').all(|p| p.parse::<u32>().is_ok()),
        "numeric dotted version, got {v:?}"
    );

    let (_, tasks) = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_TASKS"}))
        .await;
    let running: Vec<&Value> = tasks["get_tasks"]["launched_tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["task_id"]["value"] == "long-1")
        .collect();
    assert_eq!(running.len(), 1, "{tasks}");
    assert_eq!(running[0]["state"], "TASK_RUNNING");

    let (_, execs) = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_EXECUTORS"}))
        .await;
    let ids: Vec<&str> = execs["get_executors"]["executors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["executor_info"]["executor_id"]["value"].as_str())
        .collect();
    assert!(
        ids.contains(&"long-1"),
        "command executor id = task id: {execs}"
    );

    let (_, fws) = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_FRAMEWORKS"}))
        .await;
    let fw_ids: Vec<&str> = fws["get_frameworks"]["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["framework_info"]["id"]["value"].as_str())
        .collect();
    assert_eq!(fw_ids, vec![fid.as_str()]);

    let (_, containers) = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_CONTAINERS"}))
        .await;
    let cs = containers["get_containers"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(cs.len(), 1, "{containers}");
    assert_eq!(cs[0]["executor_id"]["value"], "long-1");

    let (_, state) = c
        .agent_operator(&agent.endpoint, json!({"type": "GET_STATE"}))
        .await;
    assert_eq!(state["type"], "GET_STATE");
    assert!(state["get_state"]["get_tasks"].is_object());

    // Legacy endpoints.
    let legacy: Value = c
        .http
        .get(agent.url("/state"))
        .send()
        .await
        .expect("/state")
        .json()
        .await
        .expect("json");
    assert_eq!(legacy["id"], agent.id.as_str());
    assert_eq!(
        legacy["pid"],
        format!("slave(1)@{}", agent.endpoint).as_str()
    );
    let metrics: Value = c
        .http
        .get(agent.url("/metrics/snapshot"))
        .send()
        .await
        .expect("/metrics/snapshot")
        .json()
        .await
        .expect("json");
    assert_eq!(metrics["slave/tasks_running"], 1.0);
    assert_eq!(metrics["slave/registered"], 1.0);

    // Sandbox files through the virtual path Mesos tools use.
    let dir = format!("/frameworks/{fid}/executors/long-1/runs/latest");
    let listing: Value = c
        .http
        .get(agent.url(&format!("/files/browse?path={dir}")))
        .send()
        .await
        .expect("browse")
        .json()
        .await
        .expect("json");
    let names: Vec<String> = listing
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["path"].as_str())
        .filter_map(|p| p.rsplit('/').next().map(str::to_string))
        .collect();
    assert!(names.contains(&"stdout".to_string()), "{listing}");
    assert!(names.contains(&"stderr".to_string()), "{listing}");
    let stdout_path = format!("{dir}/stdout");
    assert!(
        wait_for(TIMEOUT, || async {
            let r = c
                .http
                .get(agent.url(&format!("/files/download?path={stdout_path}")))
                .send()
                .await;
            match r {
                Ok(r) => r
                    .text()
                    .await
                    .unwrap_or_default()
                    .contains("started-long-1"),
                Err(_) => false,
            }
        })
        .await,
        "stdout of the task not served by /files/download"
    );
    let size: Value = c
        .http
        .get(agent.url(&format!("/files/read?path={stdout_path}&offset=-1")))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert!(size["offset"].as_u64().unwrap_or(0) > 0, "{size}");

    // Kill it and the agent reports it gone from its running tasks.
    s.call_ok(json!({"type": "KILL", "kill": {"task_id": {"value": "long-1"}}}))
        .await;
    s.follow("long-1", "TASK_KILLED").await;
    assert!(
        wait_for(TIMEOUT, || async {
            let m: Value = match c.http.get(agent.url("/metrics/snapshot")).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            m["slave/tasks_running"] == 0.0
        })
        .await,
        "task still running on the agent after TASK_KILLED"
    );
}
