//! Agent health with real processes: an agent frozen with SIGSTOP past
//! `--agent_ping_timeout` x `--max_agent_ping_timeouts` is unreachable, a
//! PARTITION_AWARE framework gets TASK_UNREACHABLE and another TASK_LOST;
//! thawed, the agent re-registers, the partition-aware task continues and
//! the other is killed. MARK_AGENT_GONE gives TASK_GONE_BY_OPERATOR.

use std::time::Duration;

use corral_api::codec::Encoding;
use corral_tests::{command_task, default_framework_info, wait_for, Cluster, ClusterOptions};
use serde_json::{json, Value};

fn options() -> ClusterOptions {
    ClusterOptions {
        master_flags: vec![
            "--agent_ping_timeout=300ms".into(),
            "--max_agent_ping_timeouts=3".into(),
        ],
        ..Default::default()
    }
}

fn sleeper(id: &str, agent_id: &str) -> Value {
    command_task(id, agent_id, "sleep 300", 0.1, 32.0)
}

/// Acknowledges the task's updates until it runs.
async fn running(s: &mut corral_tests::Scheduler, task_id: &str) {
    loop {
        let status = s.next_update(task_id).await;
        s.acknowledge(&status).await;
        match status["state"].as_str() {
            Some("TASK_RUNNING") => return,
            Some("TASK_STARTING" | "TASK_STAGING") => {}
            other => panic!("task {task_id} is {other:?}: {status}"),
        }
    }
}

async fn reconcile_state(s: &mut corral_tests::Scheduler, task_id: &str) -> String {
    s.call_ok(
        json!({"type": "RECONCILE", "reconcile": {"tasks": [{"task_id": {"value": task_id}}]}}),
    )
    .await;
    s.next_update(task_id).await["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_agent_gives_unreachable_or_lost_and_on_return_kills_only_the_unaware() {
    let c = Cluster::start(options()).await;
    let mut info = default_framework_info("aware");
    info["capabilities"] = json!([{"type": "PARTITION_AWARE"}]);
    let mut aware = c.subscribe_with(Encoding::Json, info).await;
    let mut plain = c.subscribe(Encoding::Json).await;

    let offers = aware.offers().await;
    let agent_id = offers[0]["agent_id"]["value"]
        .as_str()
        .expect("agent")
        .to_owned();
    aware
        .launch(&offers[0], vec![sleeper("pa-task", &agent_id)])
        .await;
    running(&mut aware, "pa-task").await;
    let offers = plain.offers().await;
    plain
        .launch(&offers[0], vec![sleeper("plain-task", &agent_id)])
        .await;
    running(&mut plain, "plain-task").await;

    // Freeze the agent past the ping timeout.
    let pid = nix::unistd::Pid::from_raw(c.agent_pid(0));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let s = aware.update("pa-task", "TASK_UNREACHABLE").await;
    assert_eq!(s["reason"], "REASON_AGENT_REMOVED", "{s}");
    assert!(
        s["unreachable_time"]["nanoseconds"].as_i64().is_some(),
        "{s}"
    );
    let s = plain.update("plain-task", "TASK_LOST").await;
    assert_eq!(s["reason"], "REASON_AGENT_REMOVED", "{s}");

    // Thawed, it re-registers: the partition-aware task continues, the
    // other is killed.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    // (An update the agent had not seen acknowledged before it froze comes
    // again first; acknowledge whatever arrives.)
    let killed = loop {
        let status = plain.next_update("plain-task").await;
        plain.acknowledge(&status).await;
        if status["state"] == "TASK_KILLED" {
            break status;
        }
        assert_eq!(status["state"], "TASK_RUNNING", "{status}");
    };
    assert_eq!(killed["agent_id"]["value"], agent_id.as_str());
    assert!(
        wait_for(Duration::from_secs(30), || async {
            c.metric("master/slaves_active").await == Some(1.0)
        })
        .await,
        "agent did not come back; logs:\n{}",
        c.logs()
    );
    assert_eq!(reconcile_state(&mut aware, "pa-task").await, "TASK_RUNNING");
    let tasks = c.get_json("/master/tasks").await;
    let pa = tasks["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == "pa-task").cloned())
        .unwrap_or_default();
    assert_eq!(pa["state"], "TASK_RUNNING", "{tasks}");

    // MARK_AGENT_GONE: the running task is gone by operator; the agent
    // cannot come back.
    let (status, body) = c
        .operator(json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent_id}}}))
        .await;
    assert!(status.is_success(), "{status} {body}");
    aware.update("pa-task", "TASK_GONE_BY_OPERATOR").await;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            c.metric("master/slaves_active").await == Some(0.0)
        })
        .await
    );
    let (status, _) = c
        .operator(json!({"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": "nobody"}}}))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
}
