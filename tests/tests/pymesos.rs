//! Compatibility with an unmodified external Mesos client: pymesos 0.3.15
//! (installed by `scripts/test-deps.sh`) as scheduler, executor and operator
//! client against real `corral master` and `corral agent` processes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use corral_tests::{Cluster, ClusterOptions};

/// The venv's python with pymesos (set by scripts/test.sh).
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CORRAL_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
    assert!(
        p.exists(),
        "pymesos venv missing at {}: run scripts/test-deps.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

fn peer(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pymesos")
        .join(script)
}

/// Runs a pymesos peer script; returns its stdout, panicking with both
/// outputs and the cluster logs when it fails.
async fn run_peer(cluster: &Cluster, script: &str, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(peer(script))
        .args(["--master", &cluster.master, "--timeout", "90"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("start python");
    let out = tokio::time::timeout(Duration::from_secs(150), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 150s\n{}", cluster.logs()))
        .expect("wait for python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- cluster\n{}",
        out.status,
        cluster.logs()
    );
    stdout
}

fn last_json(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .expect("the peer prints a JSON summary")
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
        python().display(),
        peer("executor.py").display()
    );
    let out = run_peer(
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
    let summary = last_json(&out);
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
    let out = run_peer(&cluster, "command_task.py", &[]).await;
    let summary = last_json(&out);
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
    let out = run_peer(&cluster, "reconcile.py", &[]).await;
    let summary = last_json(&out);
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
    let out = run_peer(&cluster, "operator_state.py", &["--expect-agents", "2"]).await;
    let state = last_json(&out);
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
