//! Compatibility with an unmodified external Mesos client: pymesos 0.3.15
//! (installed by `scripts/test-deps.sh`) as scheduler, executor and operator
//! client against real `corral master` and `corral agent` processes.

use std::path::PathBuf;
use std::time::Duration;

use corral_tests::{Cluster, ClusterOptions};

fn peer(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pymesos")
        .join(script)
}

/// Runs a pymesos peer script against the cluster's master to its end and
/// returns its JSON summary (its output is in the panic message when it
/// fails; the harness adds the cluster's logs).
async fn run_peer(cluster: &Cluster, script: &str, args: &[&str]) -> serde_json::Value {
    corral_tests::PymesosPeer::start(cluster.dir(), script, &cluster.master, 90, args)
        .finish(Duration::from_secs(150))
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_framework_and_executor_run_twenty_tasks_on_two_agents() {
    let cluster = Cluster::start(ClusterOptions {
        agents: 2,
        ..Default::default()
    })
    .await;
    let executor_cmd = format!(
        "{} {} --timeout 90",
        corral_tests::pymesos_python().display(),
        peer("executor.py").display()
    );
    let summary = run_peer(
        &cluster,
        "framework.py",
        &[
            "--tasks",
            "20",
            "--min-agents",
            "2",
            "--executor-cmd",
            &executor_cmd,
        ],
    )
    .await;
    assert_eq!(summary["finished"], 20);
    assert_eq!(summary["agents"].as_array().map(Vec::len), Some(2));

    // Every update that carried a uuid (RUNNING and FINISHED of each task)
    // was acknowledged by pymesos through the master.
    let acks = cluster
        .metric("master/messages_status_update_acknowledgement")
        .await
        .unwrap_or(0.0);
    assert!(
        acks >= 40.0,
        "only {acks} acknowledgements reached the master"
    );

    // The master's state shows the finished tasks in Mesos' shape.
    let state = cluster.get_json("/master/state").await;
    let done: Vec<&serde_json::Value> = state["completed_frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["completed_tasks"].as_array().into_iter().flatten())
        .filter(|t| t["state"] == "TASK_FINISHED")
        .collect();
    assert_eq!(done.len(), 20, "state: {state}");
    assert!(done.iter().all(|t| t["executor_id"] == "pymesos-executor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_runs_a_pure_command_task() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let summary = run_peer(&cluster, "command_task.py", &[]).await;
    assert_eq!(
        summary["states"],
        serde_json::json!(["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"])
    );
    // The command's output landed in the sandbox's stdout.
    let agent = &cluster.agents[0];
    let fid = cluster.get_json("/master/state").await["completed_frameworks"][0]["id"]
        .as_str()
        .map(str::to_string)
        .expect("completed framework");
    let stdout = agent.sandbox(&fid, "pymesos-command-task").join("stdout");
    let text = std::fs::read_to_string(&stdout).unwrap_or_default();
    assert!(
        text.contains("hello-corral"),
        "{}: {text:?}",
        stdout.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_reconciles_and_kills() {
    let cluster = Cluster::start(ClusterOptions::default()).await;
    let summary = run_peer(&cluster, "reconcile.py", &[]).await;
    let states = summary["states"].as_array().cloned().unwrap_or_default();
    assert_eq!(states.last(), Some(&serde_json::json!("TASK_KILLED")));
    // RUNNING from the executor, then at least the implicit and explicit
    // reconciliation answers.
    let running = states.iter().filter(|s| *s == "TASK_RUNNING").count();
    assert!(running >= 3, "states: {states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_operator_client_reads_get_state() {
    let cluster = Cluster::start(ClusterOptions {
        agents: 2,
        ..Default::default()
    })
    .await;
    let state = run_peer(&cluster, "operator_state.py", &["--expect-agents", "2"]).await;
    assert_eq!(state["type"], "GET_STATE");
    let ids: Vec<&str> = state["get_state"]["get_agents"]["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["agent_info"]["id"]["value"].as_str())
        .collect();
    for agent in &cluster.agents {
        assert!(ids.contains(&agent.id.as_str()), "{ids:?}");
    }
}

/// Issue 11.2: the agent is killed with SIGKILL and restarted; it recovers
/// the live executor, the task finishes, and the executor (no longer the
/// agent's child, so its exit status is unknown) exits. The master's
/// FAILURE event carries `status` -1 as Mesos', and the unmodified pymesos
/// driver, which reads `failure['status']` unconditionally, lives on: it
/// still gets the answer to a reconciliation afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymesos_survives_the_failure_of_an_executor_recovered_after_an_agent_restart() {
    let mut cluster = Cluster::start(ClusterOptions {
        agent_flags: vec!["--executor_reregistration_timeout=10secs".into()],
        ..Default::default()
    })
    .await;
    let mut peer = corral_tests::PymesosPeer::start(
        cluster.dir(),
        "executor_lost.py",
        &cluster.master,
        120,
        &[],
    );
    let running = peer.event("running", Duration::from_secs(60)).await;
    let fid = running["framework_id"]
        .as_str()
        .expect("framework id")
        .to_string();
    cluster.kill_agent(0);
    cluster.restart_agent(0, &[]).await;
    // The recovered executor reconnected: the agent lists it again.
    let endpoint = cluster.agents[0].endpoint.clone();
    let reconnected = corral_tests::wait_for(Duration::from_secs(60), || async {
        let (_, v) = cluster
            .agent_operator(&endpoint, serde_json::json!({"type": "GET_EXECUTORS"}))
            .await;
        v["get_executors"]["executors"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    })
    .await;
    assert!(reconnected, "executor not recovered\n{}", cluster.logs());
    let sandbox = cluster.agents[0].sandbox(&fid, "pymesos-recovered-task");
    std::fs::write(sandbox.join("done"), b"").expect("create done in the sandbox");
    let (summary, output) = peer.finish(Duration::from_secs(120)).await;
    let lost = summary["executor_lost"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(lost.len(), 1, "{summary}");
    assert_eq!(
        lost[0]["executor_id"], "pymesos-recovered-task",
        "{summary}"
    );
    assert_eq!(lost[0]["status"], -1, "unknown exit status: {summary}");
    assert_eq!(summary["reconciled"], "TASK_FINISHED", "{summary}");
    let states = summary["states"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        states.iter().filter(|s| *s == "TASK_FINISHED").count(),
        1,
        "{output}"
    );
}
